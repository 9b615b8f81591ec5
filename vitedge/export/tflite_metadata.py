"""The official TFLite Metadata, written without tflite-support (export side).

What MediaPipe Tasks (ImageClassifier on Android, iOS, Web, Python), the TFLite Task Library
and Android Studio's ML binding read from a .tflite file:

* a `ModelMetadata` flatbuffer (tflite-support's metadata_schema.fbs, file identifier "M001")
  stored in one of the model's buffers, named "TFLITE_METADATA" in the model's `metadata`
  vector (MediaPipe: tasks/cc/metadata/metadata_extractor.cc);
* the associated files it names (here `labels.txt`, one label per line) in a zip archive
  appended to the flatbuffer, every entry stored uncompressed (MediaPipe's zip reader refuses
  compressed entries: "Expected uncompressed zip archive").

vitedge's own `vitedge.json` (vitedge/artifact.py) is one more entry of that same zip, listed
in the metadata as a DESCRIPTIONS file, so there is one archive and both readers find theirs.

tflite-support and mediapipe pin an older protobuf than TensorFlow's, so this module builds
the few tables it needs with the plain `flatbuffers` package (the `export` extra). Field slot
numbers follow the declaration order in metadata_schema.fbs (schema 1.5, same for the fields
used here since 1.0.0). The model flatbuffer is re-serialized with the TFLite schema's generated
code (LiteRT's `ai_edge_litert.schema_py_generated`, else TensorFlow's), as tflite-support's
MetadataPopulator does, with every buffer 16-byte aligned like the converter writes them.
"""

from __future__ import annotations

import json

from ..artifact import (
    LABEL_FILE,
    METADATA_ENTRY,
    TFLITE_METADATA_NAME,
    read_tflite_official_metadata_bytes,
    tflite_with_metadata,
)
from ..errors import VitedgeError
from ..limits import MAX_METADATA_BYTES
from ..modelfile import validate_labels

FILE_IDENTIFIER = b"M001"
# The smallest metadata parser that reads every field written here (MediaPipe's
# metadata_version.cc: nothing used is newer than 1.0.0).
MIN_PARSER_VERSION = "1.0.0"

# Enum values of metadata_schema.fbs.
_FILE_DESCRIPTIONS, _FILE_TENSOR_AXIS_LABELS = 1, 2
_COLOR_RGB = 1
_CONTENT_FEATURE, _CONTENT_IMAGE = 1, 2
_UNIT_NORMALIZATION = 1


# ------------------------------------------------------------------ the metadata ----
def label_file_bytes(labels: list[str]) -> bytes:
    """labels.txt: one label per line (what MediaPipe's label map reader splits on)."""
    return ("\n".join(labels) + "\n").encode("utf-8")


def normalization(preprocessing: dict) -> tuple[list[float], list[float]]:
    """vitedge's x = (pixel/255 - mean) / std as the schema's (pixel - mean') / std', pixels 0..255."""
    mean = [float(m) * 255.0 for m in preprocessing.get("mean", (0.5, 0.5, 0.5))]
    std = [float(s) * 255.0 for s in preprocessing.get("std", (0.5, 0.5, 0.5))]
    if len(set(mean)) == 1 and len(set(std)) == 1:
        return mean[:1], std[:1]  # one value: every reader (MediaPipe too) applies it to all channels
    return mean, std


