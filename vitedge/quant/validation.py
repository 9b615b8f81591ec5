"""Hold labelled validation images out of the calibration set (accuracy control never sees the
test set, and calibration never sees the validation images).

Labels come from the calibration folder's layout: `calibration/<class>/<image>`, class folders
named like the model's labels (`T-shirt_top` matches `T-shirt/top`, as in `vitedge bench`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..calibration import CalibrationSet, fingerprint
from ..errors import VitedgeError

VALIDATION_FRACTION = 1 / 3
MIN_CALIBRATION = 20  # images left for the ranges
MIN_VALIDATION = 20  # below this one image is more than 5 points of top-1


@dataclass
class Validation:
    images: np.ndarray  # float32 (N, H, W, C), preprocessed like the calibration images
    labels: np.ndarray  # int64 index into the model's labels
    paths: list

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def point_per_image(self) -> float:
        """Top-1 percentage points one image is worth: the resolution of the bound."""
        return 100.0 / max(1, self.count)

    def to_metadata(self) -> dict:
        return {"images": self.count, "held_out_from": "calibration", "points_per_image": round(self.point_per_image, 3)}


def folder_labels(calibration: CalibrationSet, labels: list[str]) -> np.ndarray:
    """Each calibration image's label index, from its first sub-folder under the calibration folder."""
    from ..bench.runner import class_targets

    classes = []
    for path in calibration.paths:
        parts = path.relative_to(calibration.folder).parts
        if len(parts) < 2:
            raise VitedgeError(f"--max-drop needs labelled validation images: {calibration.folder} has loose images "
                               f"({parts[0]}); put them in one sub-folder per class named like the model's labels")
        classes.append(parts[0])
    names = sorted(set(classes))
    index, missing = class_targets(names, list(labels))
    if index is None:
        raise VitedgeError(f"--max-drop needs labelled validation images: the class folders of {calibration.folder} "
                           f"({', '.join(missing[:6])}) are not among the model's labels ({', '.join(labels[:6])}...)")
    lookup = dict(zip(names, index.tolist(), strict=True))
    return np.asarray([lookup[c] for c in classes], np.int64)


def hold_out(calibration: CalibrationSet, labels: list[str], image_size: tuple[int, int], preprocessing,
             fraction: float = VALIDATION_FRACTION, seed: int = 0) -> tuple[CalibrationSet, Validation]:
    """Split `calibration` per class (seeded): about `fraction` of each class for validation."""
    y = folder_labels(calibration, labels)
    n = len(y)
    want = int(round(n * fraction))
    if n - want < MIN_CALIBRATION or want < MIN_VALIDATION:
        raise VitedgeError(f"--max-drop: {n} calibration images are too few to hold out validation images "
                           f"(need at least {MIN_CALIBRATION + MIN_VALIDATION}: {MIN_VALIDATION} to validate, "
                           f"{MIN_CALIBRATION} to calibrate); add images or raise --calib-size")
    rng = np.random.default_rng(seed)
    val = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        take = int(round(len(members) * fraction))
        val.extend(rng.permutation(members)[:take].tolist())
    val_mask = np.zeros(n, bool)
    val_mask[val] = True
    keep = np.flatnonzero(~val_mask)
    paths = [calibration.paths[i] for i in keep]
    calib = replace(calibration, images=calibration.images[keep], paths=paths,
                    fingerprint=fingerprint(calibration.folder, paths, image_size, preprocessing))
    validation = Validation(images=calibration.images[val_mask], labels=y[val_mask],
                            paths=[calibration.paths[i] for i in np.flatnonzero(val_mask)])
    return calib, validation
