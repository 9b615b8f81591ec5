"""Latency of several artifacts measured together: interleaved blocks of runs in one process.

On a shared machine the load changes from second to second; timing artifact A, then B, then
C lets a burst of someone else's work land on one of them. Round-robin blocks spread every
burst over all of them, so their *ratios* hold even when the absolute figures move. Each
artifact runs through `vitedge.runtime.load_runtime` (the device path), batch 1.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Timing:
    path: str
    p50_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    def to_dict(self) -> dict:
        return {"path": self.path, "p50_ms": round(self.p50_ms, 4), "p10_ms": round(self.p10_ms, 4),
                "p90_ms": round(self.p90_ms, 4), "runs": self.runs}


def interleaved(paths: list[str | os.PathLike], image: np.ndarray, threads: int = 2, rounds: int = 30,
                block: int = 5, warmup: int = 10) -> list[Timing]:
    """`rounds` x `block` timed runs of each artifact on `image` (1, H, W, 3), interleaved."""
    from ..runtime import load_runtime

    runtimes = [load_runtime(p, threads=threads) for p in paths]
    batch = np.ascontiguousarray(image[:1], dtype=np.float32)
    for rt in runtimes:
        for _ in range(warmup):
            rt.run(batch)
    samples: list[list[float]] = [[] for _ in runtimes]
    for _ in range(rounds):
        for rt, times in zip(runtimes, samples, strict=True):
            for _ in range(block):
                start = time.perf_counter()
                rt.run(batch)
                times.append(time.perf_counter() - start)
    out = []
    for path, times in zip(paths, samples, strict=True):
        ms = np.asarray(times) * 1e3
        out.append(Timing(str(path), float(np.median(ms)), float(np.percentile(ms, 10)),
                          float(np.percentile(ms, 90)), len(ms)))
    return out