def build_model_metadata(meta: dict) -> bytes:
    """The ModelMetadata flatbuffer ("M001") for a vitedge artifact's metadata dict."""
    import flatbuffers

    labels = list(meta["labels"])
    inp, out = meta["input"], meta.get("output") or {}
    pre = meta.get("preprocessing") or {}
    probabilities = out.get("scores") == "probabilities"
    _, h, w, _ = inp["shape"]
    mean, std = normalization(pre)
    low = [(0.0 - m) / s for m, s in zip(mean, std, strict=True)]
    high = [(255.0 - m) / s for m, s in zip(mean, std, strict=True)]
    src = meta.get("source") or {}

    b = flatbuffers.Builder(1024)
    string = b.CreateString

    def floats(values):
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(float(v))
        return b.EndVector()

    def offsets(items):
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    def table(fields):
        """fields: (slot, kind, value) with kind 'off' | 'u8' | 'u32'; children already built."""
        b.StartObject(max(slot for slot, _, _ in fields) + 1 if fields else 0)
        for slot, kind, value in fields:
            if kind == "off":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "u8":
                b.PrependUint8Slot(slot, value, 0)
            else:
                b.PrependUint32Slot(slot, value, 0)
        return b.EndObject()

    def associated_file(name, description, kind):
        n, d = string(name), string(description)
        return table([(0, "off", n), (1, "off", d), (2, "u8", kind)])

    def stats(lo, hi):
        mx, mn = floats(hi), floats(lo)
        return table([(0, "off", mx), (1, "off", mn)])

    # Input: an RGB image, its size, its normalization, the value range that gives.
    size = table([(0, "u32", int(w)), (1, "u32", int(h))])
    image_props = table([(0, "u8", _COLOR_RGB), (1, "off", size)])
    in_content = table([(0, "u8", _CONTENT_IMAGE), (1, "off", image_props)])
    norm_mean, norm_std = floats(mean), floats(std)
    norm = table([(0, "off", norm_mean), (1, "off", norm_std)])
    unit = table([(0, "u8", _UNIT_NORMALIZATION), (1, "off", norm)])
    units = offsets([unit])
    in_stats = stats(low, high)
    in_name = string(str(inp.get("name") or "image"))
    in_desc = string(f"RGB image, {h}x{w} (height x width), NHWC; pixels 0..255 normalized as "
                     f"(pixel - mean) / std per channel. Resize: {pre.get('resize', 'stretch')} "
                     f"({pre.get('interpolation', 'bilinear')}).")
    in_tensor = table([(0, "off", in_name), (1, "off", in_desc), (3, "off", in_content),
                       (4, "off", units), (5, "off", in_stats)])

    # Output: one score per label; labels.txt annotates its last axis.
    label_file = associated_file(LABEL_FILE, "Labels of the output classes, one per line, in order.",
                                 _FILE_TENSOR_AXIS_LABELS)
    out_files = offsets([label_file])
    feature = table([])
    out_content = table([(0, "u8", _CONTENT_FEATURE), (1, "off", feature)])
    out_stats = stats([0.0], [1.0]) if probabilities else None
    out_name = string("probabilities" if probabilities else "logits")
    out_desc = string(f"Probabilities of the {len(labels)} labels (softmax inside the model; they sum to 1)."
                      if probabilities else
                      f"Logits (unnormalized scores) of the {len(labels)} labels; "
                      "apply softmax for probabilities.")
    out_fields = [(0, "off", out_name), (1, "off", out_desc), (3, "off", out_content), (6, "off", out_files)]
    if out_stats is not None:
        out_fields.append((5, "off", out_stats))
    out_tensor = table(out_fields)

    inputs, outputs = offsets([in_tensor]), offsets([out_tensor])
    sub_name = string("image_classifier")
    subgraph = table([(0, "off", sub_name), (2, "off", inputs), (3, "off", outputs)])
    subgraphs = offsets([subgraph])

    vitedge_file = associated_file(METADATA_ENTRY, "vitedge's own metadata (JSON): precision, recipe, "
                                   "source model, calibration, verification.", _FILE_DESCRIPTIONS)
    model_files = offsets([vitedge_file])
    name = string(f"{src.get('variant') or 'vit'} image classifier ({meta.get('precision')})")
    desc = string(f"Vision Transformer image classifier exported by vitedge {meta.get('vitedge_version')}: "
                  f"{len(labels)} classes, {h}x{w} RGB input, {'probabilities' if probabilities else 'logits'} out.")
    version = string(str(src.get("model_sha256") or f"random weights, seed {src.get('random_weights_seed')}"))
    author = string("vitedge")
    min_version = string(MIN_PARSER_VERSION)
    root = table([(0, "off", name), (1, "off", desc), (2, "off", version), (3, "off", subgraphs),
                  (4, "off", author), (6, "off", model_files), (7, "off", min_version)])
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


