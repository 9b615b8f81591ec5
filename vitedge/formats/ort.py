"""ONNX Runtime Mobile's ORT format: `.ort`, run by ONNX Runtime, with its
`.required_operators.config` beside it (what a reduced ONNX Runtime build needs).

Made from the ONNX model of the same precision (the ONNX converter's, shared within one export
call) by ONNX Runtime's own tool (`vitedge/export/ort.py`). The format keeps `metadata_props`,
so the metadata is written and read as for .onnx files.
"""

from __future__ import annotations

from pathlib import Path

from .base import ArtifactFormat, Converted, Converter, ExportContext

PRECISIONS = ("fp32", "dynamic", "int8")  # from the ONNX file of the same precision
CONFIG_SUFFIX = ".required_operators.config"


def config_path(ort_path: Path) -> Path:
    """out/m_int8.ort -> out/m_int8.required_operators.config (the tool's own naming)."""
    ort_path = Path(ort_path)
    return ort_path.with_name(ort_path.stem + CONFIG_SUFFIX)


class OrtConverter(Converter):
    """ONNX models of the shared ONNX converter -> .ort files, with their operator configs."""

    def convert(self, precision: str, scores: str) -> Converted:
        import onnx

        from ..artifact import set_onnx_metadata
        from ..export import onnx as onnx_export
        from ..export import ort as ort_export

        ctx = self.ctx
        onnx_converter = ctx.converter("onnx")
        proto, recipe, met = onnx_converter.proto(precision)
        if scores == "probabilities":
            recipe["softmax"] = onnx_export.append_softmax(proto)
        recipe.update(ort_export.recipe(ctx.target))
        io = onnx_converter.io(proto, recipe)
        done: dict[str, str] = {}

        def write(path: Path, meta: dict) -> None:
            set_onnx_metadata(proto, meta)  # the ORT format keeps metadata_props (vitedge info reads them)
            folder = ctx.workdir / f"ort-{precision}"
            folder.mkdir(exist_ok=True)
            source = folder / f"model_{precision}.onnx"
            onnx.save(proto, str(source))
            ort_file, config = ort_export.convert(source, folder / "converted", ctx.target)
            path.write_bytes(ort_file.read_bytes())
            done["config"] = config.read_text()

        def companions(final: Path) -> list[bytes]:
            return [ort_export.config_text(done["config"], final).encode()]

        return Converted(recipe, io, write, companions, bound_missed=not met)


class OrtFormat(ArtifactFormat):
    name = "ort"
    suffixes = (".ort",)
    precisions = PRECISIONS
    default_scores = "probabilities"  # ONNX Runtime Mobile apps report the output as is
    runtime_name = "onnxruntime"
    int8_recipes = "onnx"  # converted from the ONNX int8 files

    def read_metadata(self, path):
        from ..artifact import read_onnx_metadata

        return read_onnx_metadata(path)

    def companion_paths(self, path: Path) -> list[Path]:
        return [config_path(path)]

    def open_runtime(self, path, threads=None, provider=None):
        from ..runtime.onnxrt import OnnxRuntime

        return OnnxRuntime(path, threads=threads, provider=provider)

    def info_fields(self, path: Path, meta: dict | None) -> dict:
        if meta is None:
            return {}
        config = config_path(path)
        return {"ort_config": config.name if config.is_file() else None}

    def info_rows(self, info: dict) -> list[tuple[str, str]]:
        if "ort_config" not in info:
            return []
        return [("ort config", info["ort_config"] or "no .required_operators.config beside the file")]

    def converter(self, ctx: ExportContext) -> Converter:
        return OrtConverter(ctx)


FORMAT = OrtFormat()
