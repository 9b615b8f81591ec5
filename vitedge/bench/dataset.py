"""The images every benchmark row sees: found once, preprocessed once per input policy.

A labelled set is an ImageFolder tree (DIR/<class>/<images>); a folder of loose images is
an unlabelled set (agreement only); no folder at all gives seeded random images (agreement
only, a weak check). Preprocessed inputs go to a raw float32 file in a temporary folder that
the worker processes read chunk by chunk (no memory map, so a worker's resident memory is the
model's, not the data set's).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.imagefolder import scan_image_folder
from ..errors import VitedgeError
from ..preprocess import Preprocessing, list_images, preprocess_image

SEED = 0  # --limit subsets and random images are reproducible run to run
RANDOM_IMAGES = 100  # how many random images without --data (and without --limit)


@dataclass
class BenchData:
    """Which images, and their classes when the set is labelled."""

    source: str  # the folder, or "random"
    files: list[Path | None]  # None for generated images
    classes: list[str] | None  # class names (sorted folder names), None if unlabelled
    targets: np.ndarray | None  # index into `classes`, one per image
    found: int = 0  # images in the folder before --limit
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, why), filled by prepare_inputs

    @property
    def labelled(self) -> bool:
        return self.classes is not None

    def __len__(self) -> int:
        return len(self.files)

    def keep(self, mask: np.ndarray) -> None:
        """Drop the images where mask is False (unreadable ones)."""
        self.files = [f for f, k in zip(self.files, mask, strict=True) if k]
        if self.targets is not None:
            self.targets = self.targets[mask]


def scan_data(folder: str | os.PathLike) -> BenchData:
    """An ImageFolder tree (labelled) or a folder of loose images (unlabelled); clear errors otherwise."""
    root = Path(folder)
    if not root.exists():
        raise VitedgeError(f"{root}: no such folder")
    if not root.is_dir():
        raise VitedgeError(f"{root}: not a folder (expected {root}/<class>/<images>)")
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        tree = scan_image_folder(root, min_classes=1)
        return BenchData(str(root), list(tree.files), list(tree.classes), tree.labels.astype(np.int64), len(tree))
    loose = list_images(root)
    if not loose:
        raise VitedgeError(f"{root}: no images (expected one sub-folder of images per class, {root}/<class>/*.png)")
    return BenchData(str(root), list(loose), None, None, len(loose))


def random_data(count: int) -> BenchData:
    return BenchData("random", [None] * count, None, None, count)


def limit_data(data: BenchData, limit: int | None) -> BenchData:
    """A deterministic subset of `limit` images: seeded shuffle within each class, then classes in turn.

    Class-balanced, so `--limit 1000` on a sorted test folder is not just its first classes.
    """
    if limit is None or limit >= len(data):
        return data
    rng = np.random.default_rng(SEED)
    if not data.labelled:
        chosen = np.sort(rng.permutation(len(data))[:limit])
    else:
        pools = [list(rng.permutation(np.flatnonzero(data.targets == c))) for c in range(len(data.classes))]
        chosen, turn = [], 0
        while len(chosen) < limit:
            pool = pools[turn % len(pools)]
            if pool:
                chosen.append(pool.pop(0))
            turn += 1
        chosen = np.sort(np.asarray(chosen))
    return BenchData(
        data.source, [data.files[i] for i in chosen], data.classes,
        None if data.targets is None else data.targets[chosen], data.found,
    )


def _random_image(index: int) -> Image.Image:
    """Smooth random colour blobs (16x16 noise, upsampled by the preprocessing's own resize)."""
    rng = np.random.default_rng([SEED, index])
    return Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), mode="RGB")


@dataclass
class InputFile:
    """Preprocessed images for one (input size, preprocessing): raw float32 rows on disk."""

    path: Path
    shape: tuple[int, int, int]  # (H, W, 3) of one row
    rows: dict[int, int]  # image index in BenchData -> row in the file

    def job(self, images: Iterable[int]) -> dict:
        """The part of a worker job that says where its inputs are."""
        return {"file": str(self.path), "shape": list(self.shape), "rows": [self.rows[i] for i in images]}


def prepare_inputs(
    data: BenchData, size: tuple[int, int], pre: Preprocessing, path: Path,
    progress: Callable[[Iterable, int], Iterable] | None = None, threads: int = 2,
) -> tuple[InputFile, list[tuple[int, str]]]:
    """Preprocess every image of `data` into `path`; returns the file and the (index, why) of failures."""
    def one(i):
        source = data.files[i] if data.files[i] is not None else _random_image(i)
        try:
            return i, preprocess_image(source, size, pre), None
        except VitedgeError as exc:
            return i, None, str(exc)

    rows, failed = {}, []
    with open(path, "wb") as fh, ThreadPoolExecutor(max(1, threads)) as pool:
        results = pool.map(one, range(len(data)))
        for i, x, why in progress(results, len(data)) if progress else results:
            if x is None:
                failed.append((i, why))
                continue
            rows[i] = len(rows)
            fh.write(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    return InputFile(path, (size[0], size[1], 3), rows), failed


class InputReader:
    """Reads rows of an input file (runs of consecutive rows at once) through one open handle."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.shape = tuple(spec["shape"])
        self.row_floats = int(np.prod(self.shape))
        self.fh = open(spec["file"], "rb")  # noqa: SIM115  (closed by close())

    def read(self, rows: list[int]) -> np.ndarray:
        """float32 (len(rows), H, W, 3)."""
        out = np.empty((len(rows), *self.shape), np.float32)
        start = 0
        while start < len(rows):
            end = start + 1
            while end < len(rows) and rows[end] == rows[end - 1] + 1:
                end += 1
            self.fh.seek(rows[start] * self.row_floats * 4)
            block = np.fromfile(self.fh, dtype=np.float32, count=(end - start) * self.row_floats)
            if block.size != (end - start) * self.row_floats:
                raise VitedgeError(f"{self.spec['file']}: input file shorter than expected")
            out[start:end] = block.reshape(end - start, *self.shape)
            start = end
        return out

    def close(self) -> None:
        self.fh.close()
