"""Self-describing exported artifacts: the metadata every .tflite / .onnx file carries inside.

TFLite: a zip archive appended to the flatbuffer, holding `vitedge.json` (the LiteRT
interpreter ignores trailing bytes; Python's zipfile finds an archive at the end of a file).
The same archive holds the official TFLite Metadata's associated files (`labels.txt`), every
entry stored uncompressed as MediaPipe requires; the official ModelMetadata flatbuffer itself
is a model buffer named TFLITE_METADATA (written by vitedge/export/tflite_metadata.py, read
back here by `read_tflite_official_metadata` with no dependency).
ONNX and ORT (ONNX Runtime's mobile format): the model's `metadata_props`, key `vitedge`
(read on the device through ONNX Runtime, so the `onnx` package is not needed there; the ORT
format keeps metadata_props).

Reading needs no TensorFlow. Writing ONNX metadata needs the `onnx` package (export extra).

The metadata (schema 1), one JSON object:
  schema: 1, format: "vitedge-artifact", vitedge_version: str, created: ISO-8601 UTC,
  model_format: "tflite" | "onnx" | "ort",
  precision: "fp32" | "fp16" | "dynamic" | "int8" | "int16x8",
  recipe: {...}                 how it was converted/quantized (converter, options, method)
  labels: [str, ...]            one per output class
  input: {name, shape: [N|null, H, W, C], layout: "NHWC", dtype: "float32"|"int8"|"uint8"}
  output: {name, scores: "logits" | "probabilities", dtype}   probabilities: a softmax ends the model
  preprocessing: Preprocessing.to_dict()   (preprocess.py)
  source: {model_file, model_sha256, variant, config: ViTConfig.to_dict()}
  calibration: null | {fingerprint, count, seed, folder}
  verification: {images, top1_agreement, max_abs_diff, mean_abs_diff}   vs the Keras model
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

from .errors import VitedgeError
from .limits import load_metadata_json, read_zip_entry

METADATA_KEY = "vitedge"  # ONNX metadata_props key
METADATA_ENTRY = "vitedge.json"  # entry in the zip appended to TFLite files
LABEL_FILE = "labels.txt"  # the official TFLite metadata's label file, in the same zip
TFLITE_METADATA_NAME = "TFLITE_METADATA"  # the model's metadata entry of the official ModelMetadata
# MAX_METADATA_BYTES (vitedge.limits): at export, all parts together; at load, each entry.
SCHEMA = 1


# ---------------------------------------------------------------------------- TFLite ----
def _looks_like_tflite(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == b"TFL3"


def tflite_with_metadata(model_bytes: bytes, metadata: dict, files: dict[str, bytes] | None = None) -> bytes:
    """The flatbuffer followed by one zip holding `files` (e.g. labels.txt) and vitedge.json.

    Entries are stored, not compressed (MediaPipe's reader refuses compressed ones), and their
    offsets count from the start of the file, as in tflite-support's MetadataPopulator (which
    appends with zipfile's "a" mode; "w" after the model bytes gives the same layout without
    first searching the flatbuffer for an end-of-archive record)."""
    buf = io.BytesIO()
    buf.write(model_bytes)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in (files or {}).items():
            zf.writestr(name, data)
        zf.writestr(METADATA_ENTRY, json.dumps(metadata, indent=1, sort_keys=True))
    return buf.getvalue()


def read_tflite_metadata(path: str | os.PathLike) -> dict | None:
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not _looks_like_tflite(head):
        raise VitedgeError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
    where = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            if METADATA_ENTRY not in zf.namelist():
                return None
            raw = read_zip_entry(zf, METADATA_ENTRY, where)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError, KeyError, ValueError):
        return None  # no readable appended archive: a foreign or damaged file, judged by its tensors
    return load_metadata_json(raw, where)


class _Table:
    """Read-only flatbuffer table access with `struct` only (no flatbuffers package needed)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self._vt, self._vt_size = vtable, struct.unpack_from("<H", buf, vtable)[0]

    @classmethod
    def root(cls, buf: bytes) -> _Table:
        return cls(buf, struct.unpack_from("<I", buf, 0)[0])

    def _field(self, slot: int) -> int:
        at = 4 + 2 * slot
        if at >= self._vt_size:
            return 0
        off = struct.unpack_from("<H", self.buf, self._vt + at)[0]
        return self.pos + off if off else 0

    def scalar(self, slot: int, fmt: str, default=0):
        at = self._field(slot)
        return struct.unpack_from("<" + fmt, self.buf, at)[0] if at else default

    def _target(self, slot: int) -> int:
        at = self._field(slot)
        return at + struct.unpack_from("<I", self.buf, at)[0] if at else 0

    def string(self, slot: int) -> str | None:
        at = self._target(slot)
        if not at:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        return self.buf[at + 4:at + 4 + n].decode("utf-8", "replace")

    def bytes_(self, slot: int) -> bytes | None:
        at = self._target(slot)
        if not at:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        return self.buf[at + 4:at + 4 + n]

    def floats(self, slot: int) -> list[float] | None:
        at = self._target(slot)
        if not at:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        return list(struct.unpack_from(f"<{n}f", self.buf, at + 4))

    def table(self, slot: int) -> _Table | None:
        at = self._target(slot)
        return _Table(self.buf, at) if at else None

    def tables(self, slot: int) -> list[_Table]:
        at = self._target(slot)
        if not at:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        items = []
        for i in range(n):
            elem = at + 4 + 4 * i
            items.append(_Table(self.buf, elem + struct.unpack_from("<I", self.buf, elem)[0]))
        return items


