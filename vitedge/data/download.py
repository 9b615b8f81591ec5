"""Resumable, checksum-verified downloads into the user's cache (standard library only).

A download lands in `<name>.part` beside its final name; an interrupted one resumes from the
bytes already there (HTTP Range). The final name appears only after the checksum check passed,
so a file under its final name is always a verified one.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import VitedgeError

CHUNK = 1 << 16
TIMEOUT_S = 30


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """`explicit`, else $XDG_CACHE_HOME/vitedge, else ~/.cache/vitedge (the XDG default)."""
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative value
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vitedge"


def md5_file(path: str | os.PathLike) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    dest: Path,
    verify: Callable[[Path], str | None],
    max_bytes: int,
    progress: Callable[[str, int | None, int], contextlib.AbstractContextManager] | None = None,
) -> Path:
    """Fetch `url` to `dest` through `dest.part`, resuming a partial file; returns `dest`.

    `verify(path)` returns None when the file is good, else a reason; a bad file is deleted
    (resuming from it would only repeat the error). `max_bytes` bounds what is accepted from the
    server. `progress(label, total or None, already)` is a context manager yielding a callback fed
    each chunk's size.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "vitedge", "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (http(s) URL from the user)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file already holds the whole file
            return _finish(part, dest, verify, url)
        raise VitedgeError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise VitedgeError(f"downloading {url} failed: {reason}") from None
    with response:
        status = response.status
        if status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != have:
                raise VitedgeError(f"downloading {url} failed: the server resumed at byte {start}, not {have}")
        elif status == 200:
            have = 0  # the server ignored the Range header: start over
        else:
            raise VitedgeError(f"downloading {url} failed: unexpected HTTP status {status}")
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise VitedgeError(f"downloading {url} refused: {total:,} bytes, more than the {max_bytes:,} expected")
        bar = progress(dest.name, total, have) if progress else contextlib.nullcontext(lambda n: None)
        got = have
        try:
            with bar as advance, open(part, "ab" if have else "wb") as out:
                while block := response.read(CHUNK):
                    got += len(block)
                    if got > max_bytes:
                        part.unlink()
                        raise VitedgeError(f"downloading {url} refused: more than the {max_bytes:,} bytes expected")
                    out.write(block)
                    advance(len(block))
        except (OSError, http.client.HTTPException) as exc:  # (timeouts are OSErrors)
            raise VitedgeError(f"downloading {url} stopped after {got:,} bytes ({exc or type(exc).__name__}); "
                               "run the same command again to resume") from None
    if total is not None and got < total:
        raise VitedgeError(f"downloading {url} stopped after {got:,} of {total:,} bytes; "
                           "run the same command again to resume")
    return _finish(part, dest, verify, url)


def _finish(part: Path, dest: Path, verify: Callable[[Path], str | None], url: str) -> Path:
    problem = verify(part)
    if problem:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise VitedgeError(f"{url}: {problem}; the download was deleted")
    os.replace(part, dest)
    return dest


def _content_range_start(value: str) -> int | None:
    """`bytes 100-199/200` -> 100."""
    unit, _, rest = value.strip().partition(" ")
    first = rest.split("-", 1)[0]
    return int(first) if unit == "bytes" and first.isdigit() else None
