"""ONNX models: `.onnx`, run by ONNX Runtime.

Metadata: the model's `metadata_props`, key "vitedge" (read through ONNX Runtime on the device,
written with the `onnx` package). Conversion: tf2onnx fp32 -> `vitedge.export.onnx_graph.simplify`
(the fused graph fp32 and int8 start from) -> fp16 (from tf2onnx's graph) / ONNX Runtime int8;
`--scores probabilities` appends a Softmax to the finished graph (`vitedge/export/onnx.py`).
"""

from __future__ import annotations

from .base import ArtifactFormat

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")


class OnnxFormat(ArtifactFormat):
    name = "onnx"
    title = "ONNX"
    suffixes = (".onnx",)
    precisions = PRECISIONS
    default_scores = "logits"
    runtime_name = "onnxruntime"
    int8_recipes = "onnx"
    convert_memory = 8.0  # tf2onnx child, measured on ViT-B: docs/export-memory.md
    max_file_bytes = 2**31 - 1  # one protobuf message
    convert_disk = 3.5
    runtime_backend = "vitedge.runtime.onnxrt:OnnxRuntime"
    converter_class = "vitedge.export.onnx:OnnxConverter"

    def read_metadata(self, path):
        from ..artifact import read_onnx_metadata

        return read_onnx_metadata(path)



FORMAT = OnnxFormat()
