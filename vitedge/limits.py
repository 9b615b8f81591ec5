"""Every bound vitedge puts on what strangers' files and users' options may ask for, in one place.

Models, metadata and checkpoints come from anywhere; a declared size is checked against these
limits *before* anything of that size is allocated, so a hostile or damaged file ends in one
clear line (a VitedgeError, exit 1) instead of an 18 GB allocation. Options a runtime would
misbehave on (LiteRT segfaults on 100000 threads) have ranges here too; the commands use them
as Click ranges, so out of range is a usage error (exit 2) that states the range.
docs/hostile-input.md lists them with the reasons. Standard library only (device path).
"""

from __future__ import annotations

import json
import re
import zipfile

from .errors import VitedgeError

# --- what a model and its metadata may declare -----------------------------------------------
MAX_INPUT_SIDE = 8192  # input height and width, each (a ViT-B/16 at 384 is 384)
MAX_MODEL_BATCH = 1024  # a fixed batch dimension in the model (predict pads chunks to it)
MAX_CLASSES = 100_000  # output classes and labels (ImageNet-21k has 21,843)
MAX_LABEL_CHARS = 256  # one label
MAX_TENSOR_BYTES = 4 << 30  # all tensors a model declares, weights and activations (ViT-L/16 fp32: ~1.3 GB)
MAX_METADATA_BYTES = 1_000_000  # the metadata of one artifact (each entry: vitedge.json, labels.txt)
MAX_JSON_DEPTH = 32  # nesting of metadata JSON (vitedge writes 4 levels)
MAX_KERAS_CONFIG_BYTES = 16_000_000  # config.json of a .keras file (a ViT-L/16's is ~0.2 MB)
MAX_KERAS_CONFIG_DEPTH = 64  # its nesting (a vitedge ViT's is ~12)

# --- options -----------------------------------------------------------------------------------
MAX_THREADS = 256  # --threads (LiteRT crashes far above this; no edge board has more cores)
MAX_BATCH = 1024  # --batch (images per runtime call)
MAX_TOP_K = 1000  # --top-k
MAX_RUNS = 1_000_000  # --runs, --warmup of bench
MAX_ROUNDS = 1000  # --rounds of bench
MAX_CALIB_SIZE = 100_000  # --calib-size of export


def check_input_size(h, w, where: str) -> None:
    """Refuse an input size no real model has (before preprocessing allocates H*W*3 floats)."""
    for name, value in (("height", h), ("width", w)):
        if value is not None and not 1 <= value <= MAX_INPUT_SIDE:
            raise VitedgeError(f"{where}: input {name} {value} is outside 1..{MAX_INPUT_SIDE}; "
                               "vitedge does not run models that large")


def check_input_shape(shape, where: str) -> None:
    """A declared input tensor shape (batch first; None or negative = dynamic), checked before a
    runtime allocates it: batch <= MAX_MODEL_BATCH, every other dimension <= MAX_INPUT_SIDE."""
    dims = [None if d is None or d < 0 else int(d) for d in shape]
    if dims:
        check_batch_dim(dims[0], where)
    for d in dims[1:]:
        if d is not None and d > MAX_INPUT_SIDE:
            raise VitedgeError(f"{where}: the model's input has a dimension of {d}, outside 1..{MAX_INPUT_SIDE}; "
                               "vitedge does not run models that large")


def check_tensor_bytes(total: int, where: str) -> None:
    """The bytes of every tensor a model declares (a runtime allocates them all up front)."""
    if total > MAX_TENSOR_BYTES:
        raise VitedgeError(f"{where}: the model's tensors need {total / (1 << 30):.1f} GiB, more than "
                           f"{MAX_TENSOR_BYTES >> 30} GiB; vitedge does not run models that large")


def check_batch_dim(n, where: str) -> None:
    if n is not None and not 1 <= n <= MAX_MODEL_BATCH:
        raise VitedgeError(f"{where}: the model's fixed batch size {n} is outside 1..{MAX_MODEL_BATCH}")


def check_classes(n, where: str) -> None:
    if n is not None and not 1 <= n <= MAX_CLASSES:
        raise VitedgeError(f"{where}: the model declares {n} output classes, outside 1..{MAX_CLASSES}")


def check_labels(labels, where: str) -> list[str]:
    """A metadata label list: a list of at most MAX_CLASSES strings of at most MAX_LABEL_CHARS."""
    if labels is None:
        return []
    if not isinstance(labels, list):
        raise VitedgeError(f"{where}: its metadata's labels are a {type(labels).__name__}, not a list")
    if len(labels) > MAX_CLASSES:
        raise VitedgeError(f"{where}: its metadata has {len(labels):,} labels, more than {MAX_CLASSES:,}")
    for label in labels:
        if not isinstance(label, (str, int, float)) or isinstance(label, bool):
            raise VitedgeError(f"{where}: its metadata's labels hold a {type(label).__name__}, not text")
        if len(str(label)) > MAX_LABEL_CHARS:
            raise VitedgeError(f"{where}: a label in its metadata is longer than {MAX_LABEL_CHARS} characters")
    return [str(x) for x in labels]


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays/objects in JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b"", raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def load_bounded_json(raw: bytes | str, where: str, what: str, max_bytes: int, max_depth: int):
    """Parse JSON from a stranger's file after checking its size and nesting (a deep document
    would exhaust the parser's recursion); `what` names it in the error ("config.json")."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise VitedgeError(f"{where}: {what} is {len(raw):,} bytes, more than {max_bytes:,}")
    if json_depth(raw) > max_depth:
        raise VitedgeError(f"{where}: {what} nests deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise VitedgeError(f"{where}: {what} is not valid JSON") from None


def load_metadata_json(raw: bytes | str, where: str) -> dict:
    """Parse metadata JSON under the byte and depth limits; it must be an object."""
    meta = load_bounded_json(raw, where, "its vitedge metadata", MAX_METADATA_BYTES, MAX_JSON_DEPTH)
    if not isinstance(meta, dict):
        raise VitedgeError(f"{where}: its vitedge metadata is not a JSON object")
    return meta


def read_zip_entry(zf: zipfile.ZipFile, name: str, where: str, limit: int = MAX_METADATA_BYTES) -> bytes:
    """One zip entry's bytes, refused when its declared size is over `limit`; never reads more
    than `limit` + 1 bytes whatever the entry really inflates to (a zip bomb or a lying header)."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise VitedgeError(f"{where}: {name} inside it declares {info.file_size:,} bytes, more than {limit:,}")
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise VitedgeError(f"{where}: {name} inside it is larger than {limit:,} bytes")
    return data
