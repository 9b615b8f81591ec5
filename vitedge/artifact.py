"""Self-describing exported artifacts: the metadata every .tflite / .onnx file carries inside.

TFLite: a zip archive appended to the flatbuffer, holding `vitedge.json` (the LiteRT
interpreter ignores trailing bytes; Python's zipfile finds an archive at the end of a file).
ONNX: the model's `metadata_props`, key `vitedge` (read on the device through ONNX Runtime,
so the `onnx` package is not needed there).

Reading needs no TensorFlow. Writing ONNX metadata needs the `onnx` package (export extra).

The metadata (schema 1), one JSON object:
  schema: 1, format: "vitedge-artifact", vitedge_version: str, created: ISO-8601 UTC,
  model_format: "tflite" | "onnx" | "ort",
  precision: "fp32" | "fp16" | "dynamic" | "int8" | "int16x8",
  recipe: {...}                 how it was converted/quantized (converter, options, method)
  labels: [str, ...]            one per output class
  input: {name, shape: [N|null, H, W, C], layout: "NHWC", dtype: "float32"|"int8"|"uint8"}
  output: {name, scores: "logits" | "probabilities"}
  preprocessing: Preprocessing.to_dict()   (preprocess.py)
  source: {model_file, model_sha256, variant, config: ViTConfig.to_dict()}
  calibration: null | {fingerprint, count, seed, folder}
  verification: {images, top1_agreement, max_abs_diff, mean_abs_diff}   vs the Keras model
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

from .errors import VitedgeError

METADATA_KEY = "vitedge"  # ONNX metadata_props key
METADATA_ENTRY = "vitedge.json"  # entry in the zip appended to TFLite files
SCHEMA = 1
FORMATS = {".tflite": "tflite", ".onnx": "onnx", ".ort": "ort"}


def artifact_format(path: str | os.PathLike) -> str:
    """'tflite', 'onnx' or 'ort' from the file name; a clear error otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise VitedgeError(f"{path}: unknown artifact type {suffix or '(none)'}; expected .tflite, .onnx or .ort")
    return FORMATS[suffix]


# ---------------------------------------------------------------------------- TFLite ----
def _looks_like_tflite(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == b"TFL3"


def tflite_with_metadata(model_bytes: bytes, metadata: dict) -> bytes:
    """The flatbuffer followed by a zip holding vitedge.json."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(METADATA_ENTRY, json.dumps(metadata, indent=1, sort_keys=True))
    return model_bytes + buf.getvalue()


def read_tflite_metadata(path: str | os.PathLike) -> dict | None:
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not _looks_like_tflite(head):
        raise VitedgeError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        with zipfile.ZipFile(path) as zf:
            if METADATA_ENTRY not in zf.namelist():
                return None
            return json.loads(zf.read(METADATA_ENTRY))
    except (zipfile.BadZipFile, ValueError, KeyError):
        return None


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
        props = sess.get_modelmeta().custom_metadata_map
    raw = props.get(METADATA_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


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


# ---------------------------------------------------------------------------- common ----
def read_metadata(path: str | os.PathLike) -> dict | None:
    """The vitedge metadata inside an artifact, or None if it has none (a foreign file)."""
    path = Path(path)
    if not path.exists():
        raise VitedgeError(f"{path}: no such file")
    if path.is_dir():
        raise VitedgeError(f"{path}: is a directory, not a model file")
    if path.stat().st_size == 0:
        raise VitedgeError(f"{path}: empty file (0 bytes)")
    fmt = artifact_format(path)
    return read_tflite_metadata(path) if fmt == "tflite" else read_onnx_metadata(path)


def info_for_artifact(path: str | os.PathLike) -> dict:
    """What `vitedge info` shows for an exported file."""
    path = Path(path)
    meta = read_metadata(path)
    out = {"file": str(path), "format": artifact_format(path), "size_bytes": path.stat().st_size}
    if meta is None:
        out["warning"] = "no vitedge metadata in this file (not exported by vitedge?)"
        return out
    for key, value in meta.items():  # the metadata's own "format" marker must not hide the file's
        out["metadata_format" if key == "format" else key] = value
    return out


def _short_size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def render_artifact_info(info: dict) -> str:
    """`vitedge info ARTIFACT` as text: one line per topic (`--json` prints every field)."""
    rows: list[tuple[str, str]] = [("file", info.get("file", "?")), ("format", info.get("format", "?")),
                                   ("size", f"{_short_size(info.get('size_bytes', 0))} ({info.get('size_bytes', 0):,} bytes)")]
    if "schema" not in info:
        rows.append(("warning", info.get("warning", "no vitedge metadata")))
        return _rows_text(rows)
    rows.append(("precision", str(info.get("precision"))))
    inp, out = info.get("input") or {}, info.get("output") or {}
    shape = "x".join("N" if d is None else str(d) for d in inp.get("shape", []))
    rows.append(("input", f"{inp.get('name')} {shape} {inp.get('layout', 'NHWC')} {inp.get('dtype')}"))
    rows.append(("output", f"{out.get('name')} ({out.get('scores', 'logits')}, {out.get('dtype', 'float32')})"))
    labels = list(info.get("labels") or [])
    shown = ", ".join(labels[:12]) + (f", ... ({len(labels)} in all)" if len(labels) > 12 else f" ({len(labels)})")
    rows.append(("labels", shown))
    pre = info.get("preprocessing") or {}
    rows.append(("preprocessing", f"resize {pre.get('resize')} ({pre.get('interpolation')}), "
                                  f"x = (pixel/255 - {pre.get('mean')}) / {pre.get('std')}"))
    recipe = info.get("recipe") or {}
    rows.append(("recipe", ", ".join(f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}"
                                     for k, v in recipe.items())))
    ver = info.get("verification")
    if ver:
        rows.append(("verification", f"top-1 agreement {100 * ver['top1_agreement']:.1f}% with Keras on "
                                     f"{ver['images']} images ({ver.get('runtime', '?')}), max |logit diff| "
                                     f"{ver['max_abs_diff']:.2e}, mean {ver['mean_abs_diff']:.2e}"))
    else:
        rows.append(("verification", "none"))
    src = info.get("source") or {}
    origin = (f"{src.get('model_file')} (sha256 {src.get('model_sha256')})" if src.get("model_file")
              else f"random weights (seed {src.get('random_weights_seed')})")
    rows.append(("source", f"{origin}, variant {src.get('variant')}"))
    cal = info.get("calibration")
    rows.append(("calibration", f"{cal['count']} images from {cal.get('folder')}/, seed {cal.get('seed')}, "
                                f"fingerprint {cal['fingerprint']}" if cal else "none (no calibrated ranges)"))
    rows.append(("vitedge", f"{info.get('vitedge_version')}, created {info.get('created')}, schema {info.get('schema')}"))
    return _rows_text(rows)


def _rows_text(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"{key:>14}: {value}" for key, value in rows)
