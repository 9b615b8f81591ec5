#!/usr/bin/env python3
"""Every int8 recipe tried for docs/quantization.md, rebuilt and measured side by side.

For one .keras model it writes the fp32 and int8 variants of each format into OUT/, then
times each format's files together (vitedge.bench.timing: alternating rounds, each file in
its own process, batch 1) and, with --data, takes top-1 on that labelled folder (e.g. the full test split)
and top-1 agreement with the format's fp32 file. Prints one table per format.

    python scripts/int8_recipes.py --model models/fmnist-vit.keras --data data/fashion-mnist/test
    python scripts/int8_recipes.py --variant vit-ti16 --formats onnx --rounds 10

Recipes: every one registered in vitedge/quant/recipes.py, the `--int8` choices and the
experiments (offered=False), each built by the same code export uses, for TARGET.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TARGET = "x86"  # the recipes' per-target settings used (the measurements are x86's)


def onnx_variants(model, out: Path, calib: np.ndarray, only: set | None) -> list[Path]:
    """The fp32 graphs (fused and tf2onnx's own), then every registered ONNX recipe."""
    import onnx

    from vitedge.export import onnx as onnx_export
    from vitedge.export.onnx_graph import simplify
    from vitedge.quant.onnx_quant import quantize
    from vitedge.quant.recipes import all_recipes
    from vitedge.quiet import captured_stderr

    raw = onnx_export.convert_fp32(model)
    fused, _ = simplify(raw)
    sources = {"tf2onnx": out / "onnx_tf2onnx_fp32.onnx", "fused": out / "onnx_fp32.onnx"}
    onnx.save(raw, str(sources["tf2onnx"]))
    onnx.save(fused, str(sources["fused"]))
    made = [sources["fused"], sources["tf2onnx"]]
    for recipe in all_recipes("onnx", offered=None):
        if only and recipe.name not in only:
            continue
        path = out / f"onnx_{recipe.name}.onnx"
        try:
            with captured_stderr():
                quantize(sources[recipe.graph], path, recipe, TARGET, calib if recipe.calibrated else None)
            made.append(path)
        except Exception as exc:  # recorded: a recipe that does not build is a finding too
            print(f"onnx {recipe.name}: FAILED: {str(exc).strip().splitlines()[-1][:200]}", file=sys.stderr)
    return made


def tflite_variants(model, out: Path, calib: np.ndarray, only: set | None) -> list[Path]:
    """The fp32 file, then every registered TFLite recipe (built as export's builder does)."""
    from vitedge.export import tflite as tflite_export
    from vitedge.quant.recipes import all_recipes
    from vitedge.quiet import captured_stderr

    saved = tflite_export.export_saved_model(model, out / "saved_model", 1)
    fp32 = out / "tflite_fp32.tflite"
    fp32.write_bytes(tflite_export.convert(saved, "fp32")[0])
    made = [fp32]
    builder = tflite_export.TfliteBuilder(saved, calib, out, TARGET, 1)
    for recipe in all_recipes("tflite", offered=None):
        if only and recipe.name not in only:
            continue
        path = out / f"tflite_{recipe.name}.tflite"
        try:
            with captured_stderr():
                builder.build(recipe.name, [], path)
            made.append(path)
        except Exception as exc:
            print(f"tflite {recipe.name}: FAILED: {str(exc).strip().splitlines()[-1][:200]}", file=sys.stderr)
    return made


def top1(path: Path, images: np.ndarray, labels: np.ndarray | None):
    from vitedge.runtime import load_runtime

    runtime = load_runtime(path, threads=2)
    logits = np.concatenate([runtime.run(images[i:i + 64]) for i in range(0, len(images), 64)])
    pred = logits.argmax(axis=1)
    return pred, (None if labels is None else 100.0 * float(np.mean(pred == labels)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a vitedge .keras model")
    source.add_argument("--variant", help="a named variant, random weights (speed and size only)")
    ap.add_argument("--formats", default="tflite,onnx")
    ap.add_argument("--only", default=None, help="comma list of recipe names to build (default: all)")
    ap.add_argument("--calib", default="calibration")
    ap.add_argument("--calib-size", type=int, default=100)
    ap.add_argument("--data", default=None, help="labelled ImageFolder for top-1 (e.g. data/fashion-mnist/test)")
    ap.add_argument("--out", default="results/int8-recipes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds, each artifact in its own process")
    ap.add_argument("--runs", type=int, default=100, help="timed runs per artifact per round")
    args = ap.parse_args()

    from vitedge.bench.timing import interleaved
    from vitedge.calibration import load_calibration
    from vitedge.modelfile import load_model
    from vitedge.table import format_table

    if args.model:
        model, spec = load_model(args.model)
    else:
        from vitedge.modelfile import ModelSpec, default_labels
        from vitedge.preprocess import Preprocessing
        from vitedge.variants import variant_config
        from vitedge.vit import build_vit

        config = variant_config(args.variant)
        model = build_vit(config, seed=0)
        spec = ModelSpec(config, default_labels(config.num_classes), Preprocessing())
    size = spec.config.image_size
    calib = load_calibration(ROOT / args.calib, args.calib_size, size, spec.preprocessing).images
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    images, labels = None, None
    if args.data:
        from vitedge.bench.runner import class_targets
        from vitedge.data.imagefolder import load_images, scan_image_folder
        from vitedge.preprocess import normalize_pixels

        folder = scan_image_folder(ROOT / args.data)
        index, missing = class_targets(folder.classes, spec.labels)
        if index is None:
            sys.exit(f"{args.data}: classes {missing} are not the model's labels")
        images = normalize_pixels(load_images(folder, size, spec.preprocessing), spec.preprocessing)
        labels = index[folder.labels]
    for fmt in args.formats.split(","):
        build = onnx_variants if fmt == "onnx" else tflite_variants
        paths = build(model, out, calib, only)
        started = time.time()
        load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
        timings = interleaved(paths, threads=args.threads, rounds=args.rounds, runs=args.runs)
        base = timings[0]
        reference = top1(paths[0], images, labels)[0] if images is not None else None
        rows = []
        for path, t in zip(paths, timings, strict=True):
            row = [path.stem, f"{path.stat().st_size / 1e6:.3f}", f"{path.stat().st_size / paths[0].stat().st_size:.2f}",
                   f"{t.p50_ms:.3f}", f"{t.p10_ms:.3f}", f"{base.p50_ms / t.p50_ms:.2f}x"]
            if images is not None:
                pred, acc = top1(path, images, labels)
                row += [f"{acc:.2f}" if acc is not None else "-", f"{100 * np.mean(pred == reference):.2f}"]
            rows.append(row)
        headers = ["artifact", "MB", "size", "p50 ms", "p10 ms", "vs fp32"] + (["top-1", "agree"] if images is not None else [])
        print(format_table(headers, rows, right=range(1, len(headers))))
        print(f"{fmt}: {args.threads} threads, batch 1, {args.rounds} alternating rounds x {args.runs} runs each, "
              f"each artifact in its own process; load average "
              f"{load} at start; {time.time() - started:.0f} s; top-1 on {args.data or '-'}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
