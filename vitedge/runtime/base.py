"""The runtime interface; `load_runtime` opens a file in the backend its format plug-in names.

A backend only has to say what its input/output tensors look like and run one batch of the
model's own size; this class does the rest the same way for every backend: NHWC/NCHW, fixed
batch sizes (run in chunks), and what to do when the file carries no vitedge metadata.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError, VitedgeError
from ..limits import MAX_THREADS, check_batch_dim, check_classes, check_input_size, check_labels
from ..preprocess import Preprocessing

DEFAULT_PREPROCESSING = Preprocessing()


@dataclass(frozen=True)
class ModelInfo:
    """What prediction needs to know about a model, from its metadata or, failing that, its tensors."""

    input_size: tuple[int, int]  # (H, W)
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    scores: str  # "logits" | "probabilities" | "auto" (no metadata: decided from the values)
    from_metadata: bool
    warning: str | None = None  # one line for the user when something was guessed

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class_{index}"


def default_threads() -> int:
    """Every core this process may use (a Pi has 4); LiteRT's own default is 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_model_path(path: str | os.PathLike) -> Path:
    """Existence, type and suffix checks shared by all backends (one clear line each)."""
    path = Path(path)
    if not path.exists():
        raise VitedgeError(f"{path}: no such file")
    if path.is_dir():
        raise VitedgeError(f"{path}: is a directory, not a model file")
    if path.stat().st_size == 0:
        raise VitedgeError(f"{path}: empty file (0 bytes)")
    from ..formats import for_path

    for_path(path)  # unknown suffix -> clear error
    return path


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class Runtime(ABC):
    """A loaded artifact that maps a preprocessed float32 NHWC batch to float32 scores."""

    name: str = "?"  # e.g. "litert", "onnxruntime"

    def __init__(self, path: str | os.PathLike, metadata: dict | None, threads: int | None = None):
        self.path = Path(path)
        self.metadata = metadata  # None when the file carries no vitedge metadata
        if threads is not None and (not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS):
            raise UsageError(f"threads must be a whole number in 1..{MAX_THREADS}, got {threads!r}")
        self.threads = threads or default_threads()
        self._info: ModelInfo | None = None

    # -- what a backend provides -----------------------------------------------------------
    @property
    @abstractmethod
    def raw_input_shape(self) -> tuple:
        """The input tensor's shape as the model declares it (None for a dynamic dimension)."""

    @property
    @abstractmethod
    def raw_output_shape(self) -> tuple:
        """The output tensor's shape (None for a dynamic dimension)."""

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """One batch in the model's own layout, float32 -> float32 (N, classes)."""

    def describe(self) -> dict:
        """Backend, package and settings, for reports (`bench`, `predict --json`)."""
        return {"backend": self.name, "threads": self.threads}

    def version(self) -> str:
        """The runtime package and its version, e.g. 'ai-edge-litert 2.3.0'."""
        return ""

    # -- common behaviour ------------------------------------------------------------------
    @property
    def layout(self) -> str:
        """'NHWC' (vitedge exports) or 'NCHW' (foreign ONNX files), from metadata or the shape."""
        declared = ((self.metadata or {}).get("input") or {})
        declared = declared.get("layout") if isinstance(declared, dict) else None
        if declared in ("NHWC", "NCHW"):
            return declared
        shape = self.raw_input_shape
        if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
            return "NCHW"
        return "NHWC"

    @property
    def input_shape(self) -> tuple:
        """(batch or None, H, W, C) whatever the model's own layout."""
        shape = tuple(self.raw_input_shape)
        if len(shape) != 4:
            raise VitedgeError(f"{self.path}: input has shape {list(shape)}; an image model needs 4 dimensions")
        if self.layout == "NCHW":
            return shape[0], shape[2], shape[3], shape[1]
        return shape

    @property
    def batch_size(self) -> int | None:
        """The model's fixed batch size, or None if it accepts any."""
        return self.input_shape[0]

    @property
    def num_classes(self) -> int | None:
        shape = self.raw_output_shape
        return shape[-1] if shape else None

    @property
    def output_kind(self) -> str:
        """'logits' or 'probabilities' as the metadata says ('logits' when it does not;
        `info.scores` is then 'auto' and predict decides from the values)."""
        return "probabilities" if self.info.scores == "probabilities" else "logits"

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            self._info = resolve_model_info(self)
        return self._info

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, C), preprocessed -> float32 (N, classes); any N."""
        batch = np.asarray(batch, dtype=np.float32)
        _, h, w, c = self.input_shape
        if batch.ndim != 4 or batch.shape[3] != 3:
            raise VitedgeError(f"expected a batch of RGB images (N, H, W, 3), got shape {list(batch.shape)}")
        if c not in (None, 3):
            raise VitedgeError(f"{self.path}: the model takes {c} channels; vitedge feeds RGB (3)")
        if (h is not None and batch.shape[1] != h) or (w is not None and batch.shape[2] != w):
            raise VitedgeError(f"{self.path}: the model takes {h}x{w} images, got {batch.shape[1]}x{batch.shape[2]}")
        if len(batch) == 0:
            return np.zeros((0, self.num_classes or 0), np.float32)
        if self.layout == "NCHW":
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        step = self.batch_size
        if step is None or step == len(batch):
            return np.asarray(self._run(batch), dtype=np.float32)
        # A fixed-batch model (faster kernels, see the measurement notes): run it chunk by chunk,
        # padding the last chunk with copies of its last image.
        outputs = []
        for start in range(0, len(batch), step):
            chunk = batch[start:start + step]
            n = len(chunk)
            if n < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            outputs.append(np.asarray(self._run(chunk), dtype=np.float32)[:n])
        return np.concatenate(outputs)


def resolve_model_info(rt: Runtime) -> ModelInfo:
    """Labels, input size and preprocessing: the metadata when present, else the tensors."""
    n, h, w, _ = rt.input_shape
    classes = rt.num_classes
    meta = rt.metadata
    where = str(rt.path)
    # Declared sizes are bounded before anything of that size exists (vitedge.limits).
    check_input_size(h, w, where)
    check_batch_dim(n, where)
    check_classes(classes, where)
    if meta is None:
        if h is None or w is None:
            raise VitedgeError(f"{rt.path}: no vitedge metadata and a dynamic input size; cannot tell what size to feed")
        n = classes if classes is not None else 0
        labels = tuple(f"class_{i}" for i in range(n))
        pre = DEFAULT_PREPROCESSING
        warning = (f"{rt.path.name} has no vitedge metadata; using its input size {h}x{w}, labels class_0.., "
                   f"and default preprocessing (mean {pre.mean[0]}, std {pre.std[0]}, {pre.resize})")
        return ModelInfo((h, w), labels, pre, "auto", from_metadata=False, warning=warning)

    problems = []
    try:
        pre = Preprocessing.from_dict(meta.get("preprocessing"))
    except (VitedgeError, TypeError) as exc:
        raise VitedgeError(f"{rt.path}: bad preprocessing in its metadata ({exc})") from None
    declared = _field(meta, "input", dict, where).get("shape") or []
    if not isinstance(declared, list):
        raise VitedgeError(f"{where}: its metadata's input shape is not a list")
    if len(declared) == 4 and all(type(d) is int for d in declared[1:3]):
        mh, mw = declared[1], declared[2]
        check_input_size(mh, mw, where)
        if (h is not None and mh != h) or (w is not None and mw != w):
            problems.append(f"metadata says {mh}x{mw} input but the model takes {h}x{w}")
        h, w = h or mh, w or mw
    if h is None or w is None:
        raise VitedgeError(f"{rt.path}: the input size is neither fixed in the model nor in its metadata")
    labels = check_labels(meta.get("labels"), where)
    if classes is not None and len(labels) != classes:
        if labels:
            problems.append(f"metadata has {len(labels)} labels for {classes} outputs")
        labels = [f"class_{i}" for i in range(classes)]
    scores = _field(meta, "output", dict, where).get("scores", "logits")
    if not isinstance(scores, str) or scores not in ("logits", "probabilities"):
        problems.append(f"unknown output.scores {scores!r}")
        scores = "auto"
    warning = f"{rt.path.name}: " + "; ".join(problems) + "; using what the model says" if problems else None
    return ModelInfo((h, w), tuple(labels), pre, scores, from_metadata=True, warning=warning)


def _field(meta: dict, key: str, kind: type, where: str):
    """meta[key] when it has the type vitedge writes there; an empty one when absent."""
    value = meta.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise VitedgeError(f"{where}: its metadata's {key!r} is a {type(value).__name__}, not a {kind.__name__}")
    return value


def load_runtime(path: str | os.PathLike, threads: int | None = None, provider: str | None = None) -> Runtime:
    """Open `path` in the runtime its format needs; a VitedgeError with one line if it can't.

    The format's plug-in (`vitedge.formats`) names the backend. provider: for .onnx/.ort an
    ONNX Runtime execution provider ("cpu", "CUDAExecutionProvider",
    ...); for .tflite "xnnpack" (default), "builtin" (LiteRT's own kernels) or "reference".
    """
    path = check_model_path(path)
    from ..formats import for_path

    return for_path(path).open_runtime(path, threads=threads, provider=provider)
