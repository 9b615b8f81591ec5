"""Keras ViT -> ONNX with tf2onnx; fp16 with onnxconverter-common (int8: vitedge.quant.onnx_quant).

The graph has one input "image" (float32 NHWC, batch dimension dynamic, named "batch") and
one output "logits", whatever the TF tensor names were. Quantized files keep float I/O.
"""

from __future__ import annotations

from ..errors import VitedgeError
from .quiet import captured_stderr, last_error_line

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
CALIB_METHODS = ("minmax", "entropy", "percentile")
OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Static int8 quantizes the weight-bearing ops only (patch embedding, QKV, projection, MLP,
# head); LayerNorm/Softmax/GELU stay float. Measured (notes): as accurate as quantizing every
# op and ~1.8x faster in ONNX Runtime, since QDQ pairs around cheap ops cost more than they save.
STATIC_OP_TYPES = ("MatMul", "Conv", "Gemm")
# 7-bit weights. On x86 without VNNI, ONNX Runtime's int8 GEMMs use u8*s8 pair sums that
# saturate int16 (VPMADDUBSW); measured on a tiny ViT here: max logit error 1.37 -> 0.11
# (dynamic) and 1.89 -> 0.13 (static) with it. ARM loses a bit of weight precision only.
REDUCE_RANGE = True


def convert_fp32(model):
    """The float ONNX ModelProto of a Keras ViT (opset 17, dynamic batch, stable names)."""
    import tensorflow as tf
    import tf2onnx

    h, w, c = model.input_shape[1:4]
    function = tf.function(lambda image: model(image, training=False))
    signature = [tf.TensorSpec((None, h, w, c), tf.float32, name=INPUT_NAME)]
    with captured_stderr() as log:
        try:
            proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET)
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(log[0] if log else "")
            raise VitedgeError(f"tf2onnx could not convert the model: {detail}") from None
    _stable_names(proto)
    return proto


def _stable_names(proto) -> None:
    """Input "image", output "logits", batch dimension "batch"."""
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise VitedgeError(f"expected one input and one output, tf2onnx made {len(graph.input)} and {len(graph.output)}")
    renames = {graph.input[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    graph.input[0].name = INPUT_NAME
    graph.output[0].name = OUTPUT_NAME
    for value in (graph.input[0], graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"


def recipe_fp32() -> dict:
    import tf2onnx

    return {"converter": f"tf2onnx {tf2onnx.__version__}", "opset": OPSET, "batch": None}


def to_fp16(proto):
    """Float16 weights and activations inside, float32 input and output kept."""
    from onnxconverter_common import __version__ as occ_version
    from onnxconverter_common import float16

    original = type(proto)()
    original.CopyFrom(proto)  # the converter may edit its argument; the fp32 model stays intact
    with captured_stderr():
        half = float16.convert_float_to_float16(original, keep_io_types=True)
    return half, {"fp16": f"onnxconverter-common {occ_version} convert_float_to_float16", "keep_io_types": True}
