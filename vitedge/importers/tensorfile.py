"""Read named tensors from checkpoint files as numpy arrays, without PyTorch or TensorFlow.

Three containers cover the ViT checkpoints people have on disk:
  * safetensors (Hugging Face, timm): an 8-byte header length, a JSON header, raw bytes;
  * PyTorch's zip format (`torch.save` since 1.6: .pth, .pt, pytorch_model.bin), read with a
    restricted unpickler that only rebuilds tensors, so a checkpoint cannot run code and
    PyTorch need not be installed;
  * numpy .npz (the original Google JAX checkpoints), loaded with allow_pickle=False.
Every failure (truncated, corrupt, not that format) is a VitedgeError naming the file.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import VitedgeError

# safetensors dtype names -> numpy; BF16 is widened to float32 by hand (numpy has no bfloat16).
_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bf16",
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
# PyTorch storage class names -> numpy
_TORCH_STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bf16", "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _from_bytes(buf: bytes | memoryview, dtype, count: int | None = None) -> np.ndarray:
    if dtype == "bf16":
        return _bf16_to_f32(np.frombuffer(buf, dtype="<u2", count=-1 if count is None else count))
    return np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder("<"), count=-1 if count is None else count)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise VitedgeError(f"{path}: truncated safetensors file ({len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise VitedgeError(f"{path}: not a safetensors file, or truncated (header of {header_len} bytes, "
                           f"file of {len(data)})")
    try:
        header = json.loads(data[8:8 + header_len])
    except (UnicodeDecodeError, ValueError):
        raise VitedgeError(f"{path}: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise VitedgeError(f"{path}: not a safetensors file (header is not a table)")
    body = memoryview(data)[8 + header_len:]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _ST_DTYPES[entry["dtype"]]
            start, end = entry["data_offsets"]
            shape = tuple(int(s) for s in entry["shape"])
        except (KeyError, TypeError, ValueError):
            raise VitedgeError(f"{path}: tensor {name!r} has an unsupported dtype or a bad header entry") from None
        if not all(type(v) is int for v in (start, end)) or any(d < 0 for d in shape):
            raise VitedgeError(f"{path}: tensor {name!r} has a bad offset or shape in the header")
        if end > len(body) or not 0 <= start <= end:
            raise VitedgeError(f"{path}: truncated (tensor {name!r} ends at byte {end} of a {len(body)}-byte body)")
        arr = _from_bytes(body[start:end], dtype)
        if arr.size != math.prod(shape):
            raise VitedgeError(f"{path}: tensor {name!r} holds {arr.size} values, its shape {shape} needs more")
        out[name] = arr.reshape(shape)
    return out


class _Opaque:
    """Stands in for any non-tensor object in a checkpoint (training args, optimizer classes, ...).

    It accepts whatever the pickle hands it and runs none of the original class's code, so a
    checkpoint cannot execute anything; the importer only looks at the tensors.
    """

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _TensorUnpickler(pickle.Unpickler):
    """Rebuilds the tensors of a torch.save() pickle as numpy arrays; other objects become inert stubs."""

    def __init__(self, fh, zf: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(fh)
        self.zf, self.prefix, self.path = zf, prefix, path
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks, *rest: data
        if module == "torch" and name in _TORCH_STORAGES:
            return _TORCH_STORAGES[name]
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch" and name == "Size":
            return tuple
        if module.startswith("torch") and name.startswith("_rebuild"):
            raise pickle.UnpicklingError(f"holds tensors of a kind vitedge cannot read ({name})")
        return type(name, (_Opaque,), {})

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        dtype, key = pid[1], str(pid[2])
        if key not in self.storages:
            if dtype not in _TORCH_STORAGES.values():
                raise pickle.UnpicklingError(f"storage {key} of an unknown type")
            try:
                info = self.zf.getinfo(f"{self.prefix}data/{key}")
            except KeyError:
                raise VitedgeError(f"{self.path}: storage {key} is missing from the archive") from None
            # torch.save stores storages uncompressed; a compressed one far larger than its
            # bytes on disk is a zip bomb, not a checkpoint.
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > 100 * info.compress_size + (1 << 20):
                raise pickle.UnpicklingError(f"storage {key} inflates {info.file_size:,} bytes from "
                                             f"{info.compress_size:,}")
            raw = self.zf.read(info)
            self.storages[key] = _from_bytes(raw, dtype)
        return self.storages[key]


def _rebuild_tensor(storage, offset, size, stride, *rest):
    """A tensor as a view of its storage, every index checked to fall inside that storage first.

    A crafted checkpoint could otherwise read bytes outside the storage (a negative offset or
    stride, a shape whose product overflows) or ask for an absurd allocation."""
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError("a tensor without a storage")
    try:
        size, stride = tuple(size), tuple(stride)
    except TypeError:
        raise pickle.UnpicklingError("a tensor with a bad shape or stride") from None
    ints = (offset, *size, *stride)
    if not all(type(v) is int for v in ints):
        raise pickle.UnpicklingError("a tensor with a non-integer offset, shape or stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"a tensor with {len(size)} dimensions and {len(stride)} strides")
    if offset < 0 or any(s < 0 for s in size) or any(st < 0 for st in stride):
        raise pickle.UnpicklingError("a tensor with a negative offset, shape or stride")
    count = 1
    for s in size:  # Python ints: no overflow, and the product is bounded by the storage below
        count *= s
    if count == 0:
        return np.zeros(size, dtype=storage.dtype)
    if any(st == 0 for s, st in zip(size, stride, strict=True) if s > 1):
        raise pickle.UnpicklingError("a tensor with a zero stride (one value repeated, not a weight)")
    last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
    if last >= storage.size or count > storage.size:
        raise pickle.UnpicklingError(f"a tensor reaches past its storage (element {last} of {storage.size})")
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[st * item for st in stride],
                                           writeable=False)
    return np.array(view)  # a contiguous copy: callers may transpose and keep it


def read_torch(path: str | os.PathLike) -> dict:
    """The object saved by torch.save (zip format), with tensors as numpy arrays."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic == b"PK":
            raise VitedgeError(f"{path}: truncated or corrupt PyTorch checkpoint (zip archive without its end)")
        if magic[:1] == b"\x80":  # a bare pickle: torch.save before 1.6
            raise VitedgeError(f"{path}: a PyTorch file in the legacy (pre-1.6) format; re-save it with a recent "
                               "PyTorch or convert it to safetensors")
        raise VitedgeError(f"{path}: not a PyTorch checkpoint (not a zip archive), or truncated")
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
            if not pkl:
                raise VitedgeError(f"{path}: a zip archive without data.pkl, not a PyTorch checkpoint")
            prefix = pkl[0][: -len("data.pkl")]
            with zf.open(pkl[0]) as fh:
                return _TensorUnpickler(fh, zf, prefix, path).load()
    except VitedgeError:
        raise
    except pickle.UnpicklingError as exc:
        raise VitedgeError(f"{path}: cannot read this PyTorch checkpoint safely ({exc}); "
                           "save only the state dict, or convert it to safetensors") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError, struct.error, zlib.error,
            AttributeError, IndexError, RecursionError, MemoryError) as exc:
        raise VitedgeError(f"{path}: corrupt or truncated PyTorch checkpoint ({exc})") from None


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise VitedgeError(f"{path}: not an .npz archive, or truncated")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise VitedgeError(f"{path}: corrupt or truncated .npz file ({str(exc).splitlines()[0][:200]})") from None


def flatten_state_dict(obj, path: Path) -> dict[str, np.ndarray]:
    """A state dict from a torch.save() object: unwrap {"state_dict": ...}/{"model": ...}."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, np.ndarray) for v in inner.values()):
                return dict(inner)
        tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
        if tensors:
            return tensors
    raise VitedgeError(f"{path}: no state dict of tensors found in this checkpoint")


def read_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Named tensors of one file, by its content (safetensors, torch zip or npz)."""
    path = Path(path)
    if not path.is_file():
        raise VitedgeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VitedgeError(f"{path}: empty file (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(path)
    if suffix == ".npz":
        return read_npz(path)
    if suffix in (".pth", ".pt", ".bin", ".ckpt", ".tar"):
        return flatten_state_dict(read_torch(path), path)
    raise VitedgeError(f"{path}: unknown checkpoint type {suffix or '(no suffix)'}; "
                       "expected .safetensors, .pth/.pt/.bin or .npz")
