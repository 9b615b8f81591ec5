"""Accuracy control (`--max-drop`) and recipe selection (`--int8 auto`), format-agnostic.

Accuracy control, like NNCF's accuracy-controlled quantization: quantize with the recipe,
measure top-1 on the held-out validation images against the fp32 artifact of the same format;
while the drop exceeds the bound, keep the layers that add the most error (layer_error) in
float: 1, 2, 4, ... of them, then the fewest that meet the bound (bisection). At most
MAX_FLOAT_FRACTION of the quantized layers may go back to float: beyond that the file is no
longer an int8 model (size and speed are lost), and the bound counts as not met.

Selection: every candidate recipe (each after accuracy control) and the fp32 artifact are
timed together (timing.interleaved); the fastest within the bound wins, and the reasons are
reported: each candidate's latency, speed-up over fp32 and drop. A winner slower than fp32 is
said so, never chosen silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bench.verdict import choose_recipe
from .layer_error import layer_errors, worst_first
from .recipes import RECIPES
from .validation import Validation

MAX_FLOAT_FRACTION = 0.25
ERROR_IMAGES = 32  # calibration images used to rank layers by error


@dataclass
class Outcome:
    recipe: str
    path: Path
    record: dict
    exclude: list[str] = field(default_factory=list)
    top1: float | None = None
    drop: float | None = None
    met: bool = True
    steps: list[dict] = field(default_factory=list)
    timing: dict | None = None

    def summary(self) -> dict:
        out = {"recipe": self.recipe, "float_layers": len(self.exclude), "met": self.met}
        if self.drop is not None:
            out.update(top1=round(self.top1, 3), drop=round(self.drop, 3))
        if self.timing:
            out.update(self.timing)
        return out


def top1(path: Path, validation: Validation, threads: int | None = None) -> float:
    """Top-1 (%) of an artifact on the validation images, through the device runtime."""
    from ..runtime import load_runtime

    runtime = load_runtime(path, threads=threads)
    logits = np.concatenate([runtime.run(validation.images[i:i + 16]) for i in range(0, validation.count, 16)])
    return 100.0 * float(np.mean(logits.argmax(axis=1) == validation.labels))


def accuracy_control(builder, recipe: str, validation: Validation, reference_top1: float, max_drop: float,
                     calibration: np.ndarray, threads: int | None = None,
                     say: Callable[[str], None] | None = None) -> Outcome:
    """Quantize with `recipe`, then revert the worst layers to float until the drop <= max_drop."""
    say = say or (lambda _m: None)
    tried: dict[int, Outcome] = {}

    def attempt(exclude: list[str]) -> Outcome:
        path = builder.workdir / f"{builder.fmt}_{recipe}_{len(exclude)}float{builder.suffix}"
        record = builder.build(recipe, exclude, path)
        acc = top1(path, validation, threads)
        outcome = Outcome(recipe, path, record, list(exclude), acc, reference_top1 - acc, reference_top1 - acc <= max_drop)
        tried[len(exclude)] = outcome
        say(f"{builder.fmt} {recipe}: {len(exclude)} layer(s) float -> top-1 {acc:.2f}% "
            f"(fp32 {reference_top1:.2f}%, drop {outcome.drop:+.2f} points)")
        return outcome

    first = attempt([])
    if first.met or not RECIPES[(builder.fmt, recipe)].revertible:
        first.steps = [s.summary() for s in tried.values()]
        return first
    ranking = [e.name for e in worst_first(layer_errors(first.path, builder.fp32_path,
                                                        calibration[:ERROR_IMAGES], threads))]
    cap = max(1, math.floor(len(ranking) * MAX_FLOAT_FRACTION))
    k, found = 1, None
    while True:
        if attempt(ranking[:k]).met:
            found = k
            break
        if k >= cap:
            break
        k = min(cap, 2 * k)
    if found is not None:  # fewest layers that meet the bound, between the last miss and the hit
        lo, hi = max(n for n in tried if n < found) + 1, found
        while lo < hi:
            mid = (lo + hi) // 2
            if attempt(ranking[:mid]).met:
                hi = mid
            else:
                lo = mid + 1
        best = tried[hi]
    else:  # the closest: smallest drop, then fewest float layers
        best = min(tried.values(), key=lambda o: (o.drop, len(o.exclude)))
    best.steps = [tried[n].summary() for n in sorted(tried)]
    best.record = {**best.record, "layer_ranking": "added relative RMS error vs fp32 (vitedge.quant.layer_error)"}
    return best


def select(outcomes: list[Outcome], fp32_path: Path, threads: int = 2, fmt: str = "",
           say: Callable[[str], None] | None = None, device=None) -> tuple[Outcome, dict]:
    """The fastest outcome within the bound (else the closest), timed with fp32 in one run,
    on this machine or on `device` (a `bench.remote.SshDevice`: started here, closed after)."""
    from ..bench.timing import interleaved

    say = say or (lambda _m: None)
    where = {}
    if device is not None:
        from ..bench.runner import Settings

        try:
            device.start(Settings(threads=threads, threads_auto=True))
            threads = device.threads or threads
            say(f"{fmt} int8 auto: timing the candidates on {device.name} ({device.info.get('cpu')}, {threads} threads)")
            timings = interleaved([fp32_path] + [o.path for o in outcomes], threads=threads, device=device)
        finally:
            for note in device.close():
                say(f"warning: {device.name}: {note}")
        info = device.describe()
        where = {"device": device.name, "device_machine": {k: info.get(k) for k in
                                                            ("cpu", "cores", "arch", "os", "python", "packages")}}
    else:
        timings = interleaved([fp32_path] + [o.path for o in outcomes], threads=threads)
    base = timings[0].p50_ms
    for outcome, t in zip(outcomes, timings[1:], strict=True):
        outcome.timing = {"p50_ms": round(t.p50_ms, 4), "speedup_vs_fp32": round(t.speedup_over(timings[0]), 3)}
    chosen, reason = choose_recipe([o.summary() for o in outcomes])  # the fastest within the bound
    best = outcomes[chosen]
    parts = []
    for o in outcomes:
        drop = "" if o.drop is None else f", drop {o.drop:+.2f} pts{'' if o.met else ' (over the bound)'}"
        floats = f", {len(o.exclude)} layer(s) float" if o.exclude else ""
        parts.append(f"{o.recipe} {o.timing['p50_ms']:.3f} ms ({o.timing['speedup_vs_fp32']:.2f}x{drop}{floats})")
    say(f"{fmt} int8 auto ({threads} threads, batch 1, each in its own process"
        + (f", on {where['device']}" if where else "") + f"): fp32 {base:.3f} ms; "
        + "; ".join(parts) + f" -> {best.recipe}, {reason}")
    if best.timing["speedup_vs_fp32"] < 1.0:
        say(f"warning: the chosen int8 recipe ({best.recipe}) is SLOWER than fp32 on this machine "
            f"({best.timing['speedup_vs_fp32']:.2f}x); keep the fp32 artifact if speed matters more than size")
    selection = {"mode": "auto", "fp32_p50_ms": round(base, 4), "threads": threads,
                 "candidates": [o.summary() for o in outcomes], "chosen": best.recipe, "reason": reason,
                 "device": "local", **where}
    return best, selection
