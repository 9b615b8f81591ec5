"""Per-layer quantization error: an int8 artifact's intermediate tensors against its fp32 twin's.

For every quantized layer (ONNX MatMul with a constant weight; TFLite FULLY_CONNECTED /
CONV_2D) both artifacts run on the same images with that layer's input and output exposed:

  * `error`  = RMS(int8 - float) / RMS(float) of the layer's output (what reaches it, accumulated);
  * `added`  = `error` minus the same ratio of its input: what this layer (its weight and its
    input's quantization) adds. Accuracy control reverts layers in order of `added`.

The pair is matched by tensor name (ONNX Runtime's quantizer keeps output names; TFLite files
converted from one SavedModel share names), else by position among the layers. No TensorFlow:
runs on the device runtimes (LiteRT without XNNPACK, so intermediate tensors are kept).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from .tflite_quant import (
    INT8_OPS as TFLITE_LAYER_OPS,  # the weight-bearing ops (no TensorFlow import)
)


@dataclass
class LayerError:
    name: str  # node name (ONNX) / output tensor name (TFLite): what `exclude` takes
    op_type: str
    error: float
    added: float
    int8: bool  # the layer runs int8 in the quantized artifact

    def to_dict(self) -> dict:
        return asdict(self)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    ref = float(np.sqrt(np.mean(np.square(b.astype(np.float64)))))
    diff = float(np.sqrt(np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)))))
    return diff / ref if ref > 0 else diff


# ------------------------------------------------------------------------------ ONNX ----
@dataclass
class _OnnxLayer:
    node: str
    op_type: str
    input: str
    output: str


def onnx_layers(model) -> list[_OnnxLayer]:
    """MatMul / Gemm / Conv nodes with a constant weight, in graph order."""
    constants = {i.name for i in model.graph.initializer}
    return [_OnnxLayer(n.name, n.op_type, n.input[0], n.output[0]) for n in model.graph.node
            if n.op_type in ("MatMul", "Gemm", "Conv") and len(n.input) > 1 and n.input[1] in constants]


def _onnx_tensors(path: str | os.PathLike, names: list[str], images: np.ndarray, threads: int | None) -> dict:
    import onnx

    from ..runtime.onnxrt import new_session
    from .onnx_batch import flatten

    model = flatten(onnx.load(str(path)))  # a per-image Scan hides its tensors inside its body
    present = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    wanted = [n for n in dict.fromkeys(names) if n in present]
    existing = {o.name for o in model.graph.output}
    for name in wanted:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = new_session(model.SerializeToString(), threads=threads or None)
    input_name = session.get_inputs()[0].name
    outs: dict[str, list] = {n: [] for n in wanted}
    for i in range(len(images)):
        values = session.run(wanted, {input_name: images[i:i + 1]})
        for n, v in zip(wanted, values, strict=True):
            outs[n].append(np.asarray(v, np.float32))
    return {n: np.concatenate(v) for n, v in outs.items()}


def onnx_errors(int8_path, fp32_path, images: np.ndarray, threads: int | None = None) -> list[LayerError]:
    import onnx

    float_layers = onnx_layers(onnx.load(str(fp32_path), load_external_data=False))
    from .onnx_batch import flatten

    quant = flatten(onnx.load(str(int8_path), load_external_data=False))
    quant_float = {layer.node for layer in onnx_layers(quant)}  # still float in the int8 file
    names = [t for layer in float_layers for t in (layer.input, layer.output)]
    ref = _onnx_tensors(fp32_path, names, images, threads)
    got = _onnx_tensors(int8_path, names, images, threads)
    out = []
    for layer in float_layers:
        if layer.output not in got or layer.output not in ref:
            continue
        err = _rel(got[layer.output], ref[layer.output])
        before = _rel(got[layer.input], ref[layer.input]) if layer.input in got and layer.input in ref else 0.0
        out.append(LayerError(layer.node, layer.op_type, err, err - before, layer.node not in quant_float))
    return out


# ----------------------------------------------------------------------------- TFLite ----
def _tflite_run(path: str | os.PathLike, images: np.ndarray):
    """(layers [(op, input index, output index)], tensor details, per-image tensor values)."""
    from ..runtime.litert import new_interpreter, op_list

    interpreter = new_interpreter(model_path=path, provider="builtin", preserve_all_tensors=True)
    interpreter.allocate_tensors()
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = [op for op in op_list(interpreter) if op["op_name"] in TFLITE_LAYER_OPS]
    inp = interpreter.get_input_details()[0]
    batch = int(inp["shape"][0]) or 1
    wanted = sorted({int(op["inputs"][0]) for op in ops} | {int(op["outputs"][0]) for op in ops})
    values: dict[int, list] = {i: [] for i in wanted}
    for start in range(0, len(images) - batch + 1, batch):
        x = images[start:start + batch]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.rint(x / scale) + zero, info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        for i in wanted:
            values[i].append(_dequantized(interpreter.get_tensor(i), details[i]))
    return ops, details, {i: np.concatenate(v) for i, v in values.items()}


def _dequantized(value: np.ndarray, detail: dict) -> np.ndarray:
    if value.dtype == np.float32:
        return value
    scale, zero = detail["quantization"]
    return (value.astype(np.float32) - zero) * scale


def tflite_errors(int8_path, fp32_path, images: np.ndarray) -> list[LayerError]:
    f_ops, f_details, f_vals = _tflite_run(fp32_path, images)
    q_ops, q_details, q_vals = _tflite_run(int8_path, images)
    if len(f_ops) != len(q_ops):
        raise VitedgeError(f"{int8_path} has {len(q_ops)} matrix layers, {fp32_path} {len(f_ops)}: "
                           "not the same model")
    out = []
    for f_op, q_op in zip(f_ops, q_ops, strict=True):
        fo, qo = int(f_op["outputs"][0]), int(q_op["outputs"][0])
        fi, qi = int(f_op["inputs"][0]), int(q_op["inputs"][0])
        err = _rel(q_vals[qo], f_vals[fo])
        before = _rel(q_vals[qi], f_vals[fi])
        weight = q_details[int(q_op["inputs"][1])]
        out.append(LayerError(q_details[qo]["name"], q_op["op_name"], err, err - before,
                              np.dtype(weight["dtype"]) == np.int8))
    return out


def layer_errors(int8_path: str | os.PathLike, fp32_path: str | os.PathLike, images: np.ndarray,
                 threads: int | None = None) -> list[LayerError]:
    """Per-layer errors of an int8 artifact against the fp32 artifact of the same format."""
    suffixes = {Path(int8_path).suffix.lower(), Path(fp32_path).suffix.lower()}
    if suffixes == {".onnx"}:
        return onnx_errors(int8_path, fp32_path, images, threads)
    if suffixes == {".tflite"}:
        return tflite_errors(int8_path, fp32_path, images)
    raise VitedgeError(f"compare artifacts of one format: {int8_path} and {fp32_path}")


def worst_first(errors: list[LayerError]) -> list[LayerError]:
    """Quantized layers, the one adding the most error first."""
    return sorted((e for e in errors if e.int8), key=lambda e: e.added, reverse=True)
