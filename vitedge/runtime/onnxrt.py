"""ONNX Runtime backend (CPU provider by default; others by name)."""

from __future__ import annotations

import numpy as np

from ..errors import VitedgeError
from .base import Runtime


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, path, metadata, threads=None, provider=None):
        super().__init__(path, metadata)
        import onnxruntime as ort

        self._ort = ort
        available = ort.get_available_providers()
        provider = provider or "CPUExecutionProvider"
        if provider not in available:
            raise VitedgeError(f"provider {provider} is not available; this onnxruntime has: {', '.join(available)}")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=[provider])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VitedgeError(f"{self.path}: ONNX Runtime cannot load it ({first[:200]})") from None
        self._in = self.session.get_inputs()[0]
        self._out = self.session.get_outputs()[0]

    @property
    def input_shape(self):
        return tuple(d if isinstance(d, int) else None for d in self._in.shape)

    @property
    def output_kind(self):
        return (self.metadata or {}).get("output", {}).get("scores", "logits")

    def version(self):
        return f"onnxruntime {self._ort.__version__}"

    def run(self, batch):
        x = np.asarray(batch, dtype=np.float32)
        if self._in.type == "tensor(uint8)" or self._in.type == "tensor(int8)":
            raise VitedgeError(f"{self.path}: integer inputs are not supported for ONNX artifacts")
        (y,) = self.session.run([self._out.name], {self._in.name: x})
        return np.asarray(y, dtype=np.float32)
