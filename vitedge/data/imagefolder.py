"""ImageFolder trees: ROOT/<class>/<image files>, one sub-folder per class (torchvision's layout).

Classes are the sub-folder names in sorted order; images are found recursively inside each.
Decoding goes through vitedge.preprocess (`load_pixels`), the runtime's own path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from ..preprocess import Preprocessing, list_images, load_pixels

SPLIT_NAMES = {"train", "test", "val", "validation"}


@dataclass
class ImageFolder:
    root: Path
    classes: list[str]
    files: list[Path]
    labels: np.ndarray  # int32 index into classes, one per file

    def __len__(self) -> int:
        return len(self.files)

    def counts(self) -> dict[str, int]:
        return {c: int(n) for c, n in zip(self.classes, np.bincount(self.labels, minlength=len(self.classes)), strict=True)}

    def subset(self, indices) -> ImageFolder:
        indices = np.asarray(indices, dtype=np.int64)
        return ImageFolder(self.root, self.classes, [self.files[i] for i in indices], self.labels[indices])


def scan_image_folder(root: str | os.PathLike, min_classes: int = 2) -> ImageFolder:
    """Classes and image files of an ImageFolder tree; a clear error for anything unusable."""
    root = Path(root)
    if not root.exists():
        raise VitedgeError(f"{root}: no such folder")
    if not root.is_dir():
        raise VitedgeError(f"{root}: not a folder (expected {root}/<class>/<images>)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise VitedgeError(f"{root}: no class sub-folders (expected {root}/<class>/<images>)")
    splits = [c for c in classes if c.lower() in SPLIT_NAMES and any(p.is_dir() for p in (root / c).iterdir())]
    if splits:
        raise VitedgeError(f"{root} looks like a data set root (it has {', '.join(splits)}/); pass {root / splits[0]}")
    files, labels = [], []
    for index, name in enumerate(classes):
        found = list_images(root / name)
        if not found:
            raise VitedgeError(f"class {name!r} has no images ({root / name} is empty)")
        files.extend(found)
        labels.extend([index] * len(found))
    if len(classes) < min_classes:
        raise VitedgeError(f"{root}: {len(classes)} class sub-folder ({classes[0]}); a classifier needs at least {min_classes}")
    return ImageFolder(root, classes, files, np.asarray(labels, dtype=np.int32))


def load_images(
    folder: ImageFolder, size: tuple[int, int], pre: Preprocessing,
    progress: Callable[[Iterable, int], Iterable] | None = None, threads: int | None = None,
) -> np.ndarray:
    """Every image of `folder` decoded and resized like at run time: uint8 array (N, H, W, 3)."""
    out = np.empty((len(folder), size[0], size[1], 3), dtype=np.uint8)
    threads = threads or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        results = pool.map(lambda path: load_pixels(path, size, pre), folder.files)
        items: Iterable = progress(results, len(folder)) if progress else results
        for i, pixels in enumerate(items):
            out[i] = pixels
    return out
