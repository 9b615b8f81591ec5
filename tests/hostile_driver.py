"""Runs many `vitedge` command lines cheaply, each in a forked child under limits (tests/test_hostile.py).

Imports vitedge, the runtimes and Pillow once, then for each case (JSON lines on stdin:
{"id", "argv", "cwd", "timeout", "memory_mb"}) forks a child in its own process group with
RLIMIT_AS set, stdout/stderr sent to files, that runs `vitedge.cli.main(argv)`. The parent
kills the group when the case runs past its timeout. One JSON line per case on stdout:
{"id", "code" (exit status or null), "signal" (or null), "timed_out", "seconds", "stderr",
"stdout"}. A child's own children (predict's runtime process) inherit the memory limit.
"""

import json
import os
import resource
import signal
import sys
import tempfile
import time


def _preload() -> None:
    """What every case would import: loaded once here, shared by every fork."""
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401
    from PIL import Image  # noqa: F401

    import vitedge.cli  # noqa: F401
    import vitedge.commands.info  # noqa: F401
    import vitedge.commands.predict  # noqa: F401
    import vitedge.predict  # noqa: F401
    import vitedge.runtime.litert  # noqa: F401
    import vitedge.runtime.onnxrt  # noqa: F401

    vitedge.runtime.litert.interpreter_module()


def _child(case: dict, out: str, err: str) -> None:
    os.setpgid(0, 0)
    limit = case["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for fd, name in ((1, out), (2, err)):
        f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - fresh streams on the new descriptors
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    os.chdir(case["cwd"])
    code = 0
    try:
        from vitedge.cli import main

        main(case["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # a traceback escaped the CLI: print it, so the test shows it
        import traceback

        traceback.print_exc()
        code = 99
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def run_case(case: dict, work: str) -> dict:
    out, err = os.path.join(work, "out"), os.path.join(work, "err")
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            _child(case, out, err)
        finally:
            os._exit(98)
    timed_out, status = False, 0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - started > case["timeout"]:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    seconds = time.monotonic() - started
    try:  # the group's other members (predict's runtime child) must not outlive the case
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

    def read(name):
        with open(name, "rb") as fh:
            return fh.read(20000).decode("utf-8", "replace")

    return {"id": case["id"], "timed_out": timed_out, "seconds": round(seconds, 3),
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "stdout": read(out), "stderr": read(err)}


def main() -> None:
    _preload()
    with tempfile.TemporaryDirectory(prefix="hostile-driver-") as work:
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(run_case(json.loads(line), work)), flush=True)


if __name__ == "__main__":
    main()
