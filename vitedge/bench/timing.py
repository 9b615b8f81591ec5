"""Latency of several artifacts measured together: each in its own process, in alternating rounds.

On a shared machine the load changes from second to second; timing artifact A, then B, then
C lets a burst of someone else's work land on one of them. Rounds alternate the artifacts
(A B C, then C B A, ...), so a burst spreads over all of them and their *ratios* hold even
when the absolute figures move; each artifact's latency is the median over all its runs, and a
ratio between two of them is the median of their per-round ratios (`paired_speedup`, as in
`vitedge bench --rounds`): this machine's speed drifts within seconds, and the pooled median of
a two-speed mixture jumps with the share of slow rounds each artifact happened to get.

Each artifact runs in a fresh process (the bench worker, `python -m vitedge.bench.worker`, with
a {"timing": ...} job), as on a device: in
one process ONNX Runtime sessions disturb each other (their worker threads keep spinning
after a run), which measured here turned ViT-Ti's int8 speed-up of 1.46x into 1.15x. Batch 1,
through `vitedge.runtime.load_runtime` (the device path), random input of the model's size.

`time_in_turns` is the other way, for models loaded in one process (`vitedge bench
--interleave`, the kernel bounds): turns of ~0.2 s, each opening with untimed runs while the
previous session's threads stop spinning.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass

import numpy as np

from .stats import paired_speedup


@dataclass
class Timing:
    path: str
    p50_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    round_p50_ms: list[float]

    def speedup_over(self, reference: Timing) -> float:
        """How many times faster than `reference` this ran: the median of per-round ratios."""
        return paired_speedup(reference.round_p50_ms, self.round_p50_ms).get("speedup", reference.p50_ms / self.p50_ms)

    def to_dict(self) -> dict:
        return {"path": self.path, "p50_ms": round(self.p50_ms, 4), "p10_ms": round(self.p10_ms, 4),
                "p90_ms": round(self.p90_ms, 4), "runs": self.runs,
                "round_p50_ms": [round(t, 4) for t in self.round_p50_ms]}


def timing_job(path: str, threads: int, runs: int, warmup: int, raw: bool = False) -> list[float]:
    """ms of each timed run. `raw`: any model straight in its runtime on random inputs (the
    kernel stacks of kernels.py have several inputs); else the device runtime on one image."""
    if raw:
        from ..runtime.raw import raw_runner

        run = raw_runner(path, threads)
    else:
        from ..runtime import load_runtime

        runtime = load_runtime(path, threads=threads)
        _, h, w, _ = runtime.input_shape
        if h is None or w is None:
            h, w = runtime.info.input_size
        x = np.random.default_rng(0).uniform(-1, 1, (1, h, w, 3)).astype(np.float32)

        def run():
            runtime.run(x)
    for _ in range(warmup):
        run()
    return timed_runs(run, runs)


def timed_runs(run, n: int) -> list[float]:
    """ms of each of `n` calls of `run`."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def time_in_turns(runners: list, seconds: float = 0.0, runs: int = 0, block_ms: float = 200.0,
                  settle_ms: float = 20.0) -> tuple[list[list[float]], list[list[float]]]:
    """Models loaded in ONE process, timed in turns of ~block_ms each: (times ms, per-turn p50s) of each.

    runners: no-argument callables, one inference each. Stops after at least one turn, once
    `seconds` have passed and every model has `runs` timed runs. Turns of a fraction of a second
    follow a shared machine's speed, which drifts over seconds, far more closely than fresh
    processes a second apart can, so a per-turn ratio compares like with like. Each turn opens
    with `settle_ms` of untimed runs: ONNX Runtime's idle threads keep spinning for a while after
    a run (its default, kept: that is how it runs on a device) and would take the cores from the
    next session.
    """
    per_turn = []
    for run in runners:
        for _ in range(5):
            run()
        start = time.perf_counter()
        run()
        per_turn.append(max(1, int(block_ms / 1e3 / max(1e-6, time.perf_counter() - start))))
    times: list[list[float]] = [[] for _ in runners]
    turns: list[list[float]] = [[] for _ in runners]
    end = time.perf_counter() + seconds
    while not turns[0] or time.perf_counter() < end or min(len(t) for t in times) < runs:
        for run, n, out, medians in zip(runners, per_turn, times, turns, strict=True):
            settled = time.perf_counter() + settle_ms / 1e3
            run()  # untimed: the previous model's threads have just gone idle
            while time.perf_counter() < settled:
                run()
            turn = timed_runs(run, n)
            out += turn
            medians.append(float(np.median(turn)))
    return times, turns


def interleaved(paths: list[str | os.PathLike], threads: int = 2, rounds: int = 4, runs: int = 50,
                warmup: int = 10, raw: bool = False, device=None) -> list[Timing]:
    """`rounds` alternating rounds of `runs` timed runs per artifact, each in its own process
    (on this machine, or on `device`, a started `bench.remote.SshDevice`)."""
    samples: dict[str, list[float]] = {str(p): [] for p in paths}
    round_p50: dict[str, list[float]] = {str(p): [] for p in paths}
    order = [str(p) for p in paths]
    for r in range(rounds):
        for path in (order if r % 2 == 0 else order[::-1]):
            timing = {"path": path, "threads": threads, "runs": runs, "warmup": warmup, "raw": raw}
            times = _time_in_worker(timing) if device is None else _time_on_device(timing, device)
            samples[path].extend(times)
            round_p50[path].append(float(np.median(times)))
    out = []
    for path in order:
        ms = np.asarray(samples[path])
        out.append(Timing(path, float(np.median(ms)), float(np.percentile(ms, 10)), float(np.percentile(ms, 90)),
                          len(ms), round_p50[path]))
    return out


def _time_on_device(timing: dict, device) -> list[float]:
    """ms of each timed run of one artifact, in a fresh bench worker process on `device`."""
    from pathlib import Path

    from ..errors import VitedgeError
    from ..fileio import work_directory

    with work_directory("timing") as tmp:
        reply = device.run_worker({"timing": timing}, device.timeout, Path(tmp) / "worker.err")
    if reply.get("event") != "result":
        raise VitedgeError(f"timing {timing['path']} on {device.name} failed: {reply.get('stage')}: "
                           f"{str(reply.get('message'))[:200]}")
    return reply["times_ms"]


def _time_in_worker(timing: dict) -> list[float]:
    """ms of each timed run of one artifact, in a fresh bench worker process."""
    from ..errors import VitedgeError
    from .runner import WORKER_COMMAND, worker_env

    proc = subprocess.run(WORKER_COMMAND, input=json.dumps({"timing": timing}), capture_output=True, text=True,
                          env=worker_env())
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = next((e for e in events if e.get("event") == "result"), None)
    if result is None:
        error = next((e.get("message") for e in events if e.get("event") == "error"), None)
        tail = error or (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise VitedgeError(f"timing {timing['path']} failed: {tail[:200]}")
    return result["times_ms"]
