"""ONNX models: `.onnx`, run by ONNX Runtime.

Metadata: the model's `metadata_props`, key "vitedge" (read through ONNX Runtime on the device,
written with the `onnx` package). Conversion: tf2onnx fp32 -> `vitedge.export.onnx_graph.simplify`
(the fused graph fp32 and int8 start from) -> fp16 (from tf2onnx's graph) / ONNX Runtime int8;
`--scores probabilities` appends a Softmax to the finished graph (`vitedge/export/onnx.py`).
"""

from __future__ import annotations

import mmap
from pathlib import Path

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

    def weights_paths(self, path: Path) -> list[Path]:
        """External-data files the model's initializers name (a model over 2 GB keeps its weights
        there); only files inside the model's folder count (the names come from the file)."""
        path = Path(path)
        try:
            names = external_data_locations(path)
        except (OSError, ValueError):
            return []
        folder = path.parent.resolve()
        out = []
        for name in names:
            target = (folder / name).resolve()
            if target.is_relative_to(folder) and target != path.resolve() and target not in out:
                out.append(target)
        return out



FORMAT = OnnxFormat()


# Field numbers of onnx.proto: ModelProto.graph, GraphProto.initializer, TensorProto.external_data
# (StringStringEntryProto: key, value) and TensorProto.data_location (EXTERNAL = 1).
MODEL_GRAPH, GRAPH_INITIALIZER, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 7, 5, 13, 14


def _fields(buf, start: int, end: int):
    """(field number, wire type, value) of one protobuf message; value: int, or (start, end) for bytes."""
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i, end)
        elif wire == 2:
            size, i = _varint(buf, i, end)
            if i + size > end:
                raise ValueError("truncated protobuf field")
            value, i = (i, i + size), i + size
        elif wire in (1, 5):
            value, i = None, i + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > end:
            raise ValueError("truncated protobuf field")
        yield number, wire, value


def _varint(buf, i: int, end: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError("bad protobuf varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7


def external_data_locations(path: Path) -> list[str]:
    """The `location` of every initializer stored as external data, read from the file's bytes
    (no `onnx` package: a core install on a workstation can copy such a model to a device)."""
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            return []
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            found = []
            for number, wire, graph in _fields(buf, 0, len(buf)):
                if number != MODEL_GRAPH or wire != 2:
                    continue
                for n2, w2, tensor in _fields(buf, *graph):
                    if n2 != GRAPH_INITIALIZER or w2 != 2:
                        continue
                    external, location = False, None
                    for n3, w3, value in _fields(buf, *tensor):
                        if n3 == TENSOR_DATA_LOCATION and w3 == 0:
                            external = value == 1
                        elif n3 == TENSOR_EXTERNAL_DATA and w3 == 2:
                            entry = {k: bytes(buf[v[0]:v[1]]) for k, w4, v in _fields(buf, *value) if w4 == 2}
                            if entry.get(1) == b"location" and 2 in entry:
                                location = entry[2].decode("utf-8", "replace")
                    if external and location and location not in found:
                        found.append(location)
            return found
