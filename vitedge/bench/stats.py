"""The figures of a benchmark row: latency summary, accuracy, agreement, the Pareto front."""

from __future__ import annotations

import numpy as np

from ..scores import softmax


def latency_summary(times_ms, batch: int) -> dict:
    """mean/std/min/max and p50/p90/p99 of per-batch times (ms), and images per second."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        return {}
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    total = float(t.sum())
    return {
        "mean_ms": float(t.mean()), "std_ms": float(t.std()), "min_ms": float(t.min()), "max_ms": float(t.max()),
        "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
        "images_per_s": batch * t.size / (total / 1e3) if total > 0 else None,
    }


def median(times_ms) -> float:
    return float(np.median(np.asarray(times_ms, dtype=np.float64)))


def paired_speedup(ref_rounds, rounds) -> dict:
    """How many times faster than its reference a row ran: the median of per-round p50 ratios.

    Each round timed the reference next to the row, so a ratio compares the two under the same
    machine state. Pooling all rounds first would not: where the machine's speed drifts, the
    pooled p50 of a two-mode mixture jumps with the share of slow rounds each side happened to
    get. Also the quartiles of the ratios, to show how much the rounds agree.
    """
    if not ref_rounds or not rounds or len(ref_rounds) != len(rounds):
        return {}
    ratios = np.asarray(ref_rounds, dtype=np.float64) / np.asarray(rounds, dtype=np.float64)
    p25, p50, p75 = np.percentile(ratios, [25, 50, 75])
    return {"speedup": float(p50), "speedup_iqr": [float(p25), float(p75)]}


def accuracy(scores: np.ndarray, targets: np.ndarray) -> dict:
    """Top-1 and top-5 accuracy in percent (top-k with k = min(5, classes))."""
    k = min(5, scores.shape[1])
    top1 = np.argmax(scores, axis=1) == targets
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    in_topk = (topk == targets[:, None]).any(axis=1)
    return {"top1": 100.0 * float(top1.mean()), "top5": 100.0 * float(in_topk.mean()), "correct": int(top1.sum())}


def agreement(scores: np.ndarray, kind: str, ref: np.ndarray, ref_kind: str) -> dict:
    """Top-1 agreement (percent) and mean absolute difference of the scores.

    Logits are compared as logits; when one side gives probabilities, both are compared as
    probabilities (softmax of the logits), the only space they share.
    """
    same_top1 = np.argmax(scores, axis=1) == np.argmax(ref, axis=1)
    if kind == ref_kind:
        a, b, space = scores, ref, kind
    else:
        a = scores if kind == "probabilities" else softmax(scores)
        b = ref if ref_kind == "probabilities" else softmax(ref)
        space = "probabilities"
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return {"agreement_top1": 100.0 * float(same_top1.mean()), "mean_abs_diff": float(diff.mean()),
            "max_abs_diff": float(diff.max()), "diff_space": space}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indexes of the points no other point beats: lower x (latency) and higher y (accuracy).

    A point is dominated if another is at least as good on both and strictly better on one.
    """
    front = []
    for i, (xi, yi) in enumerate(points):
        dominated = any(
            (xj <= xi and yj >= yi) and (xj < xi or yj > yi) for j, (xj, yj) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])
