"""Run exported artifacts on the device: one small interface, a backend per format.

    from vitedge.runtime import load_runtime
    rt = load_runtime("model.tflite", threads=2)   # .tflite -> LiteRT (XNNPACK), .onnx -> ONNX Runtime
    h, w = rt.info.input_size                       # also rt.info.labels, rt.info.preprocessing
    scores = rt.run(batch)                          # float32 (N, H, W, 3), preprocessed -> (N, classes)

Quantized (int8/uint8) model inputs and outputs are converted inside `run` with the tensors'
own scale and zero point. Backends are imported only when a file of their format is opened.
No TensorFlow here (unless LiteRT is missing and tf.lite is the only TFLite runtime installed).
"""

from .base import ModelInfo, Runtime, default_threads, load_runtime

__all__ = ["ModelInfo", "Runtime", "default_threads", "load_runtime"]
