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
# int8 (dynamic and static) is made by vitedge.quant.onnx_quant, from the fused graph.


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


PROBABILITIES_NAME = "probabilities"


def append_softmax(proto) -> dict:
    """End the graph with Softmax over the classes: output "probabilities" instead of "logits".

    Appended to the finished (fused / quantized) graph, so every recipe before it works on
    logits as usual; returns the recipe note."""
    import onnx

    graph = proto.graph
    if len(graph.output) != 1:
        raise VitedgeError(f"expected one graph output, found {len(graph.output)}")
    logits = graph.output[0]
    taken = {name for node in graph.node for name in node.output} | {i.name for i in graph.initializer}
    if PROBABILITIES_NAME in taken:
        raise VitedgeError(f"the graph already has a tensor named {PROBABILITIES_NAME!r}")
    graph.node.append(onnx.helper.make_node("Softmax", [logits.name], [PROBABILITIES_NAME],
                                            name="vitedge_softmax", axis=-1))
    probabilities = onnx.ValueInfoProto()
    probabilities.CopyFrom(logits)
    probabilities.name = PROBABILITIES_NAME
    del graph.output[:]
    graph.output.append(probabilities)
    return {"op": "Softmax(axis=-1)", "input": logits.name, "output": PROBABILITIES_NAME}


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
