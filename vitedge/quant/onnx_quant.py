"""ONNX int8 recipes with ONNX Runtime's quantizer, on the graph `onnx_graph.simplify` made.

Only matrix multiplies with a constant weight are quantized (QKV, projection, MLP, patch
embedding, head; `MatMulConstBOnly`): LayerNormalization, Gelu, MultiHeadAttention (softmax
and attention's two activation-activation products) and the residual Adds stay float. See
docs/quantization.md for the measurements behind each choice.

  * "dynamic": weights int8 per tensor, activations quantized per call (DynamicQuantizeMatMul).
  * "qdq":     static QDQ with calibrated activation ranges, weights int8 per channel.

`reduce_range` (7-bit weights) is on for x86: without VNNI, ONNX Runtime's u8*s8 kernels
sum pairs with VPMADDUBSW, which saturates int16 on full-range weights; ARM does not need it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import VitedgeError

INPUT_NAME = "image"
OP_TYPES = ("MatMul",)


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


def quantize(fp32_path: str | os.PathLike, out_path: str | os.PathLike, recipe: str, target: str,
             calibration: np.ndarray | None = None, exclude: list[str] | tuple = (),
             cache: str | os.PathLike | None = None, method: str = "minmax") -> dict:
    """Write the int8 model of `recipe` to `out_path`; `exclude` names MatMuls kept float.

    `cache` (static recipes): a file for the calibrated ranges, computed on the first call and
    reused by later ones (accuracy control re-quantizes with other exclusions)."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_dynamic
    from onnxruntime.quantization import quantize_static as ort_static

    from ..export.quiet import captured_stderr, last_error_line

    reduce_range = target == "x86"
    exclude = list(exclude)
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    record = {"quantizer": f"onnxruntime {onnxruntime.__version__}", "recipe": recipe, "target": target,
              "op_types": list(OP_TYPES), "const_weight_only": True, "reduce_range": reduce_range,
              "float_nodes": exclude}
    with captured_stderr() as log:
        try:
            if recipe == "dynamic":
                ort_dynamic(str(fp32_path), str(out_path), op_types_to_quantize=list(OP_TYPES),
                            weight_type=QuantType.QInt8, per_channel=False, reduce_range=reduce_range,
                            nodes_to_exclude=exclude, extra_options={"MatMulConstBOnly": True})
                _per_image_batch(out_path)
                record.update(weights="int8 per tensor", activations="uint8, quantized per call, one image at a time",
                              batch=None, per_image_scan=True)
            elif recipe == "qdq":
                if calibration is None or not len(calibration):
                    raise VitedgeError("the qdq recipe needs calibration images")
                cache_hit = cache is not None and Path(cache).is_file()
                ort_static(str(fp32_path), str(out_path), None if cache_hit else _reader(calibration),
                           quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                           activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                           op_types_to_quantize=list(OP_TYPES), nodes_to_exclude=exclude,
                           calibrate_method=methods[method],
                           calibration_cache_path=None if cache is None else str(cache),
                           extra_options={"MatMulConstBOnly": True})
                record.update(format="QDQ", weights="int8 per channel", activations=f"uint8 (calibrated, {method})",
                              calibration_method=method,
                              representative_images=int(len(calibration)))
            else:
                raise VitedgeError(f"unknown ONNX int8 recipe {recipe!r}")
        except VitedgeError:
            raise
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(log[0] if log else "")
            raise VitedgeError(f"ONNX int8 ({recipe}) quantization failed: {detail}") from None
    return record
