"""Run a command's work in a forked child, so a native crash in a runtime becomes one line.

LiteRT and ONNX Runtime are C++; a damaged or hostile model can make them segfault or abort,
which no Python `except` catches. `predict` therefore loads and runs the model in a forked
child process that writes its own output; the parent only waits. If the child dies of a
signal, the parent prints one line naming the model and the signal and exits 1, and a
program that called vitedge in-process (`VITEDGE_IN_PROCESS=1` skips the fork) is not taken
down with it. Fork is cheap here: the parent has imported nothing heavy yet.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from .errors import VitedgeError

IN_PROCESS_ENV = "VITEDGE_IN_PROCESS"


def _child(work: Callable[[], int]) -> int:
    """The exit code of `work()`, errors turned into one line as the CLI does (vitedge.cli.main)."""
    try:
        return work()
    except VitedgeError as exc:
        _say(f"vitedge: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("vitedge: error: interrupted")
        return 130
    except BrokenPipeError:
        return 141
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        if os.environ.get("VITEDGE_DEBUG"):
            import traceback

            traceback.print_exc()
            return 3
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _say(f"vitedge: error: internal error: {type(exc).__name__}: {msg[:300]} "
             "(VITEDGE_DEBUG=1 shows the traceback)")
        return 3
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError):
        pass


def run_isolated(work: Callable[[], int], what: str) -> int:
    """`work()`'s exit code, computed in a forked child; a VitedgeError if the child dies of a signal.

    what: the thing being run, for the message (the model's path)."""
    if os.environ.get(IN_PROCESS_ENV) == "1" or not hasattr(os, "fork"):
        return work()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 3
        try:
            code = _child(work)
        finally:
            os._exit(code if isinstance(code, int) else 1)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except KeyboardInterrupt:  # the child got the same SIGINT; let it finish its way
            os.kill(pid, signal.SIGINT)
        except ChildProcessError:
            return 1
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGINT:
            raise KeyboardInterrupt
        raise VitedgeError(f"{what}: the runtime crashed on this model ({name}); it is damaged or not "
                           "supported by this runtime version")
    return os.WEXITSTATUS(status)
