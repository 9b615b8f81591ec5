"""Run exported artifacts on the device: one small interface, a backend per format.

    from vitedge.runtime import load_runtime
    rt = load_runtime("model.tflite", threads=2)
    logits = rt.run(batch)          # batch: float32 (N, H, W, 3), preprocessed

No TensorFlow here (unless LiteRT is missing and tf.lite is the only TFLite runtime installed).
"""

from .base import Runtime, load_runtime

__all__ = ["Runtime", "load_runtime"]
