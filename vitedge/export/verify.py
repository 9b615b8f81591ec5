"""Export-time check: run an artifact in its own device runtime and compare with Keras.

The converters' return values prove nothing (a file can be written and fail to load, or load
and drift), so every artifact is loaded with `vitedge.runtime.load_runtime` and run on the
calibration images before it is allowed to replace anything on disk.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import VitedgeError
from ..scores import log_softmax

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


def compare_probabilities(probs: np.ndarray, reference_logits: np.ndarray, precision: str) -> dict:
    """Figures of an artifact that ends in a softmax, against softmax(Keras logits).

    max/mean_abs_diff are in probability units. max_abs_logprob_diff compares log-probabilities
    (= logits up to one constant per image) wherever Keras' probability is above 1e-30: the
    figure the fp32 limit applies to, as sensitive as the logit check of logit artifacts."""
    log_ref = log_softmax(reference_logits)
    figures = compare_logits(probs, np.exp(log_ref))
    p = np.asarray(probs, dtype=np.float64)
    if p.min() < -1e-6 or p.max() > 1 + 1e-3:
        raise VitedgeError(f"artifact should output probabilities but gives values in [{p.min():.3g}, {p.max():.3g}]")
    if precision not in ("int8", "int16x8") and not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise VitedgeError("artifact should output probabilities but its rows do not sum to 1")
    seen = log_ref > np.log(1e-30)
    logp = np.log(np.maximum(p, 1e-45))
    figures["max_abs_logprob_diff"] = float(np.abs(logp - log_ref)[seen].max())
    return figures


def verify_artifact(path: str | os.PathLike, precision: str, images: np.ndarray, reference: np.ndarray,
                    threads: int | None = None, label: str | None = None, scores: str = "logits",
                    runtime: str | None = None) -> dict:
    """Verification figures for one artifact; fp32 beyond FP32_TOLERANCE is an error.

    `reference` is Keras' logits; `scores="probabilities"` (a softmax ends the artifact)
    compares with their softmax, the fp32 limit applied to log-probabilities. `runtime`: the
    backend's name for the figures (default: the one the file's format plug-in names)."""
    out = run_artifact(path, images, threads)
    if scores == "probabilities":
        figures = compare_probabilities(out, reference, precision)
        worst = figures["max_abs_logprob_diff"]
        what = "logits differ from Keras (compared as log-probabilities after the model's softmax)"
    else:
        figures = compare_logits(out, reference)
        worst = figures["max_abs_diff"]
        what = "logits differ from Keras"
    figures["scores"] = scores
    if runtime is None:
        from ..formats import for_path

        runtime = for_path(path).runtime_name
    figures["runtime"] = runtime
    if precision == "fp32" and worst > FP32_TOLERANCE:
        raise VitedgeError(
            f"{label or path}: fp32 {what} by {worst:.3g} "
            f"(limit {FP32_TOLERANCE:g}); the conversion is wrong, nothing written"
        )
    return figures
