"""What a classifier's output rows are: logits or probabilities, and the conversions between
them (prediction, bench figures and export verification use these; numpy only)."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities of each row of logits (float64; the largest logit subtracted first, so
    large logits do not overflow)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) computed without taking the log of a rounded-to-zero probability."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def looks_like_probabilities(scores: np.ndarray) -> bool:
    """For files whose metadata does not say: rows in [0, 1] summing to 1 are not logits."""
    s = np.asarray(scores, dtype=np.float64)
    return bool(s.size and s.min() >= 0.0 and s.max() <= 1.0 and np.allclose(s.sum(axis=-1), 1.0, atol=1e-3))
