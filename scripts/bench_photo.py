#!/usr/bin/env python3
"""`vitedge predict` on a 12 MP phone photo (EXIF-rotated JPEG) next to a small PNG.

The photo is generated here (4032x3024, camera-like noise so it weighs ~3 MB, EXIF
orientation 6 = "rotate 90 degrees"), never committed. Each run is a fresh process; wall time
and peak resident memory (the child's own ru_maxrss, from wait4) are medians over --runs,
photo and PNG alternating so machine load hits both alike.

    python scripts/bench_photo.py --model out/fmnist-vit_int8.tflite [--runs 5] [--json]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_startup import sample_image, vitedge_command  # noqa: E402

PHOTO_SIZE = (4032, 3024)  # 12 MP, a phone's 4:3 sensor


def make_photo(path: Path, size: tuple[int, int] = PHOTO_SIZE, orientation: int = 6) -> Path:
    """A JPEG shaped like a phone photo: smooth scene + sensor noise, EXIF orientation set."""
    import numpy as np
    from PIL import Image

    w, h = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scene = np.stack([128 + 90 * np.sin(xx / 300 + c) * np.cos(yy / 200 - c) for c in range(3)], axis=-1)
    noise = rng.normal(0, 12, size=(h, w, 3)).astype(np.float32)
    pixels = np.clip(scene + noise, 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=88, exif=exif.tobytes())
    return path


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench_photo: {' '.join(cmd)} failed:\n{err.strip()}")
    return took, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="out/fmnist-vit_int8.tflite", help="artifact to predict with")
    ap.add_argument("--runs", type=int, default=5, help="fresh processes of each kind (default 5)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--make-photo", metavar="PATH", help="only write the 12 MP test photo to PATH")
    args = ap.parse_args()
    if args.make_photo:
        make_photo(Path(args.make_photo))
        return 0
    if not Path(args.model).is_file():
        sys.exit(f"bench_photo: {args.model} not found; make it with 'vitedge export' or pass --model")
    with tempfile.TemporaryDirectory() as tmp:
        # Made in a child process: a fork of a parent holding the photo's arrays would report the
        # parent's memory as each child's peak RSS.
        photo = Path(tmp) / "photo-12mp.jpg"
        subprocess.run([sys.executable, __file__, "--make-photo", str(photo)], check=True)
        png = sample_image(tmp)
        runs: dict[str, list[tuple[float, float]]] = {"photo": [], "png": []}
        for _ in range(max(1, args.runs)):
            for kind, image in (("png", png), ("photo", str(photo))):
                runs[kind].append(run([*vitedge_command(), "predict", image, "--model", args.model]))
        photo_bytes = photo.stat().st_size
    med = {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in runs.items()}
    result = {
        "model": args.model,
        "runs": args.runs,
        "photo": {"pixels": f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}", "bytes": photo_bytes, "exif_orientation": 6,
                  "wall_s": round(med["photo"][0], 3), "peak_rss_mib": round(med["photo"][1], 1)},
        "png_28x28": {"wall_s": round(med["png"][0], 3), "peak_rss_mib": round(med["png"][1], 1)},
        "photo_over_png": {"wall_s": round(med["photo"][0] - med["png"][0], 3),
                           "peak_rss_mib": round(med["photo"][1] - med["png"][1], 1)},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model: {args.model}  ({args.runs} fresh processes each, medians)")
        print(f"{'image':32} {'wall s':>8} {'peak RSS MiB':>13}")
        print(f"{'12 MP JPEG, EXIF-rotated':32} {med['photo'][0]:8.3f} {med['photo'][1]:13.1f}"
              f"   ({photo_bytes / 1e6:.1f} MB)")
        print(f"{'28x28 PNG':32} {med['png'][0]:8.3f} {med['png'][1]:13.1f}")
        print(f"{'photo minus PNG':32} {result['photo_over_png']['wall_s']:+8.3f} "
              f"{result['photo_over_png']['peak_rss_mib']:+13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
