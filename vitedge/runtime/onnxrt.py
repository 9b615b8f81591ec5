"""ONNX Runtime backend (CPU provider by default; others by name).

The vitedge metadata is read from the session itself (metadata_props), so the device needs
neither the `onnx` package nor a second load of the file.
"""

from __future__ import annotations

import numpy as np

from ..artifact import METADATA_KEY
from ..errors import VitedgeError
from ..limits import check_input_shape, load_metadata_json
from .base import Runtime, first_line

_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def resolve_provider(name: str | None, available: list[str]) -> str:
    """'cpu', 'cuda', 'CUDAExecutionProvider', ... -> the provider's full name, if available here."""
    if not name:
        return "CPUExecutionProvider"
    wanted = name.lower().removesuffix("executionprovider")
    for full in available:
        if full.lower().removesuffix("executionprovider") == wanted:
            return full
    raise VitedgeError(f"ONNX Runtime provider {name!r} is not available here; "
                       f"this onnxruntime has: {', '.join(available)}")


def new_session(model, threads: int | None = None, provider: str | None = None,
                profile_prefix: str | None = None):
    """An ONNX Runtime InferenceSession (every one vitedge builds comes from here).

    model: a path or the serialized model (bytes). threads: intra-op threads (None: ONNX
    Runtime's default), one inter-op thread. provider: as `resolve_provider` (CPU by default,
    which stays as the fallback). profile_prefix: turn on ONNX Runtime's profiler, its JSON file
    starting with this path (`session.end_profiling()` names it). Its warnings (about graph
    optimizations) are off; a model it refuses raises its own exception."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise VitedgeError("ONNX Runtime is not installed: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    chosen = resolve_provider(provider, ort.get_available_providers())
    providers = [chosen] + (["CPUExecutionProvider"] if chosen != "CPUExecutionProvider" else [])
    source = model if isinstance(model, (bytes, bytearray)) else str(model)
    return ort.InferenceSession(source, options, providers=providers)


def random_feeds(session, seed: int = 0) -> dict:
    """Random float32 values for every input of a session (dynamic dimensions = 1)."""
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in session.get_inputs()}


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, path, threads=None, provider=None):
        super().__init__(path, None, threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise VitedgeError("ONNX Runtime is not installed: pip install onnxruntime") from None
        self._ort = ort
        self.provider = resolve_provider(provider, ort.get_available_providers())
        try:
            self.session = new_session(self.path, threads=self.threads, provider=self.provider)
        except Exception as exc:
            raise VitedgeError(f"{self.path}: ONNX Runtime cannot load it ({first_line(exc)})") from None
        try:  # ONNX Runtime decodes names and metadata as UTF-8 only when asked
            self.metadata = self._read_metadata()
            inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
            [(i.name, i.type, i.shape) for i in (*inputs, *outputs)]
        except UnicodeDecodeError:
            raise VitedgeError(f"{self.path}: its tensor names or metadata are not valid UTF-8 "
                               "(a damaged file)") from None
        if len(inputs) != 1 or len(outputs) < 1:
            raise VitedgeError(f"{self.path}: {len(inputs)} inputs; an image classifier has one")
        self._in, self._out = inputs[0], outputs[0]
        check_input_shape([d if isinstance(d, int) else None for d in self._in.shape], str(self.path))
        if self._in.type not in _FLOAT_TYPES:
            raise VitedgeError(f"{self.path}: input {self._in.name} is {self._in.type}; "
                               "vitedge feeds float tensors (quantized ONNX models keep float I/O)")
        self._in_dtype = _FLOAT_TYPES[self._in.type]

    def _read_metadata(self) -> dict | None:
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return None if raw is None else load_metadata_json(raw, str(self.path))

    @staticmethod
    def _shape(arg) -> tuple:
        return tuple(d if isinstance(d, int) and d > 0 else None for d in (arg.shape or ()))

    @property
    def raw_input_shape(self):
        return self._shape(self._in)

    @property
    def raw_output_shape(self):
        return self._shape(self._out)

    @property
    def input_dtype(self) -> str:
        return np.dtype(self._in_dtype).name

    def describe(self):
        return {**super().describe(), "package": "onnxruntime", "version": self._ort.__version__,
                "provider": self.session.get_providers()[0], "input_dtype": self.input_dtype}

    def version(self):
        return f"onnxruntime {self._ort.__version__}"

    def _run(self, batch):
        (y,) = self.session.run([self._out.name], {self._in.name: batch.astype(self._in_dtype, copy=False)})
        return np.asarray(y, dtype=np.float32)
