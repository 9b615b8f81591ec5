"""Up-front memory and disk checks for an export: refuse in one line before the expensive part.

The estimates are linear in the model's fp32 weight bytes W, with factors fitted to measured
peaks (docs/export-memory.md, measured with scripts/memwatch.py on ViT-S and ViT-B):

  memory  the parent process (TensorFlow, the Keras model, the ONNX graphs it holds) plus the
          heaviest single step; with isolation (`vitedge.export.isolate`) the steps run one at a
          time in child processes, without it every step's leftovers add up in one process.
  disk    the artifacts themselves plus the intermediate files in the temporary folder
          (SavedModel, tf2onnx's and the fused graph, the calibrated TFLite model, ...).

`VITEDGE_MEMORY_AVAILABLE` / `VITEDGE_DISK_AVAILABLE` (bytes, or with a K/M/G suffix) replace
what the system reports, so tests can force the refusals on a small model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError, VitedgeError

MEMORY_ENV = "VITEDGE_MEMORY_AVAILABLE"
DISK_ENV = "VITEDGE_DISK_AVAILABLE"
GB = 1e9

# Fitted to the measurements in docs/export-memory.md (bytes of peak per byte of fp32 weights,
# plus what TensorFlow itself costs with a tiny model).
BASE_BYTES = 1.5 * GB  # a child with TensorFlow loaded + the lean parent (small model)
PARENT_FACTOR = 1.5  # the ONNX graphs the parent holds and writes (ViT-B: 0.45 -> 1.6 GB)
INLINE_FACTOR = 1.6  # without isolation: leftovers of earlier steps stay in the one process
# Artifact bytes per weight byte, by precision (each format's steps: its plug-in's
# convert_memory / convert_disk).
ARTIFACT_FACTOR = {"fp32": 1.0, "fp16": 0.5, "int16x8": 0.3, "int8": 0.3, "dynamic": 0.3}


def parse_bytes(value: str, name: str) -> int:
    """'3G', '512M', '1000000' -> bytes; a UsageError naming the variable otherwise."""
    text = value.strip().upper().removesuffix("B")
    scale = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(text[-1:], 1)
    try:
        return int(float(text[:-1] if scale != 1 else text) * scale)
    except ValueError:
        raise UsageError(f"{name}={value!r}: give bytes, e.g. 8G or 500M") from None


def memory_available() -> int | None:
    """Bytes the system can give without swapping (MemAvailable), or the env override."""
    if os.environ.get(MEMORY_ENV):
        return parse_bytes(os.environ[MEMORY_ENV], MEMORY_ENV)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def disk_available(folder: Path) -> int | None:
    """Free bytes on the file system of `folder` (its nearest existing parent), or the override."""
    if os.environ.get(DISK_ENV):
        return parse_bytes(os.environ[DISK_ENV], DISK_ENV)
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


@dataclass
class Estimate:
    memory: int  # peak resident bytes of the whole command
    disk: int  # artifacts + temporary files


def estimate(weight_bytes: int, pairs: list[tuple], isolated: bool) -> Estimate:
    """Peak memory and disk of exporting a model of `weight_bytes` to `pairs` of
    (`vitedge.formats.ArtifactFormat`, precision)."""
    families = {(f.converter_family or f.name): f for f, _ in pairs}
    steps = [f.convert_memory for f in families.values()]
    if isolated:
        memory = BASE_BYTES + (PARENT_FACTOR + max(steps)) * weight_bytes
    else:
        memory = BASE_BYTES + (PARENT_FACTOR + max(steps) + INLINE_FACTOR * (sum(steps) - max(steps))) * weight_bytes
    disk = sum(ARTIFACT_FACTOR.get(p, 1.0) for _, p in pairs) * weight_bytes
    disk += sum(f.convert_disk for f in families.values()) * weight_bytes
    return Estimate(int(memory), int(disk))


def check_file_sizes(weight_bytes: int, pairs: list[tuple], stem: str) -> None:
    """Refuse an artifact whose estimated size is past its format's `max_file_bytes`."""
    for fmt, precision in pairs:
        size = ARTIFACT_FACTOR.get(precision, 1.0) * weight_bytes
        if fmt.max_file_bytes is not None and size > fmt.max_file_bytes:
            smaller = [p for p in fmt.precisions if ARTIFACT_FACTOR.get(p, 1.0) * weight_bytes <= fmt.max_file_bytes]
            raise VitedgeError(f"{fmt.title} {precision} of {stem} would be about {_gb(size)}, past the "
                               f"{fmt.max_file_bytes / 2**30:.0f} GiB a {fmt.suffix} file can hold; vitedge does "
                               f"not write split {fmt.title} files" + (f" (try {', '.join(smaller)})" if smaller else ""))


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def check(weight_bytes: int, pairs: list[tuple], isolated: bool, out_dir: Path,
          what: str = "this export") -> Estimate:
    """Raise a one-line VitedgeError if memory or disk cannot hold `what`; returns the estimate."""
    need = estimate(weight_bytes, pairs, isolated)
    memory = memory_available()
    if memory is not None and need.memory > memory:
        raise VitedgeError(f"not enough memory for {what}: it needs about {_gb(need.memory)}, "
                           f"{_gb(memory)} is available; export fewer formats/precisions per call or free memory")
    temp = Path(tempfile.gettempdir())
    disk_out, disk_tmp = disk_available(out_dir), disk_available(temp)
    if disk_out is not None and disk_tmp is not None:
        same = os.environ.get(DISK_ENV) or _same_device(out_dir, temp)
        free = min(disk_out, disk_tmp) if same else None
        if free is not None and need.disk > free:
            raise VitedgeError(f"not enough disk space for {what}: it needs about {_gb(need.disk)} "
                               f"(artifacts and temporary files), {_gb(free)} is free")
        if free is None:
            artifacts = sum(ARTIFACT_FACTOR.get(p, 1.0) for _, p in pairs) * weight_bytes
            for free_here, needed, where in ((disk_out, artifacts, str(out_dir)),
                                             (disk_tmp, need.disk - artifacts, str(temp))):
                if needed > free_here:
                    raise VitedgeError(f"not enough disk space in {where} for {what}: it needs about "
                                       f"{_gb(needed)}, {_gb(free_here)} is free")
    return need


def _same_device(a: Path, b: Path) -> bool:
    def device(p: Path) -> int:
        p = Path(p).absolute()
        while not p.exists() and p != p.parent:
            p = p.parent
        return p.stat().st_dev

    try:
        return device(a) == device(b)
    except OSError:
        return True
