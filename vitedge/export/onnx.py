"""Keras ViT -> ONNX with tf2onnx; fp16 with onnxconverter-common (int8: vitedge.quant.onnx_quant).

The graph has one input "image" (float32 NHWC, batch dimension dynamic, named "batch") and
one output "logits", whatever the TF tensor names were. Quantized files keep float I/O.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from ..formats.base import Converted, Converter, ExportContext
from ..quiet import captured_stderr, last_error_line
from . import isolate

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# int8 (dynamic and static) is made by vitedge.quant.onnx_quant, from the fused graph.


def convert_fp32(model, large: bool = False):
    """The float ONNX ModelProto of a Keras ViT (opset 17, dynamic batch, stable names).

    `large`: tf2onnx's large-model route, for models whose conversion would not fit otherwise:
    weights frozen without TF's function rebuild and kept out of the GraphDef, no grappler
    pass (measured on ViT-S: 5x the weights above TensorFlow's own memory instead of 20x).
    The same math; grappler's only effect on a ViT is dropping Adds of all-zero constants (the
    biases of randomly initialized layers), which then stay as Adds."""
    import tensorflow as tf
    import tf2onnx

    h, w, c = model.input_shape[1:4]
    function = tf.function(lambda image: model(image, training=False))
    signature = [tf.TensorSpec((None, h, w, c), tf.float32, name=INPUT_NAME)]

    def run(copy_per_pass: bool):
        with lean_tf2onnx(copy_per_pass=copy_per_pass, large=large):
            proto, storage = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET,
                                                           large_model=large)
        if large:
            _inline_external(proto, storage)
        return proto

    with captured_stderr() as log:
        try:
            try:
                proto = run(copy_per_pass=False)
            except Exception:  # an optimizer pass failed: tf2onnx's own way, which skips it
                proto = run(copy_per_pass=True)
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(log[0] if log else "")
            raise VitedgeError(f"tf2onnx could not convert the model: {detail}") from None
    _stable_names(proto)
    return proto


def _inline_external(proto, storage) -> None:
    """Move the large-model route's tensors (kept beside the proto) into the initializers."""
    import onnx

    data = storage.name_to_tensor_data
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            where = {e.key: e.value for e in tensor.external_data}["location"]
            tensor.raw_data = data.pop(where)
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT


@contextlib.contextmanager
def lean_tf2onnx(copy_per_pass: bool, large: bool = False):
    """tf2onnx without its per-pass copies of the weights (same passes, same graph).

    Each of its ~36 optimizer passes rewrites every node's NodeProto in place (`update_proto`);
    with the upb protobuf backend the old attributes, weights included, stay in the message's
    arena until the message dies, so the process grew by one copy of the weights per pass
    (measured: ViT-S +3.2 GB). Here each update starts from a fresh NodeProto. Unless
    `copy_per_pass`, the passes also run without tf2onnx's deep copy of the graph before each
    (TF2ONNX_CATCH_ERRORS set: a failing pass raises instead of being skipped; the caller
    retries the copying way then)."""
    import onnx
    from tf2onnx import graph as tf2onnx_graph

    original = tf2onnx_graph.Node.update_proto

    def update_proto(node, external_tensor_storage=None):
        old, fresh = node._op, onnx.NodeProto()
        for fd, value in old.ListFields():
            if fd.name in ("input", "output", "attribute"):
                continue  # the original rebuilds these
            if isinstance(value, (str, bytes, int, float)):
                setattr(fresh, fd.name, value)
            elif hasattr(value, "CopyFrom"):
                getattr(fresh, fd.name).CopyFrom(value)
            else:  # a repeated field
                getattr(fresh, fd.name).extend(value)
        node._op = fresh
        return original(node, external_tensor_storage)

    env_was = os.environ.get("TF2ONNX_CATCH_ERRORS")
    tf2onnx_graph.Node.update_proto = update_proto
    shimmed = large and not hasattr(np, "product")
    if shimmed:  # tf2onnx 1.17's large-model route still calls np.product (gone in NumPy 2)
        np.product = np.prod
    if not copy_per_pass:
        os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"  # tf2onnx reads only its presence
    try:
        yield
    finally:
        tf2onnx_graph.Node.update_proto = original
        if shimmed:
            del np.product
        if env_was is None:
            os.environ.pop("TF2ONNX_CATCH_ERRORS", None)
        else:
            os.environ["TF2ONNX_CATCH_ERRORS"] = env_was


def fp32_files(model, tf2onnx_path: Path, fused_path: Path, large: bool = False) -> dict:
    """Write tf2onnx's fp32 graph and the fused one (`onnx_graph.simplify`) of `model` (a Keras
    model, or a .keras file to load); returns what the rewrite did. `large`: see `convert_fp32`."""
    import onnx

    from .onnx_graph import simplify

    if isinstance(model, (str, Path)):
        model = load_keras(model)
    proto = convert_fp32(model, large=large)
    del model
    onnx.save(proto, str(tf2onnx_path))
    # Fused graph (LayerNorm, Gelu, attention, Dense): same math, ~2-5x fewer nodes; fp32 and
    # int8 both start from it, so int8's speed-up is quantization's (docs/quantization.md).
    fused, graph = simplify(proto)
    del proto
    onnx.save(fused, str(fused_path))
    return graph


def load_keras(path):
    """A Keras model saved by `ExportContext.model_file` (vitedge's layers registered)."""
    import keras

    from .. import vit  # noqa: F401  (registers vitedge's layers)

    return keras.saving.load_model(str(path), compile=False, safe_mode=True)


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


