"""One benchmark row, in its own process: `python -m vitedge.bench.worker` < job.json.

A fresh process per artifact keeps memory, thread pools and caches from leaking between rows,
makes the peak resident memory that artifact's own, and turns a crash into a failed row.

The job (one JSON object on stdin):
  path, kind ("runtime" | "keras"), threads, provider, probe (bool),
  inputs: {file, shape: [H, W, 3], rows: [...]}   (see dataset.InputFile)
  batch, warmup, runs, min_time_s (optional), scores (a .npy path for the scores of every input row)
or {"together": [...], seconds, block_ms, settle_ms}   (--interleave: several artifacts in turns)
or {"timing": {path, threads, runs, warmup, raw}}    (timing.interleaved: timed runs only)
Replies, one JSON object a line, on the original stdout (anything a library prints goes to stderr):
  {"event": "progress", "done": k}   ...
  {"event": "result", ...figures}  or  {"event": "error", "stage": "load"|"run", "message": "..."}
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


class StageError(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far (MB).

    Linux: VmHWM, which belongs to this program's own address space. getrusage's ru_maxrss
    is not used there: it keeps the high-water mark of the process image that exec replaced,
    i.e. the parent's size at fork time.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _message(exc: BaseException) -> str:
    from ..errors import VitedgeError

    text = str(exc).strip()
    first = text.splitlines()[0][:300] if text else ""
    if isinstance(exc, VitedgeError):
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def open_model(job: dict):
    if job["kind"] == "keras":
        from .keras_model import KerasModel

        return KerasModel(job["path"], threads=job.get("threads"))
    from ..runtime import load_runtime

    return load_runtime(job["path"], threads=job.get("threads"), provider=job.get("provider"))


def describe(model) -> dict:
    """What the parent needs to know about the loaded model."""
    out = {"runtime": getattr(model, "name", "?"), "input_shape": list(model.input_shape),
           "output_kind": model.output_kind}
    version = getattr(model, "version", None)
    out["runtime_version"] = version() if callable(version) else ""
    details = getattr(model, "describe", None)
    if callable(details):
        out["runtime_details"] = details()
    batch = getattr(model, "batch_size", None)
    out["model_batch"] = batch if isinstance(batch, int) else None
    return out


def measure(job: dict, emit) -> dict:
    from .dataset import InputReader

    rss_start = peak_rss_mb()
    started = time.perf_counter()
    try:
        model = open_model(job)
        load_s = time.perf_counter() - started
        out = describe(model)
    except Exception as exc:
        raise StageError("load", _message(exc)) from None
    out.update(load_ms=load_s * 1e3, rss_before_load_mb=rss_start)
    if job.get("probe"):
        return out

    spec = job["inputs"]
    rows = spec["rows"]
    batch, warmup, runs = job["batch"], job["warmup"], job["runs"]
    timing_rows = (rows * (batch // len(rows) + 1))[:batch]  # the first B images (repeated if fewer)
    reader = InputReader(spec)
    x = reader.read(timing_rows)
    done, last_report = 0, 0.0

    def step():
        nonlocal done, last_report
        done += 1
        now = time.perf_counter()
        if now - last_report > 0.2:
            emit({"event": "progress", "done": done})
            last_report = now

    try:
        t0 = time.perf_counter()
        y = model.run(x)
        first_s = time.perf_counter() - t0
        step()
        if y.ndim != 2 or len(y) != batch:
            raise StageError("run", f"output has shape {list(y.shape)}; expected ({batch}, classes)")
        for _ in range(warmup):
            model.run(x)
            step()
        # At least `runs` timed runs, and at least `min_time_s` of them: 30 runs of a 0.5 ms model
        # are a 15 ms window, which one burst of other work on a shared machine fills.
        min_time, timed = job.get("min_time_s", 0.0), []
        start = time.perf_counter()
        while len(timed) < runs or time.perf_counter() - start < min_time:
            t0 = time.perf_counter()
            model.run(x)
            timed.append(time.perf_counter() - t0)
            if len(timed) <= runs:  # progress counts the runs asked for
                step()
        times = np.asarray(timed)
        if job.get("timing_only"):  # a later round of --rounds: latency only
            out.update(first_inference_ms=first_s * 1e3, times_ms=(times * 1e3).tolist())
            return out
        # Every input through the model, batch B at a time (dynamic int8 scales depend on the batch,
        # so scores come from the batch size that was timed).
        scores = np.empty((len(rows), y.shape[1]), np.float32)
        t_eval = time.perf_counter()
        for start in range(0, len(rows), batch):
            chunk = reader.read(rows[start:start + batch])
            scores[start:start + len(chunk)] = model.run(chunk)
            step()
        eval_s = time.perf_counter() - t_eval
    except StageError:
        raise
    except Exception as exc:
        raise StageError("run", _message(exc)) from None
    finally:
        reader.close()
    if not np.all(np.isfinite(scores)):
        raise StageError("run", f"{int(np.sum(~np.isfinite(scores).all(axis=1)))} images gave NaN or infinite scores")
    np.save(job["scores"], scores)
    out.update(first_inference_ms=first_s * 1e3, times_ms=(times * 1e3).tolist(),
               eval_images_per_s=len(rows) / eval_s if eval_s > 0 else None, peak_rss_mb=peak_rss_mb())
    return out


def measure_together(job: dict) -> dict:
    """--interleave: several artifacts loaded in ONE process and timed in turns for `seconds`
    (timing.time_in_turns). Returns each artifact's times and per-turn p50s."""
    from ..runtime import load_runtime
    from .dataset import InputReader
    from .timing import time_in_turns

    runners = []
    for sub in job["together"]:
        try:
            model = load_runtime(sub["path"], threads=sub.get("threads"), provider=sub.get("provider"))
        except Exception as exc:
            raise StageError("load", _message(exc)) from None
        rows, batch = sub["inputs"]["rows"], sub["batch"]
        reader = InputReader(sub["inputs"])
        try:
            x = reader.read((rows * (batch // len(rows) + 1))[:batch])
        finally:
            reader.close()
        runners.append(lambda model=model, x=x: model.run(x))
    try:
        times, turns = time_in_turns(runners, seconds=job["seconds"], block_ms=job["block_ms"],
                                     settle_ms=job["settle_ms"])
    except Exception as exc:
        raise StageError("run", _message(exc)) from None
    return {"rows": [{"times_ms": t, "turn_p50_ms": m} for t, m in zip(times, turns, strict=True)]}


def main() -> None:
    # Keep the protocol channel clean: native code printing to fd 1 lands on stderr instead.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        job = json.loads(sys.stdin.read())
        if "timing" in job:  # timing.interleaved: one artifact's timed runs, nothing else
            from .timing import timing_job

            emit({"event": "result", "times_ms": timing_job(**job["timing"])})
        else:
            emit({"event": "result", **(measure_together(job) if "together" in job else measure(job, emit))})
    except StageError as exc:
        emit({"event": "error", "stage": exc.stage, "message": str(exc)})
    except Exception as exc:  # a bug here still becomes a failed row, not a hang
        emit({"event": "error", "stage": "worker", "message": _message(exc)})


if __name__ == "__main__":
    main()
