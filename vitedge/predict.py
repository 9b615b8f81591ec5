"""Classify image files with an exported artifact: preprocess, run in batches, top-k.

No Click and no printing here (commands/predict.py does that); no TensorFlow anywhere.
One bad image never stops the others: it comes back as a Prediction with `error` set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import VitedgeError
from .preprocess import list_images, preprocess_image
from .scores import looks_like_probabilities, softmax

# What `vitedge export` writes for the shipped model (out/<model stem>_<precision>.<ext>).
DEFAULT_MODEL = Path("out/fmnist-vit_int8.tflite")
DEFAULT_SOURCE_MODEL = Path("models/fmnist-vit.keras")


@dataclass
class Prediction:
    """One image's result: top-k (index, label, probability), or the one-line reason it failed."""

    image: str
    top: list[tuple[int, str, float]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        if not self.ok:
            return {"image": self.image, "error": self.error}
        index, label, prob = self.top[0]
        return {
            "image": self.image,
            "label": label,
            "index": index,
            "probability": prob,
            "top_k": [{"rank": r, "index": i, "label": lab, "probability": p}
                      for r, (i, lab, p) in enumerate(self.top, 1)],
        }


def default_model_path() -> Path:
    """The default artifact, or a clear error saying how to make it."""
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    raise VitedgeError(
        f"the default model {DEFAULT_MODEL} does not exist here ({Path.cwd()}); make it with "
        f"'vitedge export --format tflite --int8' (from {DEFAULT_SOURCE_MODEL}) or pass --model FILE"
    )


def expand_inputs(items: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given (bad ones fail later, one by one); folders replaced by the images inside."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = list_images(path)
            paths.extend(found if found else [path])  # an empty folder becomes one failure
        else:
            paths.append(path)
    return paths


def to_probabilities(scores: np.ndarray, kind: str) -> np.ndarray:
    """Softmax of logits; probabilities pass through; 'auto' decides from the values."""
    if kind == "probabilities" or (kind == "auto" and looks_like_probabilities(scores)):
        return np.asarray(scores, dtype=np.float64)
    return softmax(scores)


def top_k(probs: np.ndarray, k: int, label) -> list[tuple[int, str, float]]:
    """The k best classes of one row, best first (ties: lower index first)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), label(int(i)), float(probs[i])) for i in order]


def predict_images(runtime, images: list[Path], k: int = 5, batch: int = 1) -> Iterator[Prediction]:
    """Predictions in input order; a batch's images go through the model in one call."""
    info = runtime.info
    if batch < 1:
        raise VitedgeError("batch size must be >= 1")
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        tensors, results = [], []
        for path in chunk:
            if path.is_dir():  # what expand_inputs left of a folder without images
                results.append(Prediction(str(path), error=f"{path}: no image files in this folder"))
                continue
            try:
                tensors.append(preprocess_image(path, info.input_size, info.preprocessing))
                results.append(Prediction(str(path)))
            except VitedgeError as exc:
                results.append(Prediction(str(path), error=str(exc)))
        if tensors:
            probs = to_probabilities(runtime.run(np.stack(tensors)), info.scores)
            good = iter(probs)
            for result in results:
                if result.ok:
                    result.top = top_k(next(good), k, info.label)
        yield from results