# ---------------------------------------------------------- into the model file ----
def tflite_schema():
    """The TFLite flatbuffer schema's generated code: LiteRT's copy (no TensorFlow import, which
    costs an export's parent process ~0.5 GB), else TensorFlow's."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def insert_metadata_buffer(model_bytes: bytes, metadata_buffer: bytes) -> bytes:
    """The model flatbuffer with `metadata_buffer` as a new buffer named TFLITE_METADATA
    (replacing an older one), re-serialized; the converter's other metadata entries kept."""
    import numpy as np

    schema = tflite_schema()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    except Exception as exc:  # a flatbuffer the schema cannot walk
        raise VitedgeError(f"cannot parse the TFLite flatbuffer to add its metadata ({exc})") from None
    if any(buf.offset for buf in (model.buffers or [])):
        raise VitedgeError("the TFLite file keeps its buffers outside the flatbuffer (> 2 GB); "
                           "adding TFLite metadata to it is not supported")
    entry_buffer = _AlignedBuffer()
    entry_buffer.data = np.frombuffer(metadata_buffer, dtype=np.uint8)
    model.buffers = [_AlignedBuffer.of(buf) for buf in (model.buffers or [])]
    model.metadata = list(model.metadata or [])
    for entry in model.metadata:
        if entry.name in (TFLITE_METADATA_NAME, TFLITE_METADATA_NAME.encode()):
            model.buffers[entry.buffer] = entry_buffer
            break
    else:
        entry = schema.MetadataT()
        entry.name = TFLITE_METADATA_NAME
        entry.buffer = len(model.buffers)
        model.buffers.append(entry_buffer)
        model.metadata.append(entry)

    import flatbuffers

    builder = flatbuffers.Builder(len(model_bytes) + len(metadata_buffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class _AlignedBuffer:
    """A tflite Buffer whose data starts on a 16-byte boundary (schema.fbs: force_align 16;
    the generated Python packs with alignment 1)."""

    ALIGN = 16

    def __init__(self):
        self.data = None
        self.offset = 0
        self.size = 0

    @classmethod
    def of(cls, buf) -> _AlignedBuffer:
        new = cls()
        new.data, new.offset, new.size = buf.data, buf.offset, buf.size
        return new

    def Pack(self, builder):  # noqa: N802 - the generated code's name
        schema = tflite_schema()

        data = None
        if self.data is not None:
            raw = self.data.tobytes() if hasattr(self.data, "tobytes") else bytes(self.data)
            builder.StartVector(1, len(raw), self.ALIGN)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def check_labels(labels: list[str], num_classes: int, origin: str | None = None) -> list[str]:
    """The labels as written into labels.txt: one non-empty single-line unique name per class."""
    try:
        return validate_labels(list(labels), num_classes)
    except VitedgeError as exc:
        raise VitedgeError(f"{origin}: {exc}" if origin else str(exc)) from None


def check_metadata_size(labels: list[str]) -> None:
    """Before any work: labels that alone would push an artifact's metadata past the limit
    (they go into labels.txt and vitedge.json; 16 KB are left for the rest)."""
    need = len(label_file_bytes(labels)) + len(json.dumps(labels, indent=1)) + 16_000
    if need > MAX_METADATA_BYTES:
        raise VitedgeError(f"the labels would make the metadata about {need:,} bytes (labels.txt and vitedge.json); "
                           f"the limit is {MAX_METADATA_BYTES:,}: shorten the labels")


def with_tflite_metadata(model_bytes: bytes, meta: dict) -> bytes:
    """The .tflite file: the model with TFLITE_METADATA inside, then one stored zip holding
    labels.txt and vitedge.json. Too large metadata (> MAX_METADATA_BYTES) is an error."""
    labels = check_labels(meta["labels"], len(meta["labels"]))
    official = build_model_metadata(meta)
    files = {LABEL_FILE: label_file_bytes(labels)}
    total = len(official) + len(files[LABEL_FILE]) + len(json.dumps(meta, indent=1, sort_keys=True))
    if total > MAX_METADATA_BYTES:
        raise VitedgeError(f"the metadata would take {total:,} bytes (labels, preprocessing, vitedge.json); "
                           f"the limit is {MAX_METADATA_BYTES:,}: shorten the labels")
    out = tflite_with_metadata(insert_metadata_buffer(model_bytes, official), meta, files)
    if read_tflite_official_metadata_bytes(out) is None:  # pragma: no cover - our own reader disagrees
        raise VitedgeError("the TFLite metadata written could not be read back")
    return out
