"""Reader for IDX files, the format of MNIST and Fashion-MNIST (gzip-compressed or raw).

Layout (big-endian): two zero bytes, a type code, the number of dimensions N, N 32-bit sizes,
then the data in C order. http://yann.lecun.com/exdb/mnist/ describes it.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import VitedgeError

# type code -> big-endian numpy dtype
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
MAX_DIMS = 8


def _read_all(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise VitedgeError(f"{path}: corrupt gzip data ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (native byte order). Any inconsistency is a VitedgeError."""
    path = Path(path)
    if not path.is_file():
        raise VitedgeError(f"{path}: no such file")
    data = _read_all(path)
    if len(data) < 4:
        raise VitedgeError(f"{path}: too short for an IDX file ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_TYPES or not 1 <= ndim <= MAX_DIMS:
        raise VitedgeError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise VitedgeError(f"{path}: IDX header cut short")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        shape = "x".join(map(str, dims))
        raise VitedgeError(f"{path}: IDX data has {got} bytes, but the header ({shape} {dtype.name}) says {expected}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_images_and_labels(images_path, labels_path, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An image IDX file (N, H, W) of uint8 and its label file (N,), checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise VitedgeError(f"{images_path}: expected N x H x W bytes, found {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise VitedgeError(f"{labels_path}: expected N label bytes, found {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise VitedgeError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    if num_classes is not None and len(labels) and int(labels.max()) >= num_classes:
        raise VitedgeError(f"{labels_path}: label {int(labels.max())} out of range 0..{num_classes - 1}")
    return images, labels
