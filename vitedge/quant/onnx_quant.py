"""ONNX Runtime's quantizer driven by a `Recipe`'s settings (vitedge/quant/recipes.py), on the
graph `vitedge.export.onnx_graph.simplify` made.

The offered recipes quantize only matrix multiplies with a constant weight (QKV, projection,
MLP, patch embedding, head; `MatMulConstBOnly`): LayerNormalization, Gelu, MultiHeadAttention
(softmax and attention's two activation-activation products) and the residual Adds stay float.
See docs/quantization.md for the measurements behind each choice.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from .recipes import RECIPES, Recipe

INPUT_NAME = "image"
OP_TYPES = RECIPES[("onnx", "qdq")].op_types  # what the offered recipes quantize


def quantizable_nodes(model) -> list[str]:
    """Names of the MatMuls with a constant (initializer) weight: what the recipes quantize."""
    constants = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in OP_TYPES and len(n.input) > 1 and n.input[1] in constants]


class _Reader:
    """ONNX Runtime CalibrationDataReader over preprocessed images, one per call."""

    def __init__(self, images: np.ndarray):
        self._items = iter([{INPUT_NAME: images[i:i + 1]} for i in range(len(images))])

    def get_next(self):
        return next(self._items, None)

    def __len__(self) -> int:  # pragma: no cover - only for strided calibration
        return 0


def _reader(images):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_Reader, CalibrationDataReader):
        pass

    return Reader(images)


def _per_image_batch(path: str | os.PathLike) -> None:
    """Keep the batch dimension dynamic without letting images share a scale: the batch-1
    graph runs once per image inside an ONNX Scan (see onnx_batch.py for why)."""
    import onnx

    from .onnx_batch import per_image

    onnx.save(per_image(onnx.load(str(path))), str(path))


def quantize(fp32_path: str | os.PathLike, out_path: str | os.PathLike, recipe: str | Recipe, target: str,
             calibration: np.ndarray | None = None, exclude: list[str] | tuple = (),
             cache: str | os.PathLike | None = None, method: str | None = None) -> dict:
    """Write the int8 model of `recipe` (a Recipe, or an ONNX recipe's name) to `out_path`,
    with the recipe's settings for `target`; `exclude` names nodes kept float.

    `cache` (static recipes): a file for the calibrated ranges, computed on the first call and
    reused by later ones (accuracy control re-quantizes with other exclusions). `method`
    replaces the recipe's calibration method (export's --calib-method)."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_dynamic
    from onnxruntime.quantization import quantize_static as ort_static

    from ..quiet import captured_stderr, last_error_line

    if isinstance(recipe, str):
        found = RECIPES.get(("onnx", recipe))
        if found is None:
            raise VitedgeError(f"unknown ONNX int8 recipe {recipe!r}")
        recipe = found
    reduce_range = bool(recipe.setting("reduce_range", target))
    per_channel = bool(recipe.setting("per_channel", target))
    op_types = None if recipe.op_types is None else list(recipe.op_types)
    extra = {"MatMulConstBOnly": True} if recipe.const_weight_only else {}
    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    exclude = list(exclude)
    method = method or recipe.calibration_method
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    record = {"quantizer": f"onnxruntime {onnxruntime.__version__}", "recipe": recipe.name, "target": target,
              "op_types": op_types if op_types is not None else "all", "const_weight_only": recipe.const_weight_only,
              "reduce_range": reduce_range, "float_nodes": exclude}
    weights = f"{recipe.weight_type} per {'channel' if per_channel else 'tensor'}"
    with captured_stderr() as log:
        try:
            if recipe.mode == "dynamic":
                ort_dynamic(str(fp32_path), str(out_path), op_types_to_quantize=op_types,
                            weight_type=types[recipe.weight_type], per_channel=per_channel, reduce_range=reduce_range,
                            nodes_to_exclude=exclude, extra_options=extra)
                if recipe.per_image:
                    _per_image_batch(out_path)
                    record.update(weights=weights, activations="uint8, quantized per call, one image at a time",
                                  batch=None, per_image_scan=True)
                else:
                    record.update(weights=weights, activations="uint8, quantized per call")
            else:
                if calibration is None or not len(calibration):
                    raise VitedgeError(f"the {recipe.name} recipe needs calibration images")
                cache_hit = cache is not None and Path(cache).is_file()
                ort_static(str(fp32_path), str(out_path), None if cache_hit else _reader(calibration),
                           quant_format=getattr(QuantFormat, recipe.quant_format), per_channel=per_channel,
                           reduce_range=reduce_range, activation_type=types[recipe.activation_type],
                           weight_type=types[recipe.weight_type], op_types_to_quantize=op_types,
                           nodes_to_exclude=exclude, calibrate_method=methods[method],
                           calibration_cache_path=None if cache is None else str(cache), extra_options=extra)
                record.update(format=recipe.quant_format, weights=weights,
                              activations=f"{recipe.activation_type} (calibrated, {method})",
                              calibration_method=method, representative_images=int(len(calibration)))
        except VitedgeError:
            raise
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(log[0] if log else "")
            raise VitedgeError(f"ONNX int8 ({recipe.name}) quantization failed: {detail}") from None
    return record
