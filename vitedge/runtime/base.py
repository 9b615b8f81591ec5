"""The runtime interface and the dispatch from artifact format to backend."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..artifact import artifact_format, read_metadata
from ..errors import VitedgeError


class Runtime(ABC):
    """A loaded artifact that maps a preprocessed float32 NHWC batch to float32 scores."""

    name: str = "?"  # e.g. "litert", "onnxruntime"

    def __init__(self, path: str | os.PathLike, metadata: dict | None):
        self.path = Path(path)
        self.metadata = metadata  # None when the file carries no vitedge metadata

    @property
    @abstractmethod
    def input_shape(self) -> tuple:
        """(batch or None, H, W, C) as the model declares it."""

    @property
    @abstractmethod
    def output_kind(self) -> str:
        """'logits' or 'probabilities' (a model exported with a softmax at its end)."""

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, C) -> float32 (N, classes); quantized I/O handled inside."""

    def version(self) -> str:
        return ""


def load_runtime(path: str | os.PathLike, threads: int | None = None, provider: str | None = None) -> Runtime:
    """Open `path` in the runtime its format needs; a VitedgeError with one line if it can't."""
    path = Path(path)
    metadata = read_metadata(path)  # also checks existence, emptiness and suffix
    fmt = artifact_format(path)
    if fmt == "tflite":
        from .litert import LiteRTRuntime

        return LiteRTRuntime(path, metadata, threads=threads)
    if fmt in ("onnx", "ort"):
        from .onnxrt import OnnxRuntime

        return OnnxRuntime(path, metadata, threads=threads, provider=provider)
    raise VitedgeError(f"{path}: no runtime for format {fmt}")  # pragma: no cover