class OnnxBuilder:
    """Int8 ONNX files from the fused fp32 graph, by a recipe's settings (ONNX Runtime's quantizer)."""

    fmt, suffix = "onnx", ".onnx"

    def __init__(self, fp32_path: Path, calibration: np.ndarray, workdir: Path, target: str,
                 calib_method: str = "minmax", isolate: bool = False):
        self.fp32_path, self.calibration, self.workdir, self.target = fp32_path, calibration, workdir, target
        self.calib_method, self.isolate = calib_method, isolate
        self.cache = workdir / "onnx_activation_ranges.json"

    def build(self, recipe: str, exclude: list[str], path: Path) -> dict:
        return isolate.call("vitedge.quant.onnx_quant:quantize", self.fp32_path, path, recipe, self.target,
                            self.calibration, exclude, cache=self.cache, method=self.calib_method,
                            isolate=self.isolate, what=f"ONNX int8 quantization ({recipe})")


def copy_proto(proto):
    copy = type(proto)()
    copy.CopyFrom(proto)
    return copy


class OnnxConverter(Converter):
    """The ONNX models of one export call, logits out, each made once (the ORT format reuses them)."""

    def __init__(self, ctx: ExportContext):
        super().__init__(ctx)
        self._tf2onnx = None  # tf2onnx's fp32 graph (fp16 starts from it), loaded when needed
        self._tf2onnx_path: Path | None = None
        self._fp32 = None  # the fused fp32 graph
        self._graph: dict = {}  # what the rewrite did, for the recipe
        self.fp32_path: Path | None = None  # the fused fp32 graph on disk (quantizers read files)
        self._made: dict[str, tuple] = {}  # precision -> (ModelProto, recipe, bound met)
        self._builder: OnnxBuilder | None = None

    def _fp32_start(self) -> None:
        if self._fp32 is not None:
            return
        import onnx

        ctx = self.ctx
        self.fp32_path = ctx.workdir / "fp32.onnx"
        self._tf2onnx_path = ctx.workdir / "tf2onnx_fp32.onnx"
        # tf2onnx peaks at many times the weights (TF's freeze + grappler): in a child process
        # for large models, so that memory goes back before the next step.
        model = ctx.model_file() if ctx.isolate else ctx.keras_model
        ctx.progress("onnx: tf2onnx fp32 conversion and graph rewrite" + (" (own process)" if ctx.isolate else ""))
        self._graph = isolate.call("vitedge.export.onnx:fp32_files", model, self._tf2onnx_path, self.fp32_path,
                                   large=ctx.isolate, isolate=ctx.isolate, what="tf2onnx (ONNX fp32 conversion)")
        self._fp32 = onnx.load(str(self.fp32_path))

    def _tf2onnx_graph(self):
        """tf2onnx's own fp32 graph (fp16 starts from it), read back when first needed."""
        import onnx

        self._fp32_start()
        if self._tf2onnx is None:
            self._tf2onnx = onnx.load(str(self._tf2onnx_path))
        return self._tf2onnx

    def proto(self, precision: str):
        """(ModelProto, recipe, bound met) of one precision, logits out; a fresh copy each call."""
        if precision not in self._made:
            self._made[precision] = self._make(precision)
        proto, recipe, met = self._made[precision]
        return copy_proto(proto), dict(recipe), met

    def _make(self, precision: str):
        import onnx


        ctx = self.ctx
        self._fp32_start()
        recipe = recipe_fp32()
        graph = {k: v for k, v in self._graph.items() if k != "op_types"}
        if precision != "fp16":
            recipe["graph"] = {"rewrite": "vitedge.export.onnx_graph.simplify", **graph}
        met = True
        if precision == "fp32":
            proto = self._fp32
        elif precision == "fp16":  # from tf2onnx's graph: the fused ONNX Runtime ops have no fp16 CPU kernels
            proto, extra = to_fp16(self._tf2onnx_graph())
            recipe.update(extra)
        elif precision == "dynamic":
            # the "dynamic" recipe: ONNX Runtime's per-call int8 on the weight MatMuls, one image at a time
            out = ctx.workdir / "dynamic.onnx"
            recipe.update(self.builder().build("dynamic", [], out))
            proto = onnx.load(str(out))
        elif precision == "int8":  # the measured recipes (vitedge.quant, docs/quantization.md)
            from ..quant.int8_export import int8_artifact

            ctx.progress(f"onnx int8: calibrating on {len(ctx.calibration.images)} images and quantizing")
            out, extra, met = int8_artifact(self.builder(), ctx.int8)
            recipe.update(extra)
            proto = onnx.load(str(out))
        else:  # pragma: no cover - the plan rejects it
            raise VitedgeError(f"{precision} is not available for onnx")
        return proto, recipe, met

    def builder(self) -> OnnxBuilder:
        """The int8 builder over this call's fused fp32 graph (made on first use)."""
        self._fp32_start()
        if self._builder is None:
            ctx = self.ctx
            self._builder = OnnxBuilder(self.fp32_path, ctx.calibration.images, ctx.workdir, ctx.int8.target,
                                        ctx.calib_method, isolate=ctx.isolate)
        return self._builder

    def io(self, proto, recipe: dict) -> dict:
        h, w = self.ctx.calibration.images.shape[1:3]
        return {"input": {"name": INPUT_NAME, "shape": [recipe.get("batch"), int(h), int(w), 3],
                          "dtype": "float32"},
                "output": {"name": proto.graph.output[0].name, "dtype": "float32"}}

    def convert(self, precision: str, scores: str) -> Converted:
        import onnx

        from ..artifact import set_onnx_metadata

        proto, recipe, met = self.proto(precision)
        if scores == "probabilities":
            recipe["softmax"] = append_softmax(proto)
        io = self.io(proto, recipe)

        def write(path: Path, meta: dict) -> None:
            set_onnx_metadata(proto, meta)
            onnx.save(proto, str(path))

        return Converted(recipe, io, write, bound_missed=not met)
