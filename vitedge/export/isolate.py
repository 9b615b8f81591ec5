"""Heavy export steps in a subprocess of their own, so their memory goes back to the system.

TensorFlow's converters, tf2onnx and the quantizers each peak at several times the model's
weights and keep much of it (allocator caches, graph copies) until the process ends. Run in
one process, the steps of an export stack up; run each in a child process, the whole command
peaks at the largest single step plus the parent's Keras model.

`call("package.module:function", *args, isolate=..., what="...")` runs the function here when
`isolate` is false, else in `python -m vitedge.export.isolate JOB RESULT`: arguments and the
result go through pickle files in a private temporary folder (vitedge's own data, written and
read by this module only). A VitedgeError/UsageError in the child is raised again here with
its message; a child killed by a signal (the kernel's out-of-memory killer sends SIGKILL)
becomes one VitedgeError line naming the step.

`VITEDGE_EXPORT_ISOLATE`: weight bytes from which a model's steps are isolated (default
64 MB: ViT-S and larger; 0 = always, "off" = never).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import UsageError, VitedgeError
from ..fileio import work_directory

ENV = "VITEDGE_EXPORT_ISOLATE"
DEFAULT_THRESHOLD = 64 * 2**20


def threshold() -> int | None:
    """Weight bytes from which steps are isolated (None: never)."""
    raw = os.environ.get(ENV, "").strip().lower()
    if not raw:
        return DEFAULT_THRESHOLD
    if raw in ("off", "no", "never", "false"):
        return None
    try:
        return max(0, int(float(raw)))
    except ValueError:
        raise UsageError(f"{ENV}={raw!r}: give a number of bytes, 0 (always) or off") from None


def wanted(weight_bytes: int) -> bool:
    """True if a model with `weight_bytes` of weights should run its heavy steps isolated."""
    limit = threshold()
    return limit is not None and weight_bytes >= limit


def _resolve(ref: str):
    from ..formats.base import resolve_reference

    return resolve_reference(ref)


def killed_message(what: str, sig: int) -> str:
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
    if sig == signal.SIGKILL:
        return (f"{what} was killed by the system ({name}, most likely out of memory); free memory or "
                "export fewer formats/precisions at once (see docs/export-memory.md)")
    return f"{what} was killed by {name}"


def call(ref: str, *args, isolate: bool = False, what: str = "a conversion step", **kwargs):
    """`ref(*args, **kwargs)`, here or (isolate=True) in a child process; see the module docstring."""
    if not isolate:
        return _resolve(ref)(*args, **kwargs)
    with work_directory("step") as folder:
        job, result, log = (Path(folder) / n for n in ("job.pkl", "result.pkl", "stderr.txt"))
        with open(job, "wb") as f:
            pickle.dump((ref, args, kwargs), f, protocol=pickle.HIGHEST_PROTOCOL)
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with open(log, "wb") as err:
            proc = subprocess.run([sys.executable, "-m", "vitedge.export.isolate", str(job), str(result)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
        if proc.returncode < 0:
            raise VitedgeError(killed_message(what, -proc.returncode))
        if not result.exists():
            from ..quiet import last_error_line

            detail = last_error_line(log.read_text("utf-8", "replace"))
            raise VitedgeError(f"{what} failed (exit {proc.returncode}): {detail}")
        with open(result, "rb") as f:
            status, payload = pickle.load(f)
    if status == "ok":
        return payload
    kind, message = payload
    raise (UsageError if kind == "UsageError" else VitedgeError)(message)


def _child(job: str, result: str) -> int:
    with open(job, "rb") as f:
        ref, args, kwargs = pickle.load(f)
    try:
        value = ("ok", _resolve(ref)(*args, **kwargs))
    except (VitedgeError, UsageError) as exc:
        value = ("error", (type(exc).__name__ if isinstance(exc, UsageError) else "VitedgeError", str(exc)))
    except MemoryError:
        value = ("error", ("VitedgeError", f"{ref.rpartition(':')[2]} ran out of memory"))
    tmp = result + ".part"
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, result)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
