"""Export-time check: run an artifact in its own device runtime and compare with Keras.

The converters' return values prove nothing (a file can be written and fail to load, or load
and drift), so every artifact is loaded with `vitedge.runtime.load_runtime` and run on the
calibration images before it is allowed to replace anything on disk.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import VitedgeError

FP32_TOLERANCE = 1e-4  # max |logit difference| an fp32 artifact may have against Keras
CHUNK = 16  # images per runtime call: bounds memory on big models


def compare_logits(logits: np.ndarray, reference: np.ndarray) -> dict:
    """Top-1 agreement and absolute logit differences of `logits` against `reference`."""
    if logits.shape != reference.shape:
        raise VitedgeError(f"artifact returns shape {tuple(logits.shape)}, Keras {tuple(reference.shape)}")
    if not np.all(np.isfinite(logits)):
        raise VitedgeError("artifact returns NaN or infinite logits")
    diff = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    return {
        "images": int(len(reference)),
        "top1_agreement": float(np.mean(logits.argmax(axis=1) == reference.argmax(axis=1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }


def run_artifact(path: str | os.PathLike, images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of `images` from the artifact at `path`, through the device runtime."""
    from ..runtime import load_runtime

    runtime = load_runtime(path, threads=threads)
    return np.concatenate([runtime.run(images[i:i + CHUNK]) for i in range(0, len(images), CHUNK)])


def verify_artifact(path: str | os.PathLike, precision: str, images: np.ndarray, reference: np.ndarray,
                    threads: int | None = None, label: str | None = None) -> dict:
    """Verification figures for one artifact; fp32 beyond FP32_TOLERANCE is an error."""
    figures = compare_logits(run_artifact(path, images, threads), reference)
    figures["runtime"] = "litert" if str(path).endswith(".tflite") else "onnxruntime"
    if precision == "fp32" and figures["max_abs_diff"] > FP32_TOLERANCE:
        raise VitedgeError(
            f"{label or path}: fp32 logits differ from Keras by {figures['max_abs_diff']:.3g} "
            f"(limit {FP32_TOLERANCE:g}); the conversion is wrong, nothing written"
        )
    return figures
