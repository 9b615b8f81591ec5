"""Keras ViT -> TFLite flatbuffer with TensorFlow's converter, at every precision.

Route: `model.export(dir, format="tf_saved_model")` then `TFLiteConverter.from_saved_model`
(Keras 3 + `from_concrete_functions` failed at calibration with READ_VARIABLE, see the notes).
The batch dimension is fixed (1 by default): a `None` batch puts SHAPE/GATHER/PACK/RESHAPE
around every FULLY_CONNECTED, a fixed one lets XNNPACK use its plain FC kernels; the LiteRT
backend runs bigger batches one chunk at a time.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from ..formats.base import Converted, Converter, ExportContext
from ..formats.tflite import PRECISIONS
from ..quiet import captured_stderr, last_error_line
from . import isolate
from .metadata import STATIC_PRECISIONS

DEFAULT_BATCH = 1
LAYERNORM_FORM = "mean-sub-mul"  # recorded in the recipe; see export_friendly_layernorm


def _layernorm_call(self, inputs):
    # Same math as keras.ops.layer_normalization, written with MEAN/SUB/MUL/RSQRT only.
    from keras import ops

    mean = ops.mean(inputs, axis=-1, keepdims=True)
    centred = inputs - mean
    variance = ops.mean(centred * centred, axis=-1, keepdims=True)
    return centred * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta


@contextlib.contextmanager
def export_friendly_layernorm(model) -> Iterator[None]:
    """Trace every LayerNormalization of `model` in a form the int16x8 quantizer can handle.

    Keras lowers LayerNorm to SQUARED_DIFFERENCE and NEG: 16x8 quantization has no NEG
    ("not yet supported for op: 'NEG'") and LiteRT has no int16 SQUARED_DIFFERENCE kernel
    (the converted file then fails at run time). The rewritten form is exact in float (the
    fp32 parity check covers it) and lets full int8 quantize LayerNorm too, instead of
    leaving a float NEG between QUANTIZE/DEQUANTIZE pairs.
    """
    import keras

    patched = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        # Only the plain last-axis LayerNorm (every one in a vitedge ViT) is rewritten.
        if (isinstance(layer, keras.layers.LayerNormalization) and layer.center and layer.scale
                and not layer.rms_scaling and layer.axis in (-1, [-1])):
            layer.call = types.MethodType(_layernorm_call, layer)
            patched.append(layer)
    try:
        yield
    finally:
        for layer in patched:
            del layer.call


def with_softmax(model):
    """The model with a softmax over the classes at the end (--scores probabilities).

    A functional model is extended with its own layers (op and layer names unchanged, which the
    int8 recipes' per-layer choices rely on); anything else is wrapped."""
    import keras

    softmax = keras.layers.Softmax(axis=-1, name="probabilities")
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if inputs and outputs and len(outputs) == 1:
        return keras.Model(inputs, softmax(outputs[0]), name=f"{model.name}_probabilities")
    image = keras.Input(model.input_shape[1:], name="image")
    return keras.Model(image, softmax(model(image)), name=f"{model.name}_probabilities")


def export_saved_model(model, directory: Path, batch: int | None = DEFAULT_BATCH) -> Path:
    """Write the TF SavedModel the converter starts from (float32 NHWC input, `batch` fixed)."""
    import tensorflow as tf

    h, w, c = model.input_shape[1:4]
    spec = tf.TensorSpec((batch, h, w, c), tf.float32, name="image")
    with export_friendly_layernorm(model), captured_stderr() as log:
        try:
            model.export(str(directory), format="tf_saved_model", input_signature=[spec], verbose=False)
        except Exception as exc:
            raise VitedgeError(f"TensorFlow could not export the model: {exc or last_error_line(log[0] if log else '')}") from None
    return Path(directory)


def convert(saved_model: Path, precision: str, calibration: np.ndarray | None = None,
            int8_io: bool = False, batch: int | None = DEFAULT_BATCH) -> tuple[bytes, dict]:
    """One TFLite flatbuffer (bytes) and the recipe that made it."""
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise VitedgeError(f"unknown TFLite precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "dynamic":  # the "dynamic" recipe's converter settings
        from ..quant.tflite_quant import dynamic_converter

        converter = dynamic_converter(saved_model)
    else:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    recipe = {
        "converter": f"tensorflow {tf.__version__} TFLiteConverter.from_saved_model",
        "batch": batch,
        "layernorm": LAYERNORM_FORM,
    }
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        recipe.update(optimizations=["DEFAULT"], weights="float16")
    elif precision == "dynamic":
        recipe.update(optimizations=["DEFAULT"], weights="int8", activations="float32 (int8 on the fly)")
    elif precision in ("int8", "int16x8"):
        if calibration is None or not len(calibration):
            raise VitedgeError(f"{precision} needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(calibration, batch)
        if precision == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            recipe.update(optimizations=["DEFAULT"], supported_ops=["TFLITE_BUILTINS_INT8"],
                          weights="int8 per-channel", activations="int8")
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        else:
            # Float kernels stay allowed as a fallback for any op without a 16x8 version.
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
            recipe.update(optimizations=["DEFAULT"],
                          supported_ops=["EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",
                                         "TFLITE_BUILTINS"],
                          weights="int8 per-channel", activations="int16")
        recipe["representative_images"] = int(len(calibration))
    recipe["io"] = "int8" if int8_io and precision == "int8" else "float32"
    with captured_stderr() as log:
        try:
            flatbuffer = converter.convert()
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(log[0] if log else "")
            raise VitedgeError(f"TFLite {precision} conversion failed: {detail}") from None
    return bytes(flatbuffer), recipe


def _representative(images: np.ndarray, batch: int | None):
    step = batch or 1

    def dataset():
        for start in range(0, len(images) - step + 1, step):
            yield [images[start:start + step].astype(np.float32)]

    return dataset


def io_details(flatbuffer: bytes) -> dict:
    """Input/output tensor names, shapes and types of a flatbuffer (for the metadata)."""
    from ..runtime.litert import new_interpreter

    interpreter = new_interpreter(model_content=flatbuffer, provider=None)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    sig = [None if d < 0 else int(d) for d in inp.get("shape_signature", inp["shape"])]
    return {
        "input": {"name": inp["name"], "shape": sig, "dtype": np.dtype(inp["dtype"]).name},
        "output": {"name": out["name"], "dtype": np.dtype(out["dtype"]).name},
    }


def quantize_calibrated_file(calibrated: Path, recipe: str, exclude: list[str], target: str) -> tuple[bytes, dict]:
    """`tflite_quant.quantize_calibrated` of a calibrated model kept in a file."""
    from ..quant import tflite_quant

    return tflite_quant.quantize_calibrated(Path(calibrated).read_bytes(), recipe, exclude, target=target)


class TfliteBuilder:
    """Int8 TFLite files from the SavedModel, by a recipe's settings (calibrated once)."""

    fmt, suffix = "tflite", ".tflite"

    def __init__(self, saved_model: Path, calibration: np.ndarray, workdir: Path, target: str, batch: int | None,
                 isolate: bool = False):
        self.saved_model, self.calibration, self.workdir = saved_model, calibration, workdir
        self.target, self.batch, self.isolate = target, batch, isolate
        self._calibrated: Path | None = None  # the calibrated float model, on disk
        self._fp32_path: Path | None = None

    @property
    def fp32_path(self) -> Path:
        """A plain fp32 conversion (no metadata) to compare and time the int8 files against."""
        if self._fp32_path is None:
            flatbuffer, _ = isolate.call("vitedge.export.tflite:convert", self.saved_model, "fp32", batch=self.batch,
                                         isolate=self.isolate, what="TFLite fp32 conversion")
            self._fp32_path = self.workdir / "int8_reference_fp32.tflite"
            self._fp32_path.write_bytes(flatbuffer)
        return self._fp32_path

    def build(self, recipe: str, exclude: list[str], path: Path) -> dict:
        from ..quant.recipes import RECIPES

        where = "vitedge.quant.tflite_quant"
        if RECIPES[("tflite", recipe)].mode == "dynamic":
            flatbuffer, record = isolate.call(f"{where}:dynamic", self.saved_model, isolate=self.isolate,
                                              what="TFLite dynamic-range int8 conversion")
        else:
            if self._calibrated is None:
                self._calibrated = self.workdir / "tflite_calibrated.tflite"
                self._calibrated.write_bytes(isolate.call(
                    f"{where}:calibrate", self.saved_model, self.calibration, self.batch, isolate=self.isolate,
                    what=f"TFLite calibration ({len(self.calibration)} images)"))
            flatbuffer, record = isolate.call("vitedge.export.tflite:quantize_calibrated_file", self._calibrated,
                                              recipe, exclude, target=self.target, isolate=self.isolate,
                                              what=f"TFLite int8 quantization ({recipe})")
            record["representative_images"] = int(len(self.calibration))
        path.write_bytes(flatbuffer)
        return {**record, "target": self.target}


def tensorflow_version() -> str:
    """TensorFlow's version from its package metadata (no import: the parent may not load TF)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    import tensorflow as tf

    return tf.__version__


def saved_model_of(model, folder: Path, batch: int | None, probabilities: bool) -> Path:
    """`export_saved_model` of `model` (a Keras model or a .keras file to load), with a softmax
    at the end if `probabilities`."""
    if isinstance(model, (str, Path)):
        from .onnx import load_keras

        model = load_keras(model)
    return export_saved_model(with_softmax(model) if probabilities else model, folder, batch)


class TfliteConverter(Converter):
    """One SavedModel per export call (logits or probabilities out), converted per precision."""

    def __init__(self, ctx: ExportContext):
        super().__init__(ctx)
        self._saved_models: dict[str, Path] = {}

    def saved_model(self, scores: str) -> Path:
        """The SavedModel the converter starts from; `scores="probabilities"` ends it in a softmax."""
        ctx = self.ctx
        if scores not in self._saved_models:
            folder = ctx.workdir / ("saved_model" if not self._saved_models else f"saved_model_{scores}")
            ctx.progress(f"tflite: SavedModel export ({scores})" + (" (own process)" if ctx.isolate else ""))
            model = ctx.model_file() if ctx.isolate else ctx.keras_model
            self._saved_models[scores] = isolate.call(
                "vitedge.export.tflite:saved_model_of", model, folder, ctx.tflite_batch, scores == "probabilities",
                isolate=ctx.isolate, what="SavedModel export")
        return self._saved_models[scores]

    def convert(self, precision: str, scores: str) -> Converted:
        from .tflite_metadata import with_tflite_metadata

        ctx = self.ctx
        saved_model = self.saved_model(scores)
        met = True
        if precision == "int8" and not ctx.int8_io:  # the measured recipes (vitedge.quant, docs/quantization.md)
            from ..quant.int8_export import int8_artifact

            ctx.progress(f"tflite int8: calibrating on {len(ctx.calibration.images)} images and quantizing")
            builder = TfliteBuilder(saved_model, ctx.calibration.images, ctx.workdir, ctx.int8.target,
                                    ctx.tflite_batch, isolate=ctx.isolate)
            path, recipe, met = int8_artifact(builder, ctx.int8)
            flatbuffer = path.read_bytes()
            recipe = {"converter": f"tensorflow {tensorflow_version()} TFLiteConverter.from_saved_model",
                      "batch": ctx.tflite_batch, "layernorm": LAYERNORM_FORM, **recipe, "io": "float32"}
        else:
            images = ctx.calibration.images if precision in STATIC_PRECISIONS else None
            ctx.progress(f"tflite {precision}: TFLiteConverter" + (" (own process)" if ctx.isolate else ""))
            flatbuffer, recipe = isolate.call("vitedge.export.tflite:convert", saved_model, precision, images,
                                              int8_io=ctx.int8_io and precision == "int8", batch=ctx.tflite_batch,
                                              isolate=ctx.isolate, what=f"TFLite {precision} conversion")
        io = io_details(flatbuffer)

        def write(path: Path, meta: dict) -> None:  # official TFLite Metadata + labels.txt + vitedge.json
            path.write_bytes(with_tflite_metadata(flatbuffer, meta))

        return Converted(recipe, io, write, bound_missed=not met)
