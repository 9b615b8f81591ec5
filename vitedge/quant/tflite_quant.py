"""TFLite int8 recipes with TensorFlow's converter, from the SavedModel export already made.

  * "dynamic": dynamic-range int8 (int8 weights; XNNPACK quantizes activations per call,
    its QD8 kernels); no calibration.
  * "fc":      selective full int8: FULLY_CONNECTED runs int8 (calibrated activation ranges,
    per-tensor weights), and CONV_2D too on arm64; LayerNorm, GELU, Softmax, attention's
    BATCH_MATMULs, residual ADDs and reshapes stay float, with QUANTIZE/DEQUANTIZE at the
    borders. Built with the MLIR quantizer's denylist, the API behind
    tf.lite.experimental.QuantizationDebugger.
  * "full":    every op int8 (TFLITE_BUILTINS_INT8), the textbook recipe; needed for --int8-io.

Static recipes calibrate once (`calibrate`) and quantize from the calibrated model as often as
accuracy control needs (`quantize_calibrated`, with layers named in `exclude` kept float).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VitedgeError

INT8_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")  # the weight-bearing ops
# Which of them "fc" makes int8, per target. x86 (AVX2, no VNNI): XNNPACK's int8 CONV_2D with
# the patch embedding's PxP stride-P kernel was 1.5x (28x28) to 2.7x (ViT-Ti) slower than its
# float one (`vitedge profile`), so the patch embedding stays float there. arm64 keeps it int8:
# not measured on a device; its dot-product int8 kernels are the reason to quantize at all.
FC_INT8_OPS = {"x86": ("FULLY_CONNECTED",), "arm64": INT8_OPS}
BORDER_OPS = ("QUANTIZE", "DEQUANTIZE")


def _converter(saved_model: Path):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model))


def _convert(converter, what: str) -> bytes:
    from ..export.quiet import captured_stderr, last_error_line

    with captured_stderr() as log:
        try:
            return bytes(converter.convert())
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(log[0] if log else "")
            raise VitedgeError(f"TFLite {what} conversion failed: {detail}") from None


def dynamic(saved_model: Path) -> tuple[bytes, dict]:
    import tensorflow as tf

    converter = _converter(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return _convert(converter, "dynamic-range int8"), {
        "recipe": "dynamic", "optimizations": ["DEFAULT"], "weights": "int8 per channel",
        "activations": "float32 (int8 per call in XNNPACK's QD8 kernels)"}


def calibrate(saved_model: Path, images: np.ndarray, batch: int | None = 1) -> bytes:
    """The float model with calibrated ranges recorded (not yet quantized)."""
    import tensorflow as tf

    if images is None or not len(images):
        raise VitedgeError("static int8 needs calibration images")
    step = batch or 1
    converter = _converter(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([images[i:i + step].astype(np.float32)]
                                                 for i in range(0, len(images) - step + 1, step))
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001 - the QuantizationDebugger's route
    return _convert(converter, "calibration")


def op_types(flatbuffer: bytes) -> list[str]:
    from ..runtime.litert import op_types as litert_op_types

    return litert_op_types(flatbuffer)


def quantize_calibrated(calibrated: bytes, recipe: str, exclude: list[str] | tuple = (),
                        per_channel: bool | None = None, target: str = "x86") -> tuple[bytes, dict]:
    """"fc" or "full" from a calibrated model; float I/O; layers in `exclude` stay float.

    "fc" uses per-tensor weight scales by default: as fast and as accurate as per-channel on
    the default model (test top-1 89.13 vs 89.06, fp32 89.18), and per-channel's scale and
    int64 zero-point arrays (for weights and biases) made the small default model's file 31%
    of fp32 instead of 27%. "full" keeps per-channel (the textbook recipe)."""
    from tensorflow.lite.python import convert

    from ..export.quiet import captured_stderr, last_error_line

    if per_channel is None:
        per_channel = recipe != "fc"

    if recipe == "fc":
        int8_ops = list(FC_INT8_OPS[target])
        denied = [t for t in op_types(calibrated) if t not in int8_ops + list(BORDER_OPS)]
    elif recipe == "full":
        int8_ops, denied = "all", []
    else:
        raise VitedgeError(f"unknown TFLite static int8 recipe {recipe!r}")
    with captured_stderr() as log:
        try:
            flatbuffer = convert.mlir_quantize(calibrated, disable_per_channel=not per_channel,
                                               denylisted_ops=denied or None,
                                               denylisted_nodes=list(exclude) or None)
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(log[0] if log else "")
            raise VitedgeError(f"TFLite int8 ({recipe}) quantization failed: {detail}") from None
    record = {"recipe": recipe, "quantizer": "tf.lite mlir_quantize (QuantizationDebugger route)",
              "weights": "int8 per channel" if per_channel else "int8 per tensor",
              "activations": "int8 (calibrated)", "int8_ops": int8_ops,
              "float_ops": denied, "float_layers": list(exclude)}
    return bytes(flatbuffer), record
