#!/usr/bin/env python3
"""Start-up time of `vitedge predict` on one image, next to a bare `python -c "import numpy"`.

Both are measured in this one run, alternately, each in a fresh process (no warm interpreter;
the OS file cache is left alone), so machine load affects both alike. Prints the medians,
the difference and the issue's targets (predict < 1.0 s wall, <= 0.6 s above bare Python).

    python scripts/bench_startup.py [--model out/fmnist-vit_int8.tflite] [--runs 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_WALL = 1.0
TARGET_OVER_PYTHON = 0.6


def vitedge_command() -> list[str]:
    """The installed `vitedge` script beside this Python (what a user runs), else `python -m vitedge`."""
    script = Path(sys.executable).with_name("vitedge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vitedge"]


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench_startup: {' '.join(cmd)} failed:\n{proc.stderr.strip()}")
    return took


def sample_image(folder: str) -> str:
    """A small grey PNG written with zlib only (no Pillow needed here)."""
    import struct
    import zlib

    w = h = 28
    raw = b"".join(b"\x00" + bytes((x * 9 + y * 5) % 256 for x in range(w)) for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path = os.path.join(folder, "sample.png")
    with open(path, "wb") as fh:
        fh.write(png)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="out/fmnist-vit_int8.tflite", help="artifact to predict with")
    ap.add_argument("--image", default=None, help="image file (default: a generated 28x28 PNG)")
    ap.add_argument("--runs", type=int, default=7, help="fresh processes of each kind (default 7)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if not Path(args.model).is_file():
        sys.exit(f"bench_startup: {args.model} not found; make it with 'vitedge export' or pass --model")
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image or sample_image(tmp)
        bare_cmd = [sys.executable, "-c", "import numpy"]
        predict_cmd = [*vitedge_command(), "predict", image, "--model", args.model]
        bare, pred = [], []
        for _ in range(max(1, args.runs)):
            bare.append(wall(bare_cmd))
            pred.append(wall(predict_cmd))
    result = {
        "model": args.model,
        "runs": len(pred),
        "python_import_numpy_s": round(statistics.median(bare), 3),
        "vitedge_predict_s": round(statistics.median(pred), 3),
        "difference_s": round(statistics.median(pred) - statistics.median(bare), 3),
        "first_run_s": {"python_import_numpy": round(bare[0], 3), "vitedge_predict": round(pred[0], 3)},
        "target": {"predict_below_s": TARGET_WALL, "above_python_at_most_s": TARGET_OVER_PYTHON},
    }
    result["meets_target"] = (result["vitedge_predict_s"] < TARGET_WALL
                              and result["difference_s"] <= TARGET_OVER_PYTHON)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model: {args.model}  ({result['runs']} fresh processes each, medians)")
        print(f"python -c 'import numpy'   {result['python_import_numpy_s']:.3f} s")
        print(f"vitedge predict (1 image)  {result['vitedge_predict_s']:.3f} s")
        print(f"difference                 {result['difference_s']:+.3f} s")
        print(f"target: predict < {TARGET_WALL} s and difference <= {TARGET_OVER_PYTHON} s: "
              f"{'met' if result['meets_target'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
