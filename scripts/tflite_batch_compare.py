"""Why TFLite artifacts have a fixed batch of 1: time fixed-batch and dynamic-batch conversions.

    .venv/bin/python scripts/tflite_batch_compare.py MODEL.keras|VARIANT CALIB_DIR [--threads N]

Exports fp32, dynamic and int8 TFLite twice (batch 1 and batch None) into a temporary folder
and times one-image inference of each with LiteRT, interleaved over several rounds so that a
busy machine slows all six alike. Prints the median and best per-round p50, in ms.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vitedge.export import export_artifacts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help=".keras file or variant name")
    parser.add_argument("calib", help="calibration image folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    from ai_edge_litert.interpreter import Interpreter

    is_file = args.model.endswith(".keras")
    interpreters = {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (1, None):
            results = export_artifacts(
                args.model if is_file else None, variant=None if is_file else args.model, formats="tflite",
                precisions="fp32,dynamic,int8", calib_dir=args.calib, out_dir=Path(tmp) / str(batch),
                tflite_batch=batch)
            for r in results:
                it = Interpreter(model_path=str(r.path), num_threads=args.threads)
                it.allocate_tensors()
                interpreters[(batch, r.precision)] = (it, r.size_bytes)
    shape = interpreters[(1, "fp32")][0].get_input_details()[0]["shape"]
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    p50s = {key: [] for key in interpreters}
    for _ in range(args.rounds):
        for key, (it, _) in interpreters.items():
            index = it.get_input_details()[0]["index"]
            it.set_tensor(index, x)
            it.invoke()
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                it.set_tensor(index, x)
                it.invoke()
                times.append(time.perf_counter() - start)
            p50s[key].append(1000 * float(np.median(times)))
    print(f"{'batch':>5}  {'precision':<9}  {'size KB':>8}  {'p50 ms median':>13}  {'p50 ms best':>11}")
    for (batch, precision), (_, size) in interpreters.items():
        values = p50s[(batch, precision)]
        print(f"{str(batch):>5}  {precision:<9}  {size / 1e3:8.0f}  {np.median(values):13.3f}  {min(values):11.3f}")


if __name__ == "__main__":
    main()
