"""`vitedge profile`: per-op-type time of an artifact, and per-layer quantization error.

Timing: profile.tflite (LiteRT, per-op models) or profile.onnx (ONNX Runtime's profiler).
Error: layer_error against the fp32 artifact of the same model and format (given, or found
beside the artifact as <stem>_fp32.<ext>, the name `vitedge export` writes).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import VitedgeError


def op_table(report: dict) -> list[dict]:
    """Per (op type, compute type): count, total ms, share, XNNPACK-delegated count."""
    groups: dict[tuple, dict] = defaultdict(lambda: {"count": 0, "ms": 0.0, "delegated": 0})
    for op in report["ops"]:
        g = groups[(op.op_type, op.compute)]
        g["count"] += 1
        g["ms"] += 0.0 if np.isnan(op.ms) else op.ms
        g["delegated"] += int(op.delegated)
    total = sum(g["ms"] for g in groups.values()) or 1.0
    rows = [{"op_type": k[0], "compute": k[1], "count": g["count"], "ms": g["ms"], "share": g["ms"] / total,
             "xnnpack": g["delegated"]} for k, g in groups.items()]
    return sorted(rows, key=lambda r: r["ms"], reverse=True)


def time_profile(path: str | os.PathLike, threads: int = 2, runs: int = 50, progress=None) -> dict:
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        from .tflite import profile

        return profile(path, threads=threads, runs=runs, progress=progress)
    if suffix == ".onnx":
        from .onnx import profile

        return profile(path, threads=threads, runs=runs)
    raise VitedgeError(f"{path}: profile reads .tflite and .onnx files")


def find_fp32_twin(path: str | os.PathLike) -> Path | None:
    """<stem>_fp32.<ext> beside `path` (export's naming: model_int8.tflite -> model_fp32.tflite)."""
    path = Path(path)
    stem = path.stem
    if stem.endswith("_fp32"):
        return path  # itself: the caller says so
    for tag in ("_int8_closest", "_int8", "_dynamic", "_fp16", "_int16x8"):
        if stem.endswith(tag):
            twin = path.with_name(stem[: -len(tag)] + "_fp32" + path.suffix)
            return twin if twin.exists() and twin != path else None
    return None


def error_report(path: str | os.PathLike, fp32: str | os.PathLike, images: np.ndarray, top: int = 5,
                 threads: int | None = None) -> dict:
    from ..quant.layer_error import layer_errors, worst_first

    errors = layer_errors(path, fp32, images, threads)
    quantized = worst_first(errors)
    return {"reference": str(fp32), "images": int(len(images)), "layers": [e.to_dict() for e in errors],
            "int8_layers": len(quantized), "float_layers": len(errors) - len(quantized),
            "worst": [e.to_dict() for e in quantized[:top]]}


def profile_images(path: str | os.PathLike, data: str | os.PathLike | None, count: int = 32) -> np.ndarray:
    """Images for the error report: preprocessed from `data` (seeded choice), else seeded noise
    in the model's input range."""
    from ..runtime import load_runtime

    runtime = load_runtime(path, threads=1)
    h, w = runtime.info.input_size
    if data is None:
        rng = np.random.default_rng(0)
        return rng.uniform(-1, 1, (count, h, w, 3)).astype(np.float32)
    from ..calibration import load_calibration

    return load_calibration(data, count, (h, w), runtime.info.preprocessing).images
