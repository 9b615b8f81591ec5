"""A `.keras` model behind the runtime interface, as the float reference of a benchmark.

Only a benchmark worker given a .keras file imports this (and with it TensorFlow); the rest of
`bench` runs on the core install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from ..modelfile import read_spec

NEEDS_TF = "a .keras model needs TensorFlow: pip install 'vitedge[export]' (or bench its exported .tflite/.onnx)"


def tensorflow_available() -> bool:
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as none
        return False


def keras_metadata(path: str | Path) -> dict:
    """What the artifacts' metadata would say, read from the model's vitedge.json (no TensorFlow)."""
    spec = read_spec(path)
    h, w = spec.config.image_size
    return {
        "model_format": "keras", "precision": "fp32", "labels": list(spec.labels),
        "input": {"shape": [None, h, w, spec.config.channels], "layout": "NHWC", "dtype": "float32"},
        "output": {"scores": "logits"}, "preprocessing": spec.preprocessing.to_dict(),
    }


class KerasModel:
    """load_model + a traced call; float32 NHWC in, logits out (the vitedge ViT has no softmax)."""

    name = "keras"

    def __init__(self, path: str | Path, threads: int | None = None):
        if not tensorflow_available():
            raise VitedgeError(NEEDS_TF)
        import tensorflow as tf

        if threads:  # must happen before TensorFlow runs its first op
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        from ..modelfile import load_model

        self.path = Path(path)
        self.model, _ = load_model(path)
        self.metadata = keras_metadata(path)
        self._tf = tf
        self._call = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    @property
    def input_shape(self) -> tuple:
        return tuple(None if d is None else int(d) for d in self.model.input_shape)

    @property
    def output_kind(self) -> str:
        return "logits"

    def version(self) -> str:
        import keras

        return f"tensorflow {self._tf.__version__}, keras {keras.__version__}"

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._call(np.asarray(batch, np.float32)), dtype=np.float32)
