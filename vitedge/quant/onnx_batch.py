"""A dynamic batch for batch-1 ONNX graphs whose answer must not depend on the other images.

ONNX Runtime's dynamic int8 (DynamicQuantizeMatMul) takes ONE activation scale per input
tensor, so with a batch of N images each image's answer would depend on the others (a test
caught `predict --batch 4` differing from one by one). `per_image` keeps the batch dimension
dynamic, as export promises, by wrapping the batch-1 graph in an ONNX `Scan` over the batch:
every image runs through the unchanged graph on its own. At batch 1 the loop costs one
subgraph call (measured in docs/quantization.md). `flatten` undoes it for the tools that
look inside the graph (per-layer error, profiling).

Needs the `onnx` package (export side); the device only runs the result.
"""

from __future__ import annotations

SCAN_NAME = "vitedge_per_image"
_AXES = "vitedge_axis0"
_INNER = "_batch1"


def _renamed(node, names: dict):
    copy = type(node)()
    copy.CopyFrom(node)
    for i, name in enumerate(copy.input):
        copy.input[i] = names.get(name, name)
    for i, name in enumerate(copy.output):
        copy.output[i] = names.get(name, name)
    return copy


def _scan(model):
    return next((n for n in model.graph.node if n.op_type == "Scan" and n.name == SCAN_NAME), None)


def is_per_image(model) -> bool:
    return _scan(model) is not None


def per_image(model):
    """The batch-1 `model` (one input, one output) as a Scan over a dynamic batch dimension."""
    import onnx
    from onnx import TensorProto, helper

    if is_per_image(model):
        return model
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError("per_image needs a graph with one input and one output")
    inp, out = graph.input[0], graph.output[0]
    in_dims = [d.dim_value or None for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_value or None for d in out.type.tensor_type.shape.dim]
    item_in, item_out = inp.name + "_item", out.name + "_item"
    # Inside the body the batch-1 tensors get their own names: a subgraph may not reuse the
    # outer graph's (the Scan's input and output keep "image" and "logits").
    inner = {inp.name: inp.name + _INNER, out.name: out.name + _INNER}
    nodes = [_renamed(n, inner) for n in graph.node]
    body = helper.make_graph(
        [helper.make_node("Unsqueeze", [item_in, _AXES], [inner[inp.name]], name="vitedge_add_batch"),
         *nodes,
         helper.make_node("Squeeze", [inner[out.name], _AXES], [item_out], name="vitedge_drop_batch")],
        "vitedge_one_image",
        [helper.make_tensor_value_info(item_in, inp.type.tensor_type.elem_type, in_dims[1:])],
        [helper.make_tensor_value_info(item_out, out.type.tensor_type.elem_type, out_dims[1:])],
        initializer=[*graph.initializer, helper.make_tensor(_AXES, TensorProto.INT64, [1], [0])],
        value_info=list(graph.value_info),
    )
    scan = helper.make_node("Scan", [inp.name], [out.name], name=SCAN_NAME, body=body, num_scan_inputs=1)
    outer = helper.make_graph(
        [scan], graph.name,
        [helper.make_tensor_value_info(inp.name, inp.type.tensor_type.elem_type, ["batch", *in_dims[1:]])],
        [helper.make_tensor_value_info(out.name, out.type.tensor_type.elem_type, ["batch", *out_dims[1:]])],
    )
    wrapped = helper.make_model(outer, opset_imports=list(model.opset_import), producer_name=model.producer_name,
                                producer_version=model.producer_version)
    wrapped.ir_version = model.ir_version
    del wrapped.metadata_props[:]
    wrapped.metadata_props.extend(model.metadata_props)
    onnx.checker.check_model(wrapped)
    return wrapped


def flatten(model):
    """The batch-1 graph inside a `per_image` model, with whatever follows the Scan (a softmax,
    say); any other model is returned as it is."""
    from onnx import helper

    scan = _scan(model)
    if scan is None:
        return model
    body = next(a.g for a in scan.attribute if a.name == "body")
    inp, out = model.graph.input[0], model.graph.output[0]
    outer = {body.input[0].name: None, body.output[0].name: None}  # the per-item ends go away
    names = {scan.input[0] + _INNER: scan.input[0], scan.output[0] + _INNER: scan.output[0]}
    nodes = [_renamed(n, names) for n in body.node if not set(n.output) & set(outer)
             and n.name not in ("vitedge_add_batch", "vitedge_drop_batch")]
    nodes += [n for n in model.graph.node if n is not scan]
    dims_in = [1] + [d.dim_value or None for d in inp.type.tensor_type.shape.dim][1:]
    dims_out = [1] + [d.dim_value or None for d in out.type.tensor_type.shape.dim][1:]
    graph = helper.make_graph(
        nodes, model.graph.name,
        [helper.make_tensor_value_info(inp.name, inp.type.tensor_type.elem_type, dims_in)],
        [helper.make_tensor_value_info(out.name, out.type.tensor_type.elem_type, dims_out)],
        initializer=[t for t in body.initializer if t.name != _AXES] + list(model.graph.initializer),
        value_info=list(body.value_info),
    )
    flat = helper.make_model(graph, opset_imports=list(model.opset_import))
    flat.ir_version = model.ir_version
    flat.metadata_props.extend(model.metadata_props)
    return flat
