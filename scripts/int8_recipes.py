#!/usr/bin/env python3
"""Every int8 recipe tried for docs/quantization.md, rebuilt and measured side by side.

For one .keras model it writes the fp32 and int8 variants of each format into OUT/, then
times each format's files together (vitedge.quant.timing: alternating rounds, each file in
its own process, batch 1) and, with --data, takes top-1 on that labelled folder (e.g. the full test split)
and top-1 agreement with the format's fp32 file. Prints one table per format.

    python scripts/int8_recipes.py --model models/fmnist-vit.keras --data data/fashion-mnist/test
    python scripts/int8_recipes.py --variant vit-ti16 --formats onnx --rounds 10

Recipes (name: what): see the RECIPES lists below; vitedge's own recipes are the ones named
like `vitedge export --int8 NAME` builds them (onnx: dynamic, qdq; tflite: dynamic, fc, full).
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


def onnx_variants(model, out: Path, calib: np.ndarray, only: set | None) -> list[Path]:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from vitedge.export import onnx as onnx_export
    from vitedge.export.quiet import captured_stderr
    from vitedge.quant.onnx_graph import simplify
    from vitedge.quant.onnx_quant import _reader, quantize

    raw = onnx_export.convert_fp32(model)
    fused, _ = simplify(raw)
    paths = {"tf2onnx_fp32": out / "onnx_tf2onnx_fp32.onnx", "fp32": out / "onnx_fp32.onnx"}
    onnx.save(raw, str(paths["tf2onnx_fp32"]))
    onnx.save(fused, str(paths["fp32"]))

    def static(src, name, **kw):
        args = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, reduce_range=False, op_types_to_quantize=["MatMul", "Conv", "Gemm"],
                    calibrate_method=CalibrationMethod.MinMax, extra_options={"MatMulConstBOnly": True})
        args.update(kw)
        quantize_static(str(src), str(out / f"onnx_{name}.onnx"), _reader(calib), **args)

    def dynamic(src, name, **kw):
        args = dict(weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Conv", "Gemm"],
                    extra_options={"MatMulConstBOnly": True})
        args.update(kw)
        quantize_dynamic(str(src), str(out / f"onnx_{name}.onnx"), **args)

    recipes = {
        # tf2onnx's graph as is (what the first export did)
        "tf2onnx_qdq_all_ops": lambda: static(paths["tf2onnx_fp32"], "tf2onnx_qdq_all_ops", op_types_to_quantize=None,
                                              extra_options={}),
        "tf2onnx_qdq_matmul_rr": lambda: static(paths["tf2onnx_fp32"], "tf2onnx_qdq_matmul_rr", reduce_range=True),
        "tf2onnx_dynamic_rr": lambda: dynamic(paths["tf2onnx_fp32"], "tf2onnx_dynamic_rr", reduce_range=True),
        # the fused graph (vitedge.quant.onnx_graph)
        "dynamic": lambda: quantize(paths["fp32"], out / "onnx_dynamic.onnx", "dynamic", "x86"),
        "dynamic_no_rr": lambda: quantize(paths["fp32"], out / "onnx_dynamic_no_rr.onnx", "dynamic", "arm64"),
        "dynamic_per_channel": lambda: dynamic(paths["fp32"], "dynamic_per_channel", per_channel=True, reduce_range=True),
        "qdq": lambda: quantize(paths["fp32"], out / "onnx_qdq.onnx", "qdq", "x86", calib),
        "qdq_s8s8": lambda: static(paths["fp32"], "qdq_s8s8"),
        "qdq_s8s8_per_tensor": lambda: static(paths["fp32"], "qdq_s8s8_per_tensor", per_channel=False),
        "qoperator_u8s8_rr": lambda: static(paths["fp32"], "qoperator_u8s8_rr", quant_format=QuantFormat.QOperator,
                                            activation_type=QuantType.QUInt8, reduce_range=True, per_channel=False),
        "qoperator_s8s8": lambda: static(paths["fp32"], "qoperator_s8s8", quant_format=QuantFormat.QOperator,
                                         per_channel=False),
    }
    made = [paths["fp32"], paths["tf2onnx_fp32"]]
    for name, build in recipes.items():
        if only and name not in only:
            continue
        try:
            with captured_stderr():
                build()
            made.append(out / f"onnx_{name}.onnx")
        except Exception as exc:  # recorded: a recipe that does not build is a finding too
            print(f"onnx {name}: FAILED: {str(exc).strip().splitlines()[-1][:200]}", file=sys.stderr)
    return made


def tflite_variants(model, out: Path, calib: np.ndarray, only: set | None) -> list[Path]:
    from tensorflow.lite.python import convert

    from vitedge.export import tflite as tflite_export
    from vitedge.export.quiet import captured_stderr
    from vitedge.quant import tflite_quant

    saved = tflite_export.export_saved_model(model, out / "saved_model", 1)
    fp32 = out / "tflite_fp32.tflite"
    fp32.write_bytes(tflite_export.convert(saved, "fp32")[0])
    made = [fp32]
    calibrated = tflite_quant.calibrate(saved, calib)
    ops = tflite_quant.op_types(calibrated)

    def keep(*int8_ops, per_channel=True):
        deny = [o for o in ops if o not in int8_ops + tflite_quant.BORDER_OPS]
        return convert.mlir_quantize(calibrated, disable_per_channel=not per_channel, denylisted_ops=deny)

    recipes = {
        "dynamic": lambda: tflite_quant.dynamic(saved)[0],
        "fc": lambda: tflite_quant.quantize_calibrated(calibrated, "fc")[0],
        "fc_per_channel": lambda: tflite_quant.quantize_calibrated(calibrated, "fc", per_channel=True)[0],
        "fc_gelu": lambda: keep("FULLY_CONNECTED", "CONV_2D", "GELU", per_channel=False),
        "fc_gelu_add": lambda: keep("FULLY_CONNECTED", "CONV_2D", "GELU", "ADD", per_channel=False),
        "fc_attention": lambda: keep("FULLY_CONNECTED", "CONV_2D", "BATCH_MATMUL", "SOFTMAX", "RESHAPE", "TRANSPOSE",
                                     "SPLIT", per_channel=False),
        "full": lambda: tflite_quant.quantize_calibrated(calibrated, "full")[0],
    }
    for name, build in recipes.items():
        if only and name not in only:
            continue
        try:
            with captured_stderr():
                content = build()
            (out / f"tflite_{name}.tflite").write_bytes(content)
            made.append(out / f"tflite_{name}.tflite")
        except Exception as exc:
            print(f"tflite {name}: FAILED: {str(exc).strip().splitlines()[-1][:200]}", file=sys.stderr)
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

    from vitedge.calibration import load_calibration
    from vitedge.modelfile import load_model
    from vitedge.quant.timing import interleaved
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
