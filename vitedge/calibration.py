"""Calibration images: a seeded, deterministic choice of N images from a folder, preprocessed.

Images go through `preprocess.preprocess_image`, the same function prediction uses, so the
quantization ranges are measured on exactly what the model sees on the device. One pass is
shared by every precision exported in a call (and by the export-time verification).
No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import VitedgeError
from .fileio import sha256_file
from .preprocess import IMAGE_SUFFIXES, Preprocessing, list_images, preprocess_image

DEFAULT_CALIB_SIZE = 200
DEFAULT_SEED = 0
_MAX_NAMED = 10  # skipped files named one per line; beyond this, a count


@dataclass
class CalibrationSet:
    """The chosen images (sorted by relative path) and what identifies them."""

    images: np.ndarray  # float32 (N, H, W, C), preprocessed
    paths: list[Path]
    folder: Path
    seed: int
    requested: int
    fingerprint: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.paths)

    def to_metadata(self) -> dict:
        """The `calibration` block of the artifact metadata (see artifact.py)."""
        return {"fingerprint": self.fingerprint, "count": self.count, "seed": self.seed,
                "folder": self.folder.name or str(self.folder)}


def fingerprint(folder: Path, paths: list[Path], image_size: tuple[int, int], pre: Preprocessing) -> str:
    """SHA-256 over the sorted relative paths, each file's bytes and the preprocessing.

    Same images + same preprocessing -> same fingerprint, wherever the folder lives.
    """
    digest = hashlib.sha256()
    for rel, path in sorted((p.relative_to(folder).as_posix(), p) for p in paths):
        digest.update(f"{rel}\0{sha256_file(path)}\n".encode())
    policy = {"image_size": list(image_size), "preprocessing": pre.to_dict()}
    digest.update(json.dumps(policy, sort_keys=True).encode())
    return digest.hexdigest()


def _check_folder(folder: Path) -> list[Path]:
    if not folder.exists():
        raise VitedgeError(f"calibration folder {folder} does not exist; pass --calib DIR with sample images")
    if not folder.is_dir():
        raise VitedgeError(f"calibration folder {folder} is not a folder")
    candidates = list_images(folder)
    if not candidates:
        kinds = ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
        raise VitedgeError(f"calibration folder {folder} has no image files ({kinds}), searched recursively")
    return candidates


def load_calibration(
    folder: str | os.PathLike,
    size: int | None,
    image_size: tuple[int, int],
    pre: Preprocessing,
    seed: int = DEFAULT_SEED,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
) -> CalibrationSet:
    """Pick `size` usable images from `folder` (recursively), seeded, and preprocess them.

    `size=None` means "up to DEFAULT_CALIB_SIZE" and says nothing when the folder has fewer; an
    explicit size that the folder cannot fill gets a warning.

    The candidates are shuffled with `seed` and taken in that order until `size` decode; an
    unreadable file is skipped (and named through `warn`) and the next candidate takes its
    place, so the choice depends only on the folder's contents and the seed.
    """
    asked = size is not None
    size = DEFAULT_CALIB_SIZE if size is None else size
    if size < 1:
        raise VitedgeError(f"--calib-size must be at least 1, got {size}")
    folder = Path(folder)
    candidates = _check_folder(folder)
    order = np.random.default_rng(seed).permutation(len(candidates))
    target = min(size, len(candidates))
    chosen: dict[Path, np.ndarray] = {}
    skipped: list[tuple[Path, str]] = []

    bar = None
    if progress and sys.stderr.isatty():  # a bar only for people watching; logs stay clean
        import click

        bar = click.progressbar(length=target, label="calibration images", file=click.get_text_stream("stderr"))
        bar.__enter__()
    try:
        for index in order:
            if len(chosen) == target:
                break
            path = candidates[int(index)]
            try:
                chosen[path] = preprocess_image(path, image_size, pre)
            except VitedgeError as exc:
                skipped.append((path, str(exc)))
                continue
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.update(max(0, bar.length - bar.pos))  # fewer usable images than files: end at 100%
            bar.__exit__(None, None, None)

    if not chosen:
        names = ", ".join(p.relative_to(folder).as_posix() for p, _ in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        raise VitedgeError(f"calibration folder {folder}: none of its {len(skipped)} image files could be read "
                           f"({names}{more})")
    if skipped and warn is not None:
        for path, reason in skipped[:_MAX_NAMED]:
            warn(f"skipped unreadable calibration image {reason}" if str(path) in reason
                 else f"skipped unreadable calibration image {path}: {reason}")
        if len(skipped) > _MAX_NAMED:
            warn(f"skipped {len(skipped) - _MAX_NAMED} more unreadable calibration images")
    if asked and len(chosen) < size and warn is not None:
        warn(f"calibration folder {folder} has {len(chosen)} usable images; using them all ({size} asked)")

    paths = sorted(chosen, key=lambda p: p.relative_to(folder).as_posix())
    return CalibrationSet(
        images=np.stack([chosen[p] for p in paths]).astype(np.float32),
        paths=paths,
        folder=folder,
        seed=seed,
        requested=size,
        fingerprint=fingerprint(folder, paths, image_size, pre),
        skipped=skipped,
    )
