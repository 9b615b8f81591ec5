"""`--plot`: accuracy (or agreement) against p50 latency, one labelled point per artifact.

The Pareto front (no other artifact is both faster and more accurate) is joined by a line:
the artifacts worth choosing between. matplotlib is optional (the `plot` extra).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from ..errors import VitedgeError
from .stats import pareto_front

NEEDS_MATPLOTLIB = "--plot needs matplotlib: pip install 'vitedge[plot]'"


def check_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise VitedgeError(NEEDS_MATPLOTLIB)


def plot_points(report: dict) -> tuple[str, list[tuple[str, float, float]]]:
    """(y-axis name, [(artifact, p50 ms, y)]) of the rows that have both figures."""
    rows = [r for r in report["rows"] if r["status"] == "ok" and r["p50_ms"] is not None]
    key, name = ("top1", "top-1 accuracy (%)") if any(r["top1"] is not None for r in rows) else \
        ("agreement_top1", "top-1 agreement with the reference (%)")
    return name, [(r["artifact"], r["p50_ms"], r[key]) for r in rows if r[key] is not None]


def _label_offsets(xs: list[float], ys: list[float]) -> list[int]:
    """Vertical label offsets (points) so that labels of near-identical points do not overprint.

    `xs` as drawn (log10 for a log axis). A point close to earlier ones takes the next slot of
    a small cycle above and below it.
    """
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    slots = (4, -12, 14, -22)
    offsets = [slots[0]] * len(xs)
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    for k, i in enumerate(order):  # a label is ~20% of the axis wide: look that far to the left
        near = sum(1 for j in order[:k] if xs[i] - xs[j] < 0.2 * span_x and abs(ys[i] - ys[j]) < 0.04 * span_y)
        offsets[i] = slots[near % len(slots)]
    return offsets


def write_plot(report: dict, path: Path) -> int:
    """Draw the chart into `path` (PNG); returns the number of points."""
    check_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ylabel, points = plot_points(report)
    if not points:
        raise VitedgeError("--plot: no artifact has both a latency and an accuracy or agreement figure")
    front = pareto_front([(x, y) for _, x, y in points])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    ax.scatter(xs, ys, s=36, color="tab:blue", zorder=3, label="artifact")
    # The front as a staircase: from each choice, the next one is slower but more accurate.
    ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="tab:red", zorder=2)
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=130, facecolors="none", edgecolors="tab:red",
               zorder=4, label="Pareto front")
    log_x = max(xs) / max(min(xs), 1e-9) > 20
    if log_x:
        ax.set_xscale("log")
    drawn_x = [math.log10(max(x, 1e-9)) for x in xs] if log_x else xs
    for name, x, y, dy in zip([p[0] for p in points], xs, ys, _label_offsets(drawn_x, ys), strict=True):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, dy), fontsize=8)
    s, m = report["settings"], report["machine"]
    ax.set_xlabel(f"p50 latency, ms per batch of {s['batch']} ({s['threads']} threads)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"vitedge bench on {m['cpu']}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.15)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return len(points)
