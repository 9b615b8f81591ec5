"""ONNX models: `.onnx`, run by ONNX Runtime.

Metadata: the model's `metadata_props`, key "vitedge" (read through ONNX Runtime on the device,
written with the `onnx` package). Conversion: tf2onnx fp32 -> `vitedge.export.onnx_graph.simplify`
(the fused graph fp32 and int8 start from) -> fp16 (from tf2onnx's graph) / ONNX Runtime int8;
`--scores probabilities` appends a Softmax to the finished graph (`vitedge/export/onnx.py`).
"""

from __future__ import annotations

from pathlib import Path

from .base import ArtifactFormat, Converted, Converter, ExportContext

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")


def copy_proto(proto):
    copy = type(proto)()
    copy.CopyFrom(proto)
    return copy


class OnnxConverter(Converter):
    """The ONNX models of one export call, logits out, each made once (the ORT format reuses them)."""

    def __init__(self, ctx: ExportContext):
        super().__init__(ctx)
        self._tf2onnx = None  # tf2onnx's fp32 graph (fp16 starts from it)
        self._fp32 = None  # the fused fp32 graph
        self._graph: dict = {}  # what the rewrite did, for the recipe
        self.fp32_path: Path | None = None  # the fused fp32 graph on disk (quantizers read files)
        self._made: dict[str, tuple] = {}  # precision -> (ModelProto, recipe, bound met)

    def _fp32_start(self) -> None:
        if self._fp32 is not None:
            return
        import onnx

        from ..export import onnx as onnx_export
        from ..quant.onnx_graph import simplify

        self._tf2onnx = onnx_export.convert_fp32(self.ctx.keras_model)
        # Fused graph (LayerNorm, Gelu, attention, Dense): same math, ~2-5x fewer nodes; fp32 and
        # int8 both start from it, so int8's speed-up is quantization's (docs/quantization.md).
        self._fp32, self._graph = simplify(self._tf2onnx)
        self.fp32_path = self.ctx.workdir / "fp32.onnx"
        onnx.save(self._fp32, str(self.fp32_path))

    def proto(self, precision: str):
        """(ModelProto, recipe, bound met) of one precision, logits out; a fresh copy each call."""
        if precision not in self._made:
            self._made[precision] = self._make(precision)
        proto, recipe, met = self._made[precision]
        return copy_proto(proto), dict(recipe), met

    def _make(self, precision: str):
        import onnx

        from ..errors import VitedgeError
        from ..export import onnx as onnx_export

        ctx = self.ctx
        self._fp32_start()
        recipe = onnx_export.recipe_fp32()
        graph = {k: v for k, v in self._graph.items() if k != "op_types"}
        if precision != "fp16":
            recipe["graph"] = {"rewrite": "vitedge.quant.onnx_graph.simplify", **graph}
        met = True
        if precision == "fp32":
            proto = self._fp32
        elif precision == "fp16":  # from tf2onnx's graph: the fused ONNX Runtime ops have no fp16 CPU kernels
            proto, extra = onnx_export.to_fp16(self._tf2onnx)
            recipe.update(extra)
        elif precision == "dynamic":
            # ONNX Runtime's per-call int8 on the weight MatMuls, one image at a time: the "dynamic" recipe
            from ..quant.onnx_quant import quantize

            out = ctx.workdir / "dynamic.onnx"
            recipe.update(quantize(self.fp32_path, out, "dynamic", ctx.int8.target))
            proto = onnx.load(str(out))
        elif precision == "int8":  # the measured recipes (vitedge.quant, docs/quantization.md)
            from ..quant.int8_export import OnnxBuilder, int8_artifact

            builder = OnnxBuilder(self.fp32_path, ctx.calibration.images, ctx.workdir, ctx.int8.target,
                                  ctx.calib_method)
            out, extra, met = int8_artifact(builder, ctx.int8)
            recipe.update(extra)
            proto = onnx.load(str(out))
        else:  # pragma: no cover - the plan rejects it
            raise VitedgeError(f"{precision} is not available for onnx")
        return proto, recipe, met

    def io(self, proto, recipe: dict) -> dict:
        from ..export import onnx as onnx_export

        h, w = self.ctx.calibration.images.shape[1:3]
        return {"input": {"name": onnx_export.INPUT_NAME, "shape": [recipe.get("batch"), int(h), int(w), 3],
                          "dtype": "float32"},
                "output": {"name": proto.graph.output[0].name, "dtype": "float32"}}

    def convert(self, precision: str, scores: str) -> Converted:
        import onnx

        from ..artifact import set_onnx_metadata
        from ..export import onnx as onnx_export

        proto, recipe, met = self.proto(precision)
        if scores == "probabilities":
            recipe["softmax"] = onnx_export.append_softmax(proto)
        io = self.io(proto, recipe)

        def write(path: Path, meta: dict) -> None:
            set_onnx_metadata(proto, meta)
            onnx.save(proto, str(path))

        return Converted(recipe, io, write, bound_missed=not met)


class OnnxFormat(ArtifactFormat):
    name = "onnx"
    suffixes = (".onnx",)
    precisions = PRECISIONS
    default_scores = "logits"
    runtime_name = "onnxruntime"
    int8_recipes = "onnx"

    def read_metadata(self, path):
        from ..artifact import read_onnx_metadata

        return read_onnx_metadata(path)

    def open_runtime(self, path, threads=None, provider=None):
        from ..runtime.onnxrt import OnnxRuntime

        return OnnxRuntime(path, threads=threads, provider=provider)

    def converter(self, ctx: ExportContext) -> Converter:
        return OnnxConverter(ctx)


FORMAT = OnnxFormat()
