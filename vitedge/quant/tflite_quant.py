"""TFLite int8 recipes with TensorFlow's converter, from the SavedModel export already made.

A `Recipe` (vitedge/quant/recipes.py) says which ops run int8 (`int8_ops`) and whether weight
scales are per channel; the ops it leaves out are denylisted in the MLIR quantizer (the API
behind tf.lite.experimental.QuantizationDebugger), so they stay float with QUANTIZE/DEQUANTIZE
at the borders. "dynamic" recipes convert with dynamic-range int8 (no calibration).

Static recipes calibrate once (`calibrate`) and quantize from the calibrated model as often as
accuracy control needs (`quantize_calibrated`, with layers named in `exclude` kept float).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from .recipes import RECIPES, WEIGHT_OPS, Recipe

INT8_OPS = WEIGHT_OPS  # the weight-bearing ops
FC_INT8_OPS = RECIPES[("tflite", "fc")].int8_ops  # per target (recipes.py says why)
BORDER_OPS = ("QUANTIZE", "DEQUANTIZE")


def _converter(saved_model: Path):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model))


def _convert(converter, what: str) -> bytes:
    from ..quiet import captured_stderr, last_error_line

    with captured_stderr() as log:
        try:
            return bytes(converter.convert())
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(log[0] if log else "")
            raise VitedgeError(f"TFLite {what} conversion failed: {detail}") from None


def dynamic_converter(saved_model: Path):
    """TF's converter set for dynamic-range int8 (int8 weights; XNNPACK quantizes activations
    per call): the "dynamic" recipe and `--precision dynamic` both start here."""
    import tensorflow as tf

    converter = _converter(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter


def dynamic(saved_model: Path) -> tuple[bytes, dict]:
    return _convert(dynamic_converter(saved_model), "dynamic-range int8"), {
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


def quantize_calibrated(calibrated: bytes, recipe: str | Recipe, exclude: list[str] | tuple = (),
                        per_channel: bool | None = None, target: str = "x86") -> tuple[bytes, dict]:
    """A static recipe (a Recipe or a TFLite recipe's name) from a calibrated model; float I/O;
    ops outside the recipe's `int8_ops` and layers in `exclude` stay float.

    "fc" uses per-tensor weight scales: as fast and as accurate as per-channel on the default
    model (test top-1 89.13 vs 89.06, fp32 89.18), and per-channel's scale and int64 zero-point
    arrays (for weights and biases) made the small default model's file 31% of fp32 instead of
    27%. "full" keeps per-channel (the textbook recipe). `per_channel` overrides the recipe."""
    from tensorflow.lite.python import convert

    from ..quiet import captured_stderr, last_error_line

    if isinstance(recipe, str):
        found = RECIPES.get(("tflite", recipe))
        if found is None or found.mode != "static":
            raise VitedgeError(f"unknown TFLite static int8 recipe {recipe!r}")
        recipe = found
    if per_channel is None:
        per_channel = bool(recipe.setting("per_channel", target))
    wanted = recipe.setting("int8_ops", target)
    if wanted == "all":
        int8_ops, denied = "all", []
    else:
        int8_ops = list(wanted)
        denied = [t for t in op_types(calibrated) if t not in int8_ops + list(BORDER_OPS)]
    with captured_stderr() as log:
        try:
            flatbuffer = convert.mlir_quantize(calibrated, disable_per_channel=not per_channel,
                                               denylisted_ops=denied or None,
                                               denylisted_nodes=list(exclude) or None)
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(log[0] if log else "")
            raise VitedgeError(f"TFLite int8 ({recipe.name}) quantization failed: {detail}") from None
    record = {"recipe": recipe.name, "quantizer": "tf.lite mlir_quantize (QuantizationDebugger route)",
              "weights": "int8 per channel" if per_channel else "int8 per tensor",
              "activations": "int8 (calibrated)", "int8_ops": int8_ops,
              "float_ops": denied, "float_layers": list(exclude)}
    return bytes(flatbuffer), record
