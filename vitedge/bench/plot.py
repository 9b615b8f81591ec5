"""`--plot`: accuracy (or agreement) against p50 latency, one numbered point per artifact.

Marker shape shows the format (TFLite, ONNX, ORT), colour the precision. Each point carries a
short number; the numbered legend beside the axes gives the artifact names, so long names never
crowd the chart. Numbers are placed by trying positions around their point and taking the first
whose box overlaps no other number and no marker (measured with matplotlib's own text extents).
The Pareto front (no other artifact is both faster and more accurate) is the red staircase;
its members are ringed and starred in the legend. matplotlib is optional (the `plot` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import VitedgeError
from .stats import pareto_front

NEEDS_MATPLOTLIB = "--plot needs matplotlib: pip install 'vitedge[plot]'"
MARKERS = {"tflite": "o", "onnx": "s", "ort": "^"}
COLOURS = {"fp32": "tab:blue", "fp16": "tab:green", "dynamic": "tab:orange", "int8": "tab:purple",
           "int16x8": "tab:brown"}
# Label positions tried around a point, in points: nearest ring first, then wider rings.
_DIRECTIONS = [(1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, 1), (-1, -1), (1, -1)]
_RADII = (10, 16, 23, 31, 40)


def check_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise VitedgeError(NEEDS_MATPLOTLIB)


def plot_points(report: dict) -> tuple[str, list[dict]]:
    """(y-axis name, [{artifact, format, precision, x: p50 ms, y}]) of rows with both figures."""
    rows = [r for r in report["rows"] if r["status"] == "ok" and r["p50_ms"] is not None]
    key, name = ("top1", "top-1 accuracy (%)") if any(r["top1"] is not None for r in rows) else \
        ("agreement_top1", "top-1 agreement with the reference (%)")
    several = len({r.get("device", "local") for r in rows}) > 1  # --device: say which machine each point is

    def label(r: dict) -> str:
        return f"{r['artifact']} @ {str(r.get('device', 'local')).removeprefix('ssh://')}" if several else r["artifact"]

    return name, [{"artifact": label(r), "format": r.get("format") or Path(r["artifact"]).suffix.lstrip("."),
                   "precision": r.get("precision") or "?", "x": r["p50_ms"], "y": r[key]}
                  for r in rows if r[key] is not None]


def _overlaps(a, b, pad: float = 1.0) -> bool:
    return not (a.x1 + pad <= b.x0 or b.x1 + pad <= a.x0 or a.y1 + pad <= b.y0 or b.y1 + pad <= a.y0)


def place_labels(ax, texts, anchors, ringed=()) -> None:
    """Move each number label to the first spot around its point that collides with nothing.

    `texts` are annotations (offset in points); `anchors` the points' display coordinates.
    Obstacles: labels already placed and every marker (a square of the marker's size; larger
    for the `ringed` indices, the Pareto front's).
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0
    taken = []
    for i, (x, y) in enumerate(anchors):
        half = (8.5 if i in ringed else 5.5) * scale  # half the marker's (or its ring's) width, pixels
        taken.append(Bbox([[x - half, y - half], [x + half, y + half]]))
    for text in texts:
        best = None  # (overlaps, box, offset, alignment) of the least crowded spot tried
        for radius in _RADII:
            for dx, dy in _DIRECTIONS:
                align = ("left" if dx > 0 else "right" if dx < 0 else "center",
                         "bottom" if dy > 0 else "top" if dy < 0 else "center")
                text.xyann = (dx * radius, dy * radius)
                text.set_ha(align[0])
                text.set_va(align[1])
                box = text.get_window_extent(renderer)
                hits = sum(_overlaps(box, t) for t in taken)
                if best is None or hits < best[0]:
                    best = (hits, box, text.xyann, align)
                if hits == 0:
                    break
            if best[0] == 0:
                break
        _, box, text.xyann, (ha, va) = best
        text.set_ha(ha)
        text.set_va(va)
        taken.append(box)


def build_figure(report: dict):
    """(figure, number labels) of the chart; the caller saves and closes the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ylabel, points = plot_points(report)
    if not points:
        raise VitedgeError("--plot: no artifact has both a latency and an accuracy or agreement figure")
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    front = pareto_front(list(zip(xs, ys, strict=True)))
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    fig.subplots_adjust(left=0.08, right=0.62, top=0.9, bottom=0.11)
    ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="tab:red", lw=1.2, zorder=2)
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=220, facecolors="none", edgecolors="tab:red",
               lw=1.2, zorder=4)
    for p in points:
        ax.scatter([p["x"]], [p["y"]], s=46, marker=MARKERS.get(p["format"], "D"),
                   color=COLOURS.get(p["precision"], "tab:gray"), edgecolors="black", linewidths=0.5, zorder=3)
    if max(xs) / max(min(xs), 1e-9) > 20:
        ax.set_xscale("log")
    s, m = report["settings"], report["machine"]
    ax.set_xlabel(f"p50 latency, ms per batch of {s['batch']} ({s['threads']} threads)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"vitedge bench on {m['cpu']}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.15, y=0.2)
    labels = [ax.annotate(str(i), (p["x"], p["y"]), textcoords="offset points", xytext=(7, 0), fontsize=8,
                          fontweight="bold", zorder=5) for i, p in enumerate(points, 1)]
    fig.canvas.draw()  # fixes the axis limits, so display positions are final
    anchors = [ax.transData.transform((p["x"], p["y"])) for p in points]
    place_labels(ax, labels, anchors, ringed=set(front))
    # Legends: marker shape = format, colour = precision; then the numbered artifact list.
    kinds = [Line2D([], [], ls="", marker=MARKERS.get(f, "D"), color="gray", label=f)
             for f in dict.fromkeys(p["format"] for p in points)]
    kinds += [Line2D([], [], ls="", marker="o", color=COLOURS.get(c, "tab:gray"), label=c)
              for c in dict.fromkeys(p["precision"] for p in points)]
    kinds.append(Line2D([], [], color="tab:red", marker="o", mfc="none", label="Pareto front"))
    legend = ax.legend(handles=kinds, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="format / precision",
              title_fontsize=8, frameon=False)
    names = "\n".join(f"{i:>2}{'*' if i - 1 in front else ' '} {p['artifact']}" for i, p in enumerate(points, 1))
    fig.canvas.draw()
    below = legend.get_window_extent().y0 / fig.bbox.height - 0.04
    fig.text(0.645, below, names + "\n\n* on the Pareto front", fontsize=8, family="monospace", va="top")
    return fig, labels


def write_plot(report: dict, path: Path) -> int:
    """Draw the chart into `path` (PNG); returns the number of points."""
    check_matplotlib()
    import matplotlib.pyplot as plt

    fig, labels = build_figure(report)
    fig.savefig(path, format="png")
    plt.close(fig)
    return len(labels)
