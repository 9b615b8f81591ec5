"""Safe file writing: never overwrite without --force, never leave a half-written file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
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
    remove_stale(path.parent)
    suffix = suffix if suffix is not None else "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.p{os.getpid()}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise VitedgeError(f"writing {path} produced no data")
        if path.exists() and not force:  # appeared while we worked
            raise VitedgeError(f"{path} already exists; use --force to overwrite it")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Like `atomic_output`, for a folder: fill the yielded temporary folder, renamed onto `path` on success.

    With `force`, an existing `path` is moved aside and deleted only after the new one is in place.
    """
    import shutil

    path = Path(path)
    if path.exists() and not force:
        raise VitedgeError(f"{path} already exists; use --force to overwrite it")
    if path.exists() and not path.is_dir():
        raise VitedgeError(f"{path} exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=".partial", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should look like any new folder
    old = None
    try:
        yield tmp
        if path.exists():
            if not force:  # appeared while we worked
                raise VitedgeError(f"{path} already exists; use --force to overwrite it")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "previous")
        try:
            os.replace(tmp, path)
        except OSError:
            if old is not None:  # put the previous folder back
                os.replace(old / "previous", path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# Work files vitedge leaves only when it is killed: `.NAME.p<pid>.<random>.partial[.suffix]` and
# `.NAME.p<pid>.<random>.old` beside outputs, `vitedge-<job>-p<pid>-<random>` in the temp folder.
_STALE_NAMES = (re.compile(r"^\..+\.p(\d+)\.[A-Za-z0-9_]+\.(?:partial(?:\..*)?|old)$"),
                re.compile(r"^vitedge-[a-z]+-p(\d+)-[A-Za-z0-9_]+$"))
STALE_AGE = 600.0  # seconds untouched before a dead process's work file is removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process, or not a pid we can judge: keep its files
    return True


def remove_stale(folder: str | os.PathLike, age: float = STALE_AGE) -> list[Path]:
    """Delete the work files a killed vitedge left in `folder`: only names vitedge makes, whose
    process (the pid in the name) is gone, untouched for `age` seconds. Returns what was removed."""
    import shutil
    import time

    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = next((m for m in (p.match(entry.name) for p in _STALE_NAMES) if m), None)
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < age:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue  # gone already, or not ours to delete
    return removed


def work_folder(job: str) -> str:
    """A new folder `vitedge-<job>-p<pid>-...` in the temp folder, for a caller that removes it
    itself, after removing the ones killed runs left there (see `remove_stale`)."""
    remove_stale(tempfile.gettempdir())
    return tempfile.mkdtemp(prefix=f"vitedge-{job}-p{os.getpid()}-")


def work_directory(job: str):
    """`work_folder` as a context manager that removes the folder on exit."""
    import contextlib
    import shutil

    @contextlib.contextmanager
    def scope():
        folder = work_folder(job)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return scope()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
