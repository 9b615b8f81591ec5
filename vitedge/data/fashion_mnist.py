"""Fashion-MNIST (Zalando Research, MIT licence) as an ImageFolder tree.

The four IDX files come from Debian's `dataset-fashion-mnist` or a verified download
(fmnist_files.py); `write_image_folder`
turns them into DIR/train/<class>/train-00000.png ... and DIR/test/<class>/test-00000.png,
the number being the image's index in its IDX file (names are deterministic and traceable).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import VitedgeError
from ..fileio import atomic_directory
from .fmnist_files import DEBIAN_DIR, find_local
from .idx import read_images_and_labels

DEBIAN_PACKAGE = "dataset-fashion-mnist"
INSTALL_HINT = f"vitedge data fashion-mnist --download-only, or on Debian: sudo apt-get install {DEBIAN_PACKAGE}"

# Label index -> class name, in the data set's own order (its README's table).
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SPLITS = {"train": ("train", 60_000), "test": ("t10k", 10_000)}  # split -> (file prefix, size)
IMAGE_SHAPE = (28, 28)


def folder_name(class_name: str) -> str:
    """A class name usable as a folder name: "T-shirt/top" -> "T-shirt_top", "Ankle boot" -> "Ankle_boot"."""
    return class_name.replace("/", "_").replace(" ", "_")


FOLDER_NAMES = tuple(folder_name(c) for c in CLASS_NAMES)


def split_files(split: str, source: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The (images, labels) IDX files of a split; gzip or raw, whichever is there.

    No `source`: Debian's folder or the user cache, whichever has the files.
    """
    prefix, _ = SPLITS[split]
    source = Path(source) if source is not None else (find_local((split,)) or DEBIAN_DIR)
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        candidates = [source / f"{prefix}-{kind}-ubyte{ext}" for ext in (".gz", "")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise VitedgeError(f"Fashion-MNIST file {candidates[0]} not found ({INSTALL_HINT})")
        found.append(path)
    return found[0], found[1]


def load_split(split: str, source: str | os.PathLike | None = None, check_size: bool = True):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of "train" or "test"."""
    images_path, labels_path = split_files(split, source)
    images, labels = read_images_and_labels(images_path, labels_path, num_classes=len(CLASS_NAMES))
    if images.shape[1:] != IMAGE_SHAPE:
        raise VitedgeError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, Fashion-MNIST's are 28x28")
    expected = SPLITS[split][1]
    if check_size and len(images) != expected:
        raise VitedgeError(f"{images_path}: {len(images)} images, the {split} split has {expected}")
    return images, labels


def image_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.png"


def select(labels: np.ndarray, limit: int | None = None, per_class: int | None = None) -> np.ndarray:
    """Indices kept: the first `limit` images, or the first `per_class` images of each class (IDX order)."""
    index = np.arange(len(labels) if limit is None else min(limit, len(labels)))
    if per_class is not None:
        index = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(len(CLASS_NAMES))]))
    return index


def write_image_folder(
    out: str | os.PathLike,
    source: str | os.PathLike | None = None,
    force: bool = False,
    limit: int | None = None,
    per_class: int | None = None,
    splits: tuple[str, ...] = ("train", "test"),
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> dict:
    """Write OUT/train and OUT/test (one folder per class, PNG files) atomically.

    With a single split the class folders go straight into OUT. `limit` keeps the first N
    images of each split, `per_class` the first N of each class (quick trials, calibration
    sets); `progress(iterable, length)` may wrap the per-image loop. Returns counts per split
    and class.
    """
    if limit is not None and per_class is not None:
        raise VitedgeError("give either a limit or a per-class count, not both")
    data = {split: load_split(split, source) for split in splits}  # read and check everything first
    counts: dict = {}
    jobs = []
    with atomic_directory(out, force=force) as tmp:
        for split, (images, labels) in data.items():
            base = tmp / split if len(splits) > 1 else tmp
            counts[split] = dict.fromkeys(FOLDER_NAMES, 0)
            for name in FOLDER_NAMES:
                (base / name).mkdir(parents=True)
            jobs.extend((base, split, int(i), images[i], int(labels[i])) for i in select(labels, limit, per_class))
        items: Iterable = progress(jobs, len(jobs)) if progress else jobs
        for base, split, i, pixels, label in items:
            name = FOLDER_NAMES[label]
            Image.fromarray(np.ascontiguousarray(pixels), mode="L").save(base / name / image_name(split, i))
            counts[split][name] += 1
    return counts
