"""ONNX Runtime Mobile's ORT format: `.ort`, run by ONNX Runtime, with its
`.required_operators.config` beside it (what a reduced ONNX Runtime build needs).

Made from the ONNX model of the same precision (the ONNX converter's, shared within one export
call) by ONNX Runtime's own tool (`vitedge/export/ort.py`). The format keeps `metadata_props`,
so the metadata is written and read as for .onnx files.
"""

from __future__ import annotations

from pathlib import Path

from .base import ArtifactFormat

PRECISIONS = ("fp32", "dynamic", "int8")  # from the ONNX file of the same precision
CONFIG_SUFFIX = ".required_operators.config"


def config_path(ort_path: Path) -> Path:
    """out/m_int8.ort -> out/m_int8.required_operators.config (the tool's own naming)."""
    ort_path = Path(ort_path)
    return ort_path.with_name(ort_path.stem + CONFIG_SUFFIX)


class OrtFormat(ArtifactFormat):
    name = "ort"
    title = "ORT"
    suffixes = (".ort",)
    precisions = PRECISIONS
    default_scores = "probabilities"  # ONNX Runtime Mobile apps report the output as is
    runtime_name = "onnxruntime"
    int8_recipes = "onnx"  # converted from the ONNX int8 files
    convert_memory = 8.0  # tf2onnx child, measured on ViT-B: docs/export-memory.md
    max_file_bytes = 2**31 - 1  # the ORT FlatBuffer
    convert_disk = 3.5
    converter_family = "onnx"
    runtime_backend = "vitedge.runtime.onnxrt:OnnxRuntime"
    converter_class = "vitedge.export.ort:OrtConverter"

    def read_metadata(self, path):
        from ..artifact import read_onnx_metadata

        return read_onnx_metadata(path)

    def companion_paths(self, path: Path) -> list[Path]:
        return [config_path(path)]

    def info_fields(self, path: Path, meta: dict | None) -> dict:
        if meta is None:
            return {}
        config = config_path(path)
        return {"ort_config": config.name if config.is_file() else None}

    def info_rows(self, info: dict) -> list[tuple[str, str]]:
        if "ort_config" not in info:
            return []
        return [("ort config", info["ort_config"] or "no .required_operators.config beside the file")]


FORMAT = OrtFormat()
