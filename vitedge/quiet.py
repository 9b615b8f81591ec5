"""Keep the converters' native chatter (TF/absl/MLIR logs on fd 2) off the user's terminal."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Redirect file descriptor 2 (C++ logs included) into a buffer while the block runs.

    Yields a list that holds the captured text afterwards, for error messages. With
    VITEDGE_DEBUG=1 nothing is hidden.
    """
    captured: list[str] = []
    if os.environ.get("VITEDGE_DEBUG"):
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def last_error_line(text: str) -> str:
    """The most telling line of a converter log: the last one that mentions an error."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else ""
