"""ONNX Runtime backend (CPU provider by default; others by name).

The vitedge metadata is read from the session itself (metadata_props), so the device needs
neither the `onnx` package nor a second load of the file.
"""

from __future__ import annotations

import json

import numpy as np

from ..artifact import METADATA_KEY
from ..errors import VitedgeError
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
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only; its warnings are about graph optimizations
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        providers = [self.provider] + (["CPUExecutionProvider"] if self.provider != "CPUExecutionProvider" else [])
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as exc:
            raise VitedgeError(f"{self.path}: ONNX Runtime cannot load it ({first_line(exc)})") from None
        self.metadata = self._read_metadata()
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise VitedgeError(f"{self.path}: {len(inputs)} inputs; an image classifier has one")
        self._in, self._out = inputs[0], outputs[0]
        if self._in.type not in _FLOAT_TYPES:
            raise VitedgeError(f"{self.path}: input {self._in.name} is {self._in.type}; "
                               "vitedge feeds float tensors (quantized ONNX models keep float I/O)")
        self._in_dtype = _FLOAT_TYPES[self._in.type]

    def _read_metadata(self) -> dict | None:
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            return None
        try:
            meta = json.loads(raw)
        except ValueError:
            raise VitedgeError(f"{self.path}: its vitedge metadata is not valid JSON") from None
        if not isinstance(meta, dict):
            raise VitedgeError(f"{self.path}: its vitedge metadata is not a JSON object")
        return meta

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
