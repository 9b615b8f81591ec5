"""Safe file writing: never overwrite without --force, never leave a half-written file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import VitedgeError


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to go on if `path` exists and --force was not given; check the folder exists."""
    path = Path(path)
    if path.exists() and not force:
        raise VitedgeError(f"{path} already exists; use --force to overwrite it")
    if path.exists() and path.is_dir():
        raise VitedgeError(f"{path} is a directory, not a file")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the real suffix (converters and Keras check it), and it lives in
    the destination folder so the final rename is atomic on the same file system.
    """
    path = check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise VitedgeError(f"writing {path} produced no data")
        if path.exists() and not force:  # appeared while we worked
            raise VitedgeError(f"{path} already exists; use --force to overwrite it")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