_FILE_TYPES = {0: "UNKNOWN", 1: "DESCRIPTIONS", 2: "TENSOR_AXIS_LABELS", 3: "TENSOR_VALUE_LABELS",
               4: "TENSOR_AXIS_SCORE_CALIBRATION", 5: "VOCABULARY", 6: "SCANN_INDEX_FILE"}
_CONTENT_TYPES = {0: None, 1: "FeatureProperties", 2: "ImageProperties", 3: "BoundingBoxProperties",
                  4: "AudioProperties"}
_UNIT_TYPES = {1: "NormalizationOptions", 2: "ScoreCalibrationOptions", 3: "ScoreThresholdingOptions",
               4: "BertTokenizerOptions", 5: "SentencePieceTokenizerOptions", 6: "RegexTokenizerOptions"}
_COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}


def _files(tables: list[_Table]) -> list[dict]:
    return [{"name": t.string(0), "description": t.string(1), "type": _FILE_TYPES.get(t.scalar(2, "b"), "?"),
             "locale": t.string(3)} for t in tables]


def _tensor_metadata(t: _Table) -> dict:
    out: dict = {"name": t.string(0), "description": t.string(1)}
    content = t.table(3)
    if content is not None:
        kind = _CONTENT_TYPES.get(content.scalar(0, "B"), "?")
        out["content"] = {"type": kind}
        props = content.table(1)
        if kind == "ImageProperties" and props is not None:
            out["content"]["color_space"] = _COLOR_SPACES.get(props.scalar(0, "b"), "?")
            size = props.table(1)
            if size is not None:
                out["content"]["default_size"] = {"width": size.scalar(0, "I"), "height": size.scalar(1, "I")}
    units = []
    for unit in t.tables(4):
        kind = _UNIT_TYPES.get(unit.scalar(0, "B"), "?")
        options = unit.table(1)
        entry = {"type": kind}
        if kind == "NormalizationOptions" and options is not None:
            entry.update(mean=options.floats(0), std=options.floats(1))
        units.append(entry)
    out["process_units"] = units
    stats = t.table(5)
    if stats is not None:
        out["stats"] = {"max": stats.floats(0), "min": stats.floats(1)}
    out["associated_files"] = _files(t.tables(6))
    return out


