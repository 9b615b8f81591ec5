"""Where Fashion-MNIST's four IDX files come from, and how each one is checked before use.

Sources, in order: an explicit download URL (always honoured), Debian's package
(/usr/share/datasets/fashion-mnist), files already in the user cache, then a download from the
data set's published location into the cache.

A .gz file is accepted when its bytes have the MD5 Zalando publishes (the one torchvision and
others check), or when the IDX data inside it has the SHA-256 recorded here. The second check
exists because Debian's package ships the same files re-gzipped without the original file name
in the gzip header: 23-24 bytes shorter, other MD5s, identical IDX data (the SHA-256s below were
measured on them; docs/install.md shows how).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import VitedgeError
from . import download as dl

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# The published location (github.com/zalandoresearch/fashion-mnist README); plain HTTP, which
# is why nothing is used before its checksum matches.
DEFAULT_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CACHE_SUBDIR = "fashion-mnist"


@dataclass(frozen=True)
class IdxFile:
    name: str
    published_md5: str  # of the .gz as published
    published_size: int  # bytes of the published .gz
    idx_sha256: str  # of the decompressed IDX data
    idx_size: int  # bytes of the decompressed IDX data


FILES = {
    f.name: f
    for f in (
        IdxFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26_421_880,
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47_040_016),
        IdxFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29_515,
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008),
        IdxFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4_422_102,
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7_840_016),
        IdxFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5_148,
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008),
    )
}
SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def files_for(splits: tuple[str, ...]) -> list[IdxFile]:
    return [f for f in FILES.values() if f.name.split("-")[0] in {SPLIT_PREFIX[s] for s in splits}]


def check_file(path: Path, expected: IdxFile) -> str | None:
    """None if `path` holds `expected` (published MD5, or recorded SHA-256 of its IDX data), else why not."""
    if path.stat().st_size > 2 * expected.published_size:
        return f"{path.stat().st_size:,} bytes, far more than the published {expected.published_size:,}"
    md5 = dl.md5_file(path)
    if md5 == expected.published_md5:
        return None
    digest, size = hashlib.sha256(), 0
    try:
        with gzip.open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                size += len(block)
                if size > expected.idx_size:  # bounded: never inflate more than the real file
                    return f"checksum mismatch (MD5 {md5}, published {expected.published_md5})"
                digest.update(block)
    except (OSError, EOFError, zlib.error):
        return f"checksum mismatch (MD5 {md5}, published {expected.published_md5}; not valid gzip data)"
    if size != expected.idx_size or digest.hexdigest() != expected.idx_sha256:
        return f"checksum mismatch (MD5 {md5}, published {expected.published_md5})"
    return None


def complete(folder: Path, splits: tuple[str, ...]) -> bool:
    return all((folder / f.name).is_file() for f in files_for(splits))


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    return dl.cache_root(explicit) / CACHE_SUBDIR


def find_local(splits: tuple[str, ...] = ("train", "test"), cache: str | os.PathLike | None = None) -> Path | None:
    """Debian's folder or the cache, whichever has every file of `splits` (not checked here), else None."""
    for folder in (DEBIAN_DIR, cache_dir(cache)):
        if complete(folder, splits):
            return folder
    return None


def ensure_files(
    splits: tuple[str, ...],
    url: str | None = None,
    cache: str | os.PathLike | None = None,
    progress: Callable | None = None,
) -> tuple[Path, str]:
    """A folder holding the verified files of `splits`, and where they came from.

    With `url`, files missing from the cache are downloaded from there even if Debian's
    package is installed. Every file used is checked (Debian's too) before this returns.
    """
    wanted = files_for(splits)
    if url is None and complete(DEBIAN_DIR, splits):
        _check_all(DEBIAN_DIR, wanted, f"Debian's {DEBIAN_DIR}")
        return DEBIAN_DIR, "debian"
    folder = cache_dir(cache)
    base = (url or DEFAULT_URL).rstrip("/") + "/"
    if not base.startswith(("http://", "https://")):
        raise VitedgeError(f"--url must start with http:// or https://, got {url!r}")
    fetched = False
    for f in wanted:
        dest = folder / f.name
        if dest.is_file():
            problem = check_file(dest, f)
            if problem is None:
                continue
            dest.unlink()  # a bad file in the cache is replaced, not trusted
        dl.download(base + f.name, dest, lambda p, f=f: check_file(p, f), 2 * f.published_size, progress)
        fetched = True
    return folder, ("downloaded from " + base) if fetched else "cache"


def _check_all(folder: Path, wanted: list[IdxFile], where: str) -> None:
    for f in wanted:
        problem = check_file(folder / f.name, f)
        if problem:
            raise VitedgeError(f"{where}/{f.name}: {problem}")
