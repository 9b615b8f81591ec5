import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run `python -m vitedge ARGS` in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vitedge", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout,
    )


def assert_one_line_error(proc):
    """A failed command: non-zero exit, exactly one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not _is_library_noise(ln)]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("vitedge: error:"), lines[0]
    return lines[0]


def _is_library_noise(line: str) -> bool:
    # TensorFlow/absl chatter that a library prints on import is not ours to silence entirely.
    return line.startswith(("WARNING: All log messages before absl", "I0000", "W0000", "E0000"))


@pytest.fixture(scope="session")
def tiny_config():
    from vitedge.variants import ViTConfig

    return ViTConfig(image_size=(32, 32), patch_size=8, width=32, depth=2, heads=4, mlp_dim=64, num_classes=5,
                     variant="tiny-test")
