"""`vitedge info`: what a model or exported artifact is, read from the file itself."""

import json
from pathlib import Path

import click

from ..errors import VitedgeError
from ..modelfile import read_spec
from ..table import human_count

# Suffix -> function(path) -> dict; exported formats add themselves here.
INFO_READERS = {}


def keras_info(path: Path) -> dict:
    spec = read_spec(path)
    c = spec.config
    return {
        "file": str(path),
        "format": "keras",
        "variant": c.variant,
        "params": c.param_count(),
        "macs": c.macs(),
        "input_shape": [None, *c.image_size, c.channels],
        "layout": "NHWC",
        "patch_size": c.patch_size,
        "patch_grid": list(c.grid),
        "tokens": c.seq_len,
        "width": c.width,
        "depth": c.depth,
        "heads": c.heads,
        "head_dim": c.head_dim,
        "mlp_dim": c.mlp_dim,
        "num_classes": c.num_classes,
        "labels": spec.labels,
        "preprocessing": spec.preprocessing.to_dict(),
        "config": c.to_dict(),
        "info": spec.info,
        "size_bytes": path.stat().st_size,
    }


INFO_READERS[".keras"] = keras_info


def render(info: dict) -> str:
    lines = []
    for key, value in info.items():
        if key in ("config",):
            continue
        if key == "labels" and isinstance(value, list) and len(value) > 12:
            value = ", ".join(value[:12]) + f", ... ({len(value)} in all)"
        elif key in ("params", "macs") and isinstance(value, int):
            value = f"{value:,} ({human_count(value)})"
        elif isinstance(value, (list, dict)):
            value = json.dumps(value)
        lines.append(f"{key.replace('_', ' '):>16}: {value}")
    return "\n".join(lines)


@click.command()
@click.argument("file", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(file, as_json):
    """Describe a .keras model or an exported artifact (.tflite, .onnx, .ort, ...).

    \b
    Examples:
      vitedge info models/fmnist-vit.keras
      vitedge info out/model_int8.tflite --json
    """
    path = Path(file)
    if not path.exists():
        raise VitedgeError(f"{path}: no such file")
    if path.is_dir():
        raise VitedgeError(f"{path}: is a directory")
    _load_artifact_readers()
    reader = INFO_READERS.get(path.suffix.lower())
    if reader is None:
        raise VitedgeError(f"{path}: unknown file type {path.suffix or '(none)'}; expected one of {', '.join(sorted(INFO_READERS))}")
    data = reader(path)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif reader is not keras_info:
        from ..formats.info import render_artifact_info

        click.echo(render_artifact_info(data))
    else:
        click.echo(render(data))


def _load_artifact_readers():
    """Exported-artifact readers register here when their module exists (no TensorFlow needed)."""
    from ..formats import suffixes
    from ..formats.info import info_for_artifact

    for suffix in suffixes():
        INFO_READERS.setdefault(suffix, info_for_artifact)
