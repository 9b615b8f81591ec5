"""LiteRT (TFLite) backend: ai_edge_litert, else tflite_runtime, else tf.lite."""

from __future__ import annotations

import numpy as np

from ..errors import VitedgeError
from .base import Runtime


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"
    except ImportError:
        raise VitedgeError("no TFLite runtime installed: pip install ai-edge-litert") from None


class LiteRTRuntime(Runtime):
    name = "litert"

    def __init__(self, path, metadata, threads=None):
        super().__init__(path, metadata)
        cls, self.package = _interpreter_class()
        try:
            self.interpreter = cls(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VitedgeError(f"{self.path}: LiteRT cannot load it ({first[:200]})") from None
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self._batch = None

    @property
    def input_shape(self):
        sig = list(self._in.get("shape_signature", self._in["shape"]))
        return tuple(None if d < 0 else int(d) for d in sig)

    @property
    def output_kind(self):
        return (self.metadata or {}).get("output", {}).get("scores", "logits")

    def version(self):
        return self.package

    def _resize_for(self, n):
        if self._batch != n:
            shape = list(self._in["shape"])
            if shape[0] != n:
                if self.input_shape[0] is not None and self.input_shape[0] != n:
                    raise VitedgeError(f"{self.path}: fixed batch {self.input_shape[0]}, got {n}")
                self.interpreter.resize_tensor_input(self._in["index"], [n, *shape[1:]])
                self.interpreter.allocate_tensors()
                self._in = self.interpreter.get_input_details()[0]
                self._out = self.interpreter.get_output_details()[0]
            self._batch = n

    def run(self, batch):
        batch = np.asarray(batch, dtype=np.float32)
        if self.input_shape[0] is not None and self.input_shape[0] != batch.shape[0]:
            # Fixed-batch model (faster kernels): run the images one batch-size chunk at a time.
            step = self.input_shape[0]
            return np.concatenate([self.run(batch[i:i + step]) for i in range(0, len(batch), step)])
        self._resize_for(batch.shape[0])
        x = batch
        if self._in["dtype"] != np.float32:
            scale, zero = self._in["quantization"]
            info = np.iinfo(self._in["dtype"])
            x = np.clip(np.rint(batch / scale + zero), info.min, info.max).astype(self._in["dtype"])
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out["index"])
        if y.dtype != np.float32:
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.array(y, dtype=np.float32)
