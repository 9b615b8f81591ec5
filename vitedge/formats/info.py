"""`vitedge info ARTIFACT`: the file's metadata and what its format plug-in adds, as a dict
(`--json`) or one line per topic."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import VitedgeError
from . import for_path, get, read_metadata


def info_for_artifact(path: str | os.PathLike) -> dict:
    """What `vitedge info` shows for an exported file."""
    path = Path(path)
    meta = read_metadata(path)
    fmt = for_path(path)
    out = {"file": str(path), "format": fmt.name, "size_bytes": fmt.deployed_bytes(path)}
    if meta is None:
        out["warning"] = "no vitedge metadata in this file (not exported by vitedge?)"
    else:
        for key, value in meta.items():  # the metadata's own "format" marker must not hide the file's
            out["metadata_format" if key == "format" else key] = value
    out.update(fmt.info_fields(path, meta))  # the format's own (TFLite: the official metadata)
    return out


def _format_rows(info: dict) -> list[tuple[str, str]]:
    """The rows the artifact's format adds (TFLite: the official metadata; ORT: its config)."""
    try:
        fmt = get(info.get("format", ""))
    except VitedgeError:
        return []
    return fmt.info_rows(info)


def _short_size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def render_artifact_info(info: dict) -> str:
    """`vitedge info ARTIFACT` as text: one line per topic (`--json` prints every field)."""
    rows: list[tuple[str, str]] = [("file", info.get("file", "?")), ("format", info.get("format", "?")),
                                   ("size", f"{_short_size(info.get('size_bytes', 0))} ({info.get('size_bytes', 0):,} bytes)")]
    if "schema" not in info:
        rows.append(("warning", info.get("warning", "no vitedge metadata")))
        rows.extend(_format_rows(info))
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
    if ver and ver.get("scores") == "probabilities":
        rows.append(("verification", f"top-1 agreement {100 * ver['top1_agreement']:.1f}% with Keras on "
                                     f"{ver['images']} images ({ver.get('runtime', '?')}), max |probability diff| "
                                     f"{ver['max_abs_diff']:.2e}, mean {ver['mean_abs_diff']:.2e}, max |log-prob diff| "
                                     f"{ver.get('max_abs_logprob_diff', float('nan')):.2e}"))
    elif ver:
        rows.append(("verification", f"top-1 agreement {100 * ver['top1_agreement']:.1f}% with Keras on "
                                     f"{ver['images']} images ({ver.get('runtime', '?')}), max |logit diff| "
                                     f"{ver['max_abs_diff']:.2e}, mean {ver['mean_abs_diff']:.2e}"))
    else:
        rows.append(("verification", "none"))
    rows.extend(_format_rows(info))
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
