"""Import pretrained ViT weights from local files: Hugging Face folders, timm state dicts and the
original Google .npz checkpoints. No network: a hub id gets a "download it first" error.

`import_checkpoint` reads the source (hf.py, timm.py, google_npz.py), infers the variant from the
tensor shapes (common.py), replaces the head and resizes position embeddings when asked, and
returns a Keras ViT with its ModelSpec (labels and the source's preprocessing).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UsageError, VitedgeError
from ..variants import parse_image_size

FORMATS = ("auto", "hf", "timm", "npz")
HUB_ID = re.compile(r"^(?:hf-hub:|hf_hub:|timm/)?[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _missing_source(path: Path, raw: str) -> VitedgeError:
    if HUB_ID.match(raw) and not raw.startswith(("./", "../", "/")):
        return VitedgeError(
            f"{raw}: no such file or folder; if it is a hub id, vitedge does not download: download it first "
            f"(e.g. `hf download {raw.split(':', 1)[-1]} --local-dir DIR`) and pass DIR")
    return VitedgeError(f"{path}: no such file or folder")


def detect_format(path: Path) -> str:
    """hf, timm or npz, from the folder's config or the file's suffix and tensor names."""
    from . import hf, timm

    if path.is_dir():
        if hf.is_hf_folder(path):
            return "hf"
        if timm.is_timm_config(path / "config.json"):
            return "timm"
        if any((path / n).is_file() for n in timm.WEIGHT_FILES):
            return "timm"  # weights without a config: a bare state dict
        raise VitedgeError(f"{path}: a folder without config.json or model weights; pass the checkpoint file")
    if path.suffix.lower() == ".npz":
        return "npz"
    if hf.is_hf_folder(path.parent) and path.name.startswith(("model", "pytorch_model")):
        return "hf"
    from .tensorfile import read_tensors

    keys = read_tensors(path).keys()
    if timm.looks_like_timm(keys):
        return "timm"
    if any(k.endswith("embeddings.cls_token") for k in keys):
        raise VitedgeError(f"{path}: Hugging Face ViT tensors, but no config.json beside them; "
                           "pass the model folder with its config.json")
    raise VitedgeError(f"{path}: no ViT tensors recognised (first names: {', '.join(sorted(keys)[:4]) or 'none'}); "
                       "not a ViT checkpoint, or pass --format")


def read_source(path: str | os.PathLike, fmt: str = "auto", variant: str | None = None):
    """The checkpoint at `path` as common.SourceWeights."""
    raw = str(path)
    path = Path(path).expanduser()
    if not path.exists():
        raise _missing_source(path, raw)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "hf":
        from . import hf

        return hf.load(path)
    if fmt == "timm":
        from . import timm

        return timm.load(path, variant)
    from . import google_npz

    if path.is_dir():
        raise VitedgeError(f"{path}: a folder; pass the .npz file")
    return google_npz.load(path)


def import_checkpoint(path, fmt: str = "auto", *, variant: str | None = None, heads: int | None = None,
                      num_classes: int | None = None, labels: list[str] | None = None, image_size=None,
                      interpolation: str | None = None, seed: int = 0):
    """Read a checkpoint and build the vitedge ViT that computes the same function.

    `interpolation` (position-embedding resize): None = the source framework's own method
    (common.SOURCE_RESIZE), "bilinear", "bicubic" (PyTorch's) or a common.RESIZE_METHODS name.
    Returns (keras model, ModelSpec, notes); notes say what was assumed or changed.
    """
    from ..modelfile import ModelSpec, default_labels, validate_labels
    from .common import (
        SOURCE_RESIZE,
        assign_weights,
        check_shapes,
        heads_from_variant,
        infer_config,
        resize_positions,
    )

    if heads is not None and variant is not None:
        raise UsageError("give --heads or --variant, not both")
    origin = "--heads"
    if variant is not None:
        heads, origin = heads_from_variant(variant), f"--variant {variant}"
    src = read_source(path, fmt, variant)
    config, notes = infer_config(src, heads, origin)
    notes = [*src.notes, *notes]
    check_shapes(src, config)

    # The head: kept when the class count agrees, else replaced by a freshly initialised one.
    keep_head = src.has_head and num_classes in (None, config.num_classes)
    if keep_head and src.head_unusable:
        raise VitedgeError(f"{src.path}: the checkpoint's head cannot be imported: {src.head_unusable}")
    if not src.has_head and num_classes is None:
        raise UsageError(f"{src.path}: the checkpoint has no classification head (e.g. a ViTModel); "
                         "pass --num-classes N for a freshly initialised one")
    if not keep_head:
        old = f"{config.num_classes}-class head" if src.has_head else "no head"
        notes.append(f"head replaced: checkpoint had {old}; {num_classes} classes, freshly initialised "
                     f"(seed {seed}): fine-tune before use")
        config = config.replace(num_classes=num_classes)
    if labels is not None:
        labels = validate_labels(labels, config.num_classes)
    elif keep_head and src.labels and len(src.labels) == config.num_classes:
        labels = validate_labels(src.labels, config.num_classes)
    else:
        labels = default_labels(config.num_classes)

    tensors = dict(src.tensors)
    source_size = config.image_size
    if image_size is not None:
        new_config = config.replace(image_size=parse_image_size(image_size))
        if new_config.grid != config.grid:
            method = interpolation or SOURCE_RESIZE[src.fmt]
            tensors["pos"] = resize_positions(tensors["pos"], config.grid, new_config.grid, method)
            own = " (the source framework's own)" if interpolation is None else ""
            notes.append(f"position embeddings resized {config.grid[0]}x{config.grid[1]} -> "
                         f"{new_config.grid[0]}x{new_config.grid[1]} patches: {method}{own}")
        config = new_config

    from ..vit import build_vit

    model = build_vit(config, seed=seed)
    assign_weights(model, tensors, config.depth, with_head=keep_head)
    info = {"imported_from": str(src.path), "source_format": src.fmt, "source_image_size": list(source_size),
            "head": "imported" if keep_head else "replaced (freshly initialised)", "notes": notes}
    if not keep_head:
        info["seed"] = seed
    return model, ModelSpec(config, labels, src.preprocessing, info), notes