def parse_model_metadata(buf: bytes) -> dict:
    """A ModelMetadata flatbuffer ("M001") as a dict (the fields vitedge writes and a few more)."""
    if len(buf) < 8 or buf[4:8] != b"M001":
        raise VitedgeError("TFLite metadata buffer without the M001 identifier")
    root = _Table.root(buf)
    return {
        "name": root.string(0), "description": root.string(1), "version": root.string(2),
        "subgraph_metadata": [{"name": sg.string(0), "description": sg.string(1),
                               "input_tensor_metadata": [_tensor_metadata(t) for t in sg.tables(2)],
                               "output_tensor_metadata": [_tensor_metadata(t) for t in sg.tables(3)],
                               "associated_files": _files(sg.tables(4))} for sg in root.tables(3)],
        "author": root.string(4), "license": root.string(5), "associated_files": _files(root.tables(6)),
        "min_parser_version": root.string(7),
    }


def read_tflite_official_metadata_bytes(data: bytes) -> dict | None:
    """The official TFLite Metadata (the TFLITE_METADATA buffer) of a .tflite file's bytes,
    parsed, or None if it has none. tflite schema: Model.buffers = slot 4, Model.metadata =
    slot 6; Metadata.name = 0, .buffer = 1; Buffer.data = 0 (.offset/.size = 1/2 past 2 GB)."""
    if not _looks_like_tflite(data[:8]):
        raise VitedgeError("not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = _Table.root(data)
        for entry in model.tables(6):
            if entry.string(0) != TFLITE_METADATA_NAME:
                continue
            buffers = model.tables(4)
            index = entry.scalar(1, "I")
            if index >= len(buffers):
                raise VitedgeError("TFLITE_METADATA refers to a missing buffer")
            raw = buffers[index].bytes_(0)
            if not raw:
                offset, size = buffers[index].scalar(1, "Q"), buffers[index].scalar(2, "Q")
                raw = data[offset:offset + size] if offset else b""
            return parse_model_metadata(bytes(raw))
    except (struct.error, IndexError, UnicodeDecodeError):
        raise VitedgeError("the TFLite flatbuffer or its TFLITE_METADATA is damaged") from None
    return None


def read_tflite_official_metadata(path: str | os.PathLike) -> dict | None:
    """`read_tflite_official_metadata_bytes` of a file, plus the packed files' names."""
    path = Path(path)
    data = path.read_bytes()
    try:
        meta = read_tflite_official_metadata_bytes(data)
    except VitedgeError as exc:
        raise VitedgeError(f"{path}: {exc}") from None
    if meta is not None:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                meta["packed_files"] = {i.filename: ("stored" if i.compress_type == zipfile.ZIP_STORED else "compressed")
                                        for i in zf.infolist()}
        except zipfile.BadZipFile:
            meta["packed_files"] = {}
    return meta


# ------------------------------------------------------------------------------ ONNX ----
def read_onnx_metadata(path: str | os.PathLike) -> dict | None:
    """metadata_props['vitedge'] of an ONNX/ORT file, via ONNX Runtime (device-safe)."""
    path = Path(path)
    props = _onnx_props_via_onnx(path)
    if props is None:
        import onnxruntime as ort

        try:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VitedgeError(f"{path}: ONNX Runtime cannot load it ({first[:200]})") from None
        try:
            props = sess.get_modelmeta().custom_metadata_map
        except UnicodeDecodeError:
            raise VitedgeError(f"{path}: its metadata is not valid UTF-8 (a damaged file)") from None
    raw = props.get(METADATA_KEY)
    if raw is None:
        return None
    return load_metadata_json(raw, str(path))


def _onnx_props_via_onnx(path: Path) -> dict | None:
    """Cheaper than a session when the onnx package is present (workstations)."""
    if path.suffix.lower() != ".onnx":
        return None
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        raise VitedgeError(f"{path}: not a readable ONNX model") from None
    return {p.key: p.value for p in model.metadata_props}


def set_onnx_metadata(model, metadata: dict) -> None:
    """Put `metadata` into an onnx.ModelProto's metadata_props (replacing an older entry)."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata, sort_keys=True))
