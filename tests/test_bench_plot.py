"""The bench plot stays readable when points crowd: number labels never overlap (matplotlib's
own text extents), marker shape follows the format, the Pareto front is starred and ringed."""

import itertools

import pytest

pytest.importorskip("matplotlib")

from vitedge.bench.plot import MARKERS, build_figure, write_plot  # noqa: E402
from vitedge.bench.stats import pareto_front  # noqa: E402

FORMATS, PRECISIONS = ("tflite", "onnx", "ort"), ("fp32", "fp16", "dynamic", "int8")


def report(points):
    rows = [{"artifact": f"fmnist-vit_{p}.{f}", "format": f, "precision": p, "status": "ok", "p50_ms": x,
             "top1": y, "agreement_top1": None} for (f, p), (x, y) in points]
    return {"rows": rows, "settings": {"batch": 1, "threads": 2}, "machine": {"cpu": "test CPU"}}


def crowded():
    """Twelve artifacts, eight of them within a hair of each other (what overprinted before)."""
    combos = list(itertools.product(FORMATS, PRECISIONS))
    near = [(0.400 + 0.0004 * i, 90.40 + 0.002 * (i % 3)) for i in range(8)]
    far = [(0.9, 90.42), (1.3, 90.43), (0.25, 89.1), (0.26, 89.12)]
    return report(list(zip(combos, near + far, strict=True)))


def test_number_labels_never_overlap():
    import matplotlib.pyplot as plt

    fig, labels = build_figure(crowded())
    try:
        renderer = fig.canvas.get_renderer()
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert [t.get_text() for t in labels] == [str(i) for i in range(1, 13)]
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
            assert not a.overlaps(b), f"labels {i + 1} and {j + 1} overlap: {a} {b}"
    finally:
        plt.close(fig)


def test_marker_shape_follows_the_format_and_the_front_is_marked():
    import matplotlib.pyplot as plt

    rep = crowded()
    fig, labels = build_figure(rep)
    try:
        ax = fig.axes[0]
        # one scatter per point after the front's staircase and rings: compare their marker paths
        point_sets = ax.collections[-len(labels):]
        vertices = [len(c.get_paths()[0].vertices) for c in point_sets]
        by_format = {}
        for row, n in zip(rep["rows"], vertices, strict=True):
            by_format.setdefault(row["format"], set()).add(n)
        assert all(len(v) == 1 for v in by_format.values())  # one shape per format
        assert len({next(iter(v)) for v in by_format.values()}) == len(MARKERS)  # and all distinct
        listing = next(t.get_text() for t in fig.texts if "fmnist-vit_" in t.get_text())
        for row in rep["rows"]:
            assert row["artifact"] in listing
        front = pareto_front([(r["p50_ms"], r["top1"]) for r in rep["rows"]])
        starred = [ln for ln in listing.splitlines() if ln[:3].strip().endswith("*")]
        assert len(starred) == len(front) > 0
        rings = ax.collections[0]  # the red rings around the front's members
        assert len(rings.get_offsets()) == len(front)
    finally:
        plt.close(fig)


def test_write_plot_makes_a_png(tmp_path):
    path = tmp_path / "bench.png"
    assert write_plot(crowded(), path) == 12
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
