"""TFLite (LiteRT) flatbuffers: `.tflite`, run by the LiteRT interpreter (XNNPACK).

Metadata: vitedge.json in a stored zip appended to the flatbuffer, beside the official TFLite
Metadata (`labels.txt` and the TFLITE_METADATA buffer) that MediaPipe and the Task Library read
(`vitedge/artifact.py` reads, `vitedge/export/tflite_metadata.py` writes). Conversion:
Keras -> SavedModel (fixed batch, `--scores probabilities` adds the softmax) -> TFLiteConverter
(`vitedge/export/tflite.py`); int8 by the measured recipes (`vitedge/quant`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VitedgeError
from .base import ArtifactFormat

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")


class TfliteFormat(ArtifactFormat):
    name = "tflite"
    title = "TFLite"
    suffixes = (".tflite",)
    precisions = PRECISIONS
    default_scores = "probabilities"  # MediaPipe and the Task Library report the output as is
    runtime_name = "litert"
    int8_recipes = "tflite"
    int8_io = True
    convert_memory = 9.5  # calibration/quantization child, ViT-B: docs/export-memory.md
    max_file_bytes = 2**31 - 1  # FlatBuffer offsets are 32-bit
    convert_disk = 3.0
    runtime_backend = "vitedge.runtime.litert:LiteRTRuntime"
    converter_class = "vitedge.export.tflite:TfliteConverter"

    def read_metadata(self, path):
        from ..artifact import read_tflite_metadata

        return read_tflite_metadata(path)


    def info_fields(self, path: Path, meta: dict | None) -> dict:
        """The official TFLite Metadata too (a foreign file's, a MediaPipe model's say)."""
        from ..artifact import read_tflite_official_metadata

        out: dict = {}
        try:
            official = read_tflite_official_metadata(path)
        except VitedgeError as exc:
            official, out["tflite_metadata_error"] = None, str(exc)
        if meta is not None or official is not None:
            out["tflite_metadata"] = official_summary(official) if official else None
        return out

    def info_rows(self, info: dict) -> list[tuple[str, str]]:
        return official_rows(info)

    def export_warnings(self, spec) -> list[str]:
        """MediaPipe's ImageClassifier applies one mean/std to every channel."""
        pre = spec.preprocessing
        if len({float(m) for m in pre.mean}) > 1 or len({float(s) for s in pre.std}) > 1:
            return ["this model normalizes each channel differently; the TFLite metadata records it, which the "
                    "TFLite Task Library applies, but MediaPipe's ImageClassifier accepts one mean/std for all "
                    "channels"]
        return []



def official_summary(official: dict) -> dict:
    """The parts of the official TFLite Metadata that platform APIs act on."""
    sub = (official.get("subgraph_metadata") or [{}])[0]
    inp = (sub.get("input_tensor_metadata") or [{}])[0]
    out = (sub.get("output_tensor_metadata") or [{}])[0]
    norm = next((u for u in inp.get("process_units", []) if u["type"] == "NormalizationOptions"), {})
    content = inp.get("content") or {}
    return {"min_parser_version": official.get("min_parser_version"),
            "input": {"color_space": content.get("color_space"), "size": content.get("default_size"),
                      "normalization": {"mean": norm.get("mean"), "std": norm.get("std")} if norm else None},
            "output": {"name": out.get("name"), "description": out.get("description"),
                       "label_file": next((f["name"] for f in out.get("associated_files", [])
                                           if f["type"] == "TENSOR_AXIS_LABELS"), None)},
            "packed_files": official.get("packed_files")}


def official_rows(info: dict) -> list[tuple[str, str]]:
    if "tflite_metadata" not in info:
        return []
    tm = info["tflite_metadata"]
    if not tm:
        return [("official meta", "none (MediaPipe and the Task Library need it; re-export with vitedge)")]
    norm = (tm["input"] or {}).get("normalization") or {}
    files = ", ".join(f"{k} ({v})" for k, v in (tm.get("packed_files") or {}).items()) or "no files (no zip)"
    return [("official meta", f"TFLITE_METADATA (parser {tm.get('min_parser_version')}): "
                              f"{(tm['input'] or {}).get('color_space')} input, (pixel - {norm.get('mean')}) / "
                              f"{norm.get('std')}, output {tm['output'].get('name')} labelled by "
                              f"{tm['output'].get('label_file')}; packed: {files}")]


FORMAT = TfliteFormat()
