"""Saved vitedge models (`.keras`): the Keras file plus a `vitedge.json` entry inside the zip.

`vitedge.json` carries the architecture config, the class labels and the preprocessing, so the
labels travel with the model and `read_spec` works without TensorFlow. Keras' loader ignores
the extra zip entry.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import VitedgeError
from .limits import (
    MAX_KERAS_CONFIG_BYTES,
    MAX_KERAS_CONFIG_DEPTH,
    load_bounded_json,
    load_metadata_json,
    read_zip_entry,
)
from .preprocess import Preprocessing
from .variants import ViTConfig

SPEC_ENTRY = "vitedge.json"
PACKAGE = "vitedge"  # the package vitedge's Keras layers are registered under (vit.PACKAGE)


@dataclass
class ModelSpec:
    """What a vitedge model is, besides its weights."""

    config: ViTConfig
    labels: list[str]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    info: dict = field(default_factory=dict)  # provenance: training run, import source, ...

    def __post_init__(self) -> None:
        self.labels = validate_labels(self.labels, self.config.num_classes)

    def to_dict(self) -> dict:
        return {
            "format": "vitedge-model",
            "vitedge_version": __version__,
            "config": self.config.to_dict(),
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict(),
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        return cls(
            config=ViTConfig.from_dict(data["config"]),
            labels=list(data.get("labels") or []),
            preprocessing=Preprocessing.from_dict(data.get("preprocessing")),
            info=dict(data.get("info") or {}),
        )


def default_labels(n: int) -> list[str]:
    return [f"class_{i}" for i in range(n)]


def validate_labels(labels: list[str] | None, num_classes: int) -> list[str]:
    """Labels must be one non-empty, single-line, unique name per class."""
    if not labels:
        return default_labels(num_classes)
    labels = [str(x) for x in labels]
    if len(labels) != num_classes:
        raise VitedgeError(f"{len(labels)} labels given for a head of {num_classes} classes")
    for i, name in enumerate(labels):
        if not name.strip():
            raise VitedgeError(f"label {i} is empty")
        if "\n" in name or "\r" in name or len(name.splitlines()) > 1:  # also \x85, \u2028, ...
            raise VitedgeError(f"label {i} ({name!r}) contains a newline")
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise VitedgeError(f"labels are not unique: {', '.join(dupes)}")
    return labels


def read_labels_file(path: str | os.PathLike) -> list[str]:
    """One label per line; blank trailing lines ignored."""
    path = Path(path)
    if not path.is_file():
        raise VitedgeError(f"{path}: labels file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise VitedgeError(f"{path}: labels file is not UTF-8 text") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def _check_keras_file(path: Path) -> None:
    if not path.exists():
        raise VitedgeError(f"{path}: no such file")
    if path.is_dir():
        raise VitedgeError(f"{path}: is a directory, not a .keras file")
    if not zipfile.is_zipfile(path):
        raise VitedgeError(f"{path}: not a Keras model (.keras files are zip archives)")
    with zipfile.ZipFile(path) as zf:
        if "config.json" not in zf.namelist():
            raise VitedgeError(f"{path}: zip archive without config.json, not a Keras model")


def read_spec(path: str | os.PathLike) -> ModelSpec:
    """The spec of a vitedge `.keras` file, read without TensorFlow."""
    path = Path(path)
    _check_keras_file(path)
    with zipfile.ZipFile(path) as zf:
        if SPEC_ENTRY not in zf.namelist():
            raise VitedgeError(f"{path}: a Keras model, but not one saved by vitedge (no {SPEC_ENTRY})")
        try:
            data = load_metadata_json(read_zip_entry(zf, SPEC_ENTRY, str(path)), str(path))
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            raise VitedgeError(f"{path}: unreadable {SPEC_ENTRY} ({first_line(exc)})") from None
    try:
        return ModelSpec.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VitedgeError(f"{path}: unreadable {SPEC_ENTRY} ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# Classes a vitedge model's config.json may name: Keras's own (by module) and vitedge's registered
# layers. Anything that carries code (Lambda) or names another module is refused before Keras
# deserializes it, on top of Keras's own safe_mode.
_CODE_CLASSES = {"Lambda", "__lambda__", "TFOpLambda", "function_with_closure"}


def check_keras_config(path: Path, registered) -> None:
    """Refuse a .keras file whose config.json names a Lambda layer, a module outside Keras and
    vitedge, or a vitedge class that is not registered (`registered(name)` is Keras's lookup)."""
    with zipfile.ZipFile(path) as zf:
        try:
            raw = read_zip_entry(zf, "config.json", str(path), limit=MAX_KERAS_CONFIG_BYTES)
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            raise VitedgeError(f"{path}: unreadable config.json ({first_line(exc)})") from None
    config = load_bounded_json(raw, str(path), "config.json", MAX_KERAS_CONFIG_BYTES, MAX_KERAS_CONFIG_DEPTH)
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        if "class_name" not in node:
            continue
        name, module, reg = node.get("class_name"), node.get("module"), node.get("registered_name")
        if name in _CODE_CLASSES or reg in _CODE_CLASSES:
            raise VitedgeError(f"{path}: holds a {name} layer (code inside the model file); vitedge refuses to load it")
        if module is not None and not (isinstance(module, str) and module.split(".")[0] in ("keras", "vitedge")):
            raise VitedgeError(f"{path}: names the module {module!r}, outside Keras and vitedge; refused")
        if (isinstance(module, str) and module.startswith("vitedge")) or (isinstance(reg, str) and ">" in reg):
            if not (isinstance(reg, str) and reg.startswith(f"{PACKAGE}>") and registered(reg) is not None):
                raise VitedgeError(f"{path}: names the class {reg or name!r}, not one vitedge registers; refused")


def save_model(model, spec: ModelSpec, path: str | os.PathLike, force: bool = False) -> Path:
    """Write `model` and its spec atomically to `path` (.keras)."""
    from .fileio import atomic_output

    path = Path(path)
    if path.suffix != ".keras":
        raise VitedgeError(f"{path}: model files must end in .keras")
    with atomic_output(path, force=force) as tmp:
        tmp.unlink()  # Keras refuses to write over an existing file in some versions
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(SPEC_ENTRY, json.dumps(spec.to_dict(), indent=1))
    return path


def load_model(path: str | os.PathLike):
    """Load a vitedge `.keras` model (safe mode) and its spec. Needs TensorFlow."""
    path = Path(path)
    _check_keras_file(path)
    import keras

    from . import vit  # noqa: F401  (registers the custom layers)

    check_keras_config(path, keras.saving.get_registered_object)
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for a broken file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VitedgeError(f"{path}: Keras could not load it ({first[:300]})") from None
    names = {layer.name for layer in model.layers}
    missing = [n for n in vit.REQUIRED_LAYERS if n not in names]
    if missing:
        raise VitedgeError(f"{path}: not a ViT built by vitedge; missing layers: {', '.join(missing)}")
    try:
        spec = read_spec(path)
    except VitedgeError:
        spec = spec_from_model(model)
    return model, spec


def spec_from_model(model) -> ModelSpec:
    """Reconstruct a spec from the layers of a vitedge ViT (when vitedge.json is absent)."""
    from . import vit

    pe = model.get_layer("patch_embedding")
    blocks = [layer for layer in model.layers if isinstance(layer, vit.EncoderBlock)]
    first = blocks[0] if blocks else None
    h, w, c = model.input_shape[1:4]
    config = ViTConfig(
        image_size=(h, w), patch_size=pe.patch_size, width=pe.width, depth=len(blocks),
        heads=first.heads if first else 1, mlp_dim=first.mlp_dim if first else pe.width,
        num_classes=model.output_shape[-1], channels=c,
        layer_norm_eps=first.layer_norm_eps if first else 1e-6,
        gelu="tanh" if first and first.approximate_gelu else "erf",
    )
    return ModelSpec(config=config, labels=default_labels(config.num_classes))
