"""Verdicts on measured int8 rows: which miss a bar, which file is best, the exit code.

Pure functions on plain rows (dicts of figures already measured), so the logic that decides
pass/fail is tested on made-up rows (tests/test_verdict.py) rather than on whatever this
machine's timings happen to be. Used by `make bench-int8` (scripts/bench_int8.py) and by
`--int8 auto`'s recipe choice (vitedge.quant.control.select). Standard library only.

A speed-up row (bench-int8) holds: model, format, precision, speedup (fp32 time / int8 time),
size_ratio (int8 bytes / fp32 bytes), and top1_delta (int8 - fp32 top-1, points) where it was
measured. The bars are data (`Bars`), so changing them is a table edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ANY = "*"


@dataclass(frozen=True)
class Bars:
    """What an int8 artifact must reach against its fp32 twin.

    speed: {(model, format): minimum speed-up}; ANY matches every model or format, and the most
    specific entry wins ((model, format), then (model, ANY), then (ANY, format), then (ANY, ANY)).
    bound_fraction: where a kernel bound (the speed-up int8 multiplies allow at all) is below the
    speed bar, the bar becomes this fraction of the bound; None keeps the bars fixed.
    """

    speed: Mapping[tuple[str, str], float] = field(default_factory=lambda: {(ANY, ANY): 1.25})
    size: float = 0.30  # int8 bytes / fp32 bytes, at most
    top1_points: float = 0.3  # top-1 may fall by at most this many points
    bound_fraction: float | None = 0.9

    def speed_bar(self, model: str, fmt: str, bound: float | None = None) -> float:
        for key in ((model, fmt), (model, ANY), (ANY, fmt), (ANY, ANY)):
            if key in self.speed:
                bar = float(self.speed[key])
                break
        else:
            raise KeyError(f"no speed bar for {model} {fmt}")
        if bound is not None and self.bound_fraction is not None and bound < bar:
            return self.bound_fraction * bound
        return bar


# Issue 7's bars: 1.25x everywhere (90% of the kernel bound where that is lower), size <= 30%,
# top-1 within 0.3 points.
ISSUE7_BARS = Bars()

FAITHFUL = ("size", "top-1")  # failures that disqualify a file from being the best one


def failed_checks(row: Mapping, speed_bar: float, bars: Bars) -> list[str]:
    """The bars `row` misses: any of "speed", "size", "top-1" (top-1 only where measured)."""
    failed = []
    if not row["speedup"] >= speed_bar:  # written so a NaN speed-up fails too
        failed.append("speed")
    if not row["size_ratio"] <= bars.size:
        failed.append("size")
    if row.get("top1_delta") is not None and not row["top1_delta"] >= -bars.top1_points:
        failed.append("top-1")
    return failed


def best_int8(options: list[Mapping]) -> Mapping:
    """The best int8 file of one model and format: the fastest that keeps size and top-1
    (the fastest of all, if none does). Rows carry "failed" (failed_checks)."""
    if not options:
        raise ValueError("no int8 rows to choose from")
    faithful = [r for r in options if not set(FAITHFUL) & set(r["failed"])] or options
    return max(faithful, key=lambda r: r["speedup"])


@dataclass
class Verdict:
    best: list[dict]  # the judged row of each (model, format), in first-seen order
    failures: list[str]  # "model format: check" of the best rows

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


def judge(rows: list[dict], bars: Bars = ISSUE7_BARS, bounds: Mapping[tuple[str, str], float] | None = None
          ) -> Verdict:
    """Mark every row with its speed_bar and failed checks, pick the best per (model, format),
    and list the best rows' failures. `bounds`: {(model, format): kernel bound} where measured."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        key = (row["model"], row["format"])
        row["speed_bar"] = bars.speed_bar(*key, (bounds or {}).get(key))
        row["failed"] = failed_checks(row, row["speed_bar"], bars)
        groups.setdefault(key, []).append(row)
    best, failures = [], []
    for (model, fmt), options in groups.items():
        row = best_int8(options)
        best.append(row)
        failures += [f"{model} {fmt}: {name}" for name in row["failed"]]
    return Verdict(best, failures)


def choose_recipe(candidates: list[Mapping]) -> tuple[int, str]:
    """`--int8 auto`: the index of the chosen candidate and why.

    Each candidate: met (within --max-drop), speedup_vs_fp32, drop (points, None if not
    measured). The fastest that met the bound; if none did, the closest (smallest drop, then
    the fastest)."""
    if not candidates:
        raise ValueError("no int8 recipes to choose from")
    met = [i for i, c in enumerate(candidates) if c["met"]]
    if met:
        return max(met, key=lambda i: candidates[i]["speedup_vs_fp32"]), "fastest within the bound"
    closest = min(range(len(candidates)), key=lambda i: (candidates[i].get("drop") or 0.0,
                                                         -candidates[i]["speedup_vs_fp32"]))
    return closest, "none within the bound: the closest"
