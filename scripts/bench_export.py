"""Export cost against model size: wall time and peak memory (whole process tree) per format and
precision, for ViT-Ti, ViT-S and ViT-B (ViT-L too with --full), random weights.

Each (variant, format, precision) is one `vitedge export` command run under scripts/memwatch.py,
one at a time (never two exports at once: the figures are peaks of the whole machine's share).
Prints a table (and --json), writes a plot of cost against parameters (`--plot`).

  python scripts/bench_export.py                       # make bench-export
  python scripts/bench_export.py --full                # + ViT-L/16 (needs ~10 GB free)
  python scripts/bench_export.py --variants vit-ti16 --formats onnx --precisions fp32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEMWATCH = REPO / "scripts" / "memwatch.py"


def _calibration(folder: Path, count: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def measure(variant: str, fmt: str, precision: str, calib: Path, out: Path, calib_size: int,
            limit_gb: float) -> dict:
    """One export under memwatch: {wall_s, peak_rss_gb, exit}."""
    command = [sys.executable, str(MEMWATCH), "--json", "--limit-gb", str(limit_gb), "--",
               sys.executable, "-m", "vitedge", "export", "--variant", variant, "--format", fmt,
               "--precision", precision, "--calib", str(calib), "--calib-size", str(calib_size),
               "--out", str(out), "--force", "--json"]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    figures = json.loads([ln for ln in proc.stderr.splitlines() if ln.startswith("{")][-1])
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vitedge: error")]
        figures["error"] = errors[-1] if errors else f"exit {proc.returncode}"
    return figures


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in dict.fromkeys((r["format"], r["precision"]) for r in rows):
        mine = sorted((r for r in rows if (r["format"], r["precision"]) == key and "error" not in r),
                      key=lambda r: r["params"])
        xs = [r["params"] / 1e6 for r in mine]
        ax_t.plot(xs, [r["wall_s"] for r in mine], marker="o", label=" ".join(key))
        ax_m.plot(xs, [r["peak_rss_gb"] for r in mine], marker="o", label=" ".join(key))
    for ax, what in ((ax_t, "wall time (s)"), (ax_m, "peak RSS of the process tree (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters (millions)")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=8)
    fig.suptitle("vitedge export cost against model size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="vit-ti16,vit-s16,vit-b16")
    parser.add_argument("--full", action="store_true", help="add vit-l16")
    parser.add_argument("--formats", default="tflite,onnx,ort")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--calib-size", type=int, default=32)
    parser.add_argument("--limit-gb", type=float, default=20.0, help="memwatch kills an export past this")
    parser.add_argument("--plot", default="results/export-cost.png")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from vitedge.table import format_table
    from vitedge.variants import variant_config

    variants = args.variants.split(",") + (["vit-l16"] if args.full else [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="vitedge-bench-export-") as tmp:
        folder = Path(tmp) / "calib"
        folder.mkdir()
        calib = _calibration(folder, args.calib_size)
        for variant in variants:
            params = variant_config(variant).param_count()
            for fmt in args.formats.split(","):
                for precision in args.precisions.split(","):
                    print(f"bench-export: {variant} {fmt} {precision} ...", file=sys.stderr, flush=True)
                    row = {"variant": variant, "params": params, "format": fmt, "precision": precision,
                           **measure(variant, fmt, precision, calib, Path(tmp) / "out", args.calib_size,
                                     args.limit_gb)}
                    rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(["variant", "params (M)", "format", "precision", "wall (s)", "peak RSS (GB)", "note"],
                           [[r["variant"], f"{r['params'] / 1e6:.1f}", r["format"], r["precision"], r["wall_s"],
                             f"{r['peak_rss_gb']:.2f}", r.get("error", "")] for r in rows], right=range(1, 6)))
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot(rows, Path(args.plot))
        print(f"plot: {args.plot}", file=sys.stderr)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
