"""timm ViT state dicts (safetensors or .pth): `cls_token`, `pos_embed`, `patch_embed.proj`,
`blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`, `head`.

A state dict does not store the number of heads: it comes from --heads, the variant name
(vitedge's or timm's, e.g. vit_base_patch16_224.augreg_in21k), a timm config.json beside the
weights, or width/64 as a stated guess. timm's fused qkv Linear is (3D, D): transposed, it is
exactly vitedge's fused kernel (D, 3D).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from ..preprocess import Preprocessing
from .common import Picker, SourceWeights, block_count, heads_from_variant
from .tensorfile import read_tensors

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Tensors that mark a ViT relative vitedge's model cannot express, with the reason.
FOREIGN = {
    r"dist_token": "a distilled DeiT (distillation token)",
    r"reg_token": "a ViT with register tokens",
    r"fc_norm\..*": "a ViT classifying from average-pooled tokens (fc_norm)",
    r"blocks\.\d+\.ls\d\..*": "a ViT with LayerScale",
    r"blocks\.\d+\.attn\.[qk]_norm\..*": "a ViT with QK normalisation",
    r"patch_embed\.backbone\..*": "a hybrid CNN+ViT",
    r"attn_pool\..*": "a ViT with attention pooling (MAP head)",
}


def is_timm_config(path: Path) -> bool:
    try:
        return "architecture" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def looks_like_timm(keys) -> bool:
    keys = set(keys)
    return any(k.endswith("cls_token") and "embeddings" not in k for k in keys) and any(
        re.match(r"(?:module\.|model\.)?blocks\.0\.", k) for k in keys)


def _strip_prefix(tensors: dict) -> dict:
    for prefix in ("module.", "model."):
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def _linear(w: np.ndarray) -> np.ndarray:
    if w.ndim != 2:
        raise ValueError("not a matrix")
    return w.T


def _timm_preprocessing(cfg: dict, variant: str | None, notes: list[str]) -> Preprocessing:
    pre = cfg.get("pretrained_cfg") or {}
    if pre:
        mode = "center_crop" if pre.get("crop_mode", "center") == "center" and pre.get("crop_pct", 1.0) < 1.0 \
            else "stretch"
        interp = pre.get("interpolation", "bicubic")
        return Preprocessing(mean=tuple(pre.get("mean", (0.5,) * 3)), std=tuple(pre.get("std", (0.5,) * 3)),
                             resize=mode, interpolation=interp if interp in ("bilinear", "bicubic") else "bicubic",
                             crop_pct=float(pre.get("crop_pct", 0.9)))
    if variant and variant.lower().removeprefix("timm/").startswith("deit"):
        notes.append("preprocessing: timm's DeiT defaults (ImageNet mean/std, bicubic, center crop 0.875)")
        return Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, resize="center_crop",
                             interpolation="bicubic", crop_pct=0.875)
    notes.append("preprocessing: timm's ViT defaults assumed (mean/std 0.5, bicubic, center crop 0.9), as for the "
                 "original and AugReg weights; DeiT weights need ImageNet mean/std (name the variant deit_...)")
    return Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3, resize="center_crop", interpolation="bicubic", crop_pct=0.9)


def _image_size_from_name(name: str | None) -> tuple[int, int] | None:
    m = re.search(r"_(\d{2,4})(?:\.|$)", name or "")
    return (int(m.group(1)),) * 2 if m else None


def load(path: Path, variant: str | None = None) -> SourceWeights:
    folder = path if path.is_dir() else path.parent
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if is_timm_config(cfg_path) else {}
    if path.is_dir():
        weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
        if weights is None:
            raise VitedgeError(f"{folder}: no model.safetensors or pytorch_model.bin in this folder")
    else:
        weights = path
    tensors = _strip_prefix(read_tensors(weights))
    notes: list[str] = []
    for pattern, what in FOREIGN.items():
        hit = next((k for k in tensors if re.fullmatch(pattern, k)), None)
        if hit:
            raise VitedgeError(f"{weights}: {what} ({hit}); vitedge imports plain class-token ViTs only")

    pick = Picker(tensors, weights, "timm")
    depth = block_count(tensors, r"blocks\.(\d+)\.")
    pick.take("cls", "cls_token")
    pick.take("pos", "pos_embed")
    pick.take("patch.kernel", "patch_embed.proj.weight", lambda w: w.transpose(2, 3, 1, 0))
    pick.take("patch.bias", "patch_embed.proj.bias")
    for i in range(depth):
        b, n = f"blocks.{i}", f"blocks.{i}"
        if f"{b}.attn.qkv.weight" in tensors:
            qkv = tensors[f"{b}.attn.qkv.weight"]
            if qkv.ndim != 2 or qkv.shape[0] != 3 * qkv.shape[1]:
                raise VitedgeError(f"{weights}: tensor {b}.attn.qkv.weight has shape {tuple(qkv.shape)}, "
                                   "expected (3*width, width)")
            pick.used.add(f"{b}.attn.qkv.weight")
            bias = tensors.get(f"{b}.attn.qkv.bias")
            pick.used.add(f"{b}.attn.qkv.bias")
            if bias is None:
                bias = np.zeros(qkv.shape[0], np.float32)
            for j, x in enumerate("qkv"):
                d = qkv.shape[1]
                pick.out[f"{n}.{x}.kernel"] = np.ascontiguousarray(qkv[j * d:(j + 1) * d].T, np.float32)
                pick.out[f"{n}.{x}.bias"] = np.asarray(bias[j * d:(j + 1) * d], np.float32)
                pick.names[f"{n}.{x}.kernel"] = pick.names[f"{n}.{x}.bias"] = f"{b}.attn.qkv.weight"
                pick.shapes[f"{n}.{x}.kernel"] = pick.shapes[f"{n}.{x}.bias"] = tuple(qkv.shape)
        else:
            pick.missing.append(f"{b}.attn.qkv.weight")
        for ours, theirs in (("o", "attn.proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2")):
            pick.take(f"{n}.{ours}.kernel", f"{b}.{theirs}.weight", _linear)
            pick.take(f"{n}.{ours}.bias", f"{b}.{theirs}.bias")
        for ours in ("norm1", "norm2"):
            pick.take(f"{n}.{ours}.gamma", f"{b}.{ours}.weight")
            pick.take(f"{n}.{ours}.beta", f"{b}.{ours}.bias")
    pick.take("norm.gamma", "norm.weight")
    pick.take("norm.beta", "norm.bias")
    pick.take("head.kernel", "head.weight", _linear, optional=True)
    pick.take("head.bias", "head.bias", optional="head.weight" not in tensors)
    pick.finish()

    heads = None
    if cfg.get("architecture"):  # a timm hub folder names its model: that fixes the heads
        try:
            heads = heads_from_variant(cfg["architecture"])
        except VitedgeError:
            notes.append(f"config.json architecture {cfg['architecture']!r}: heads not known from the name")
    variant = variant or cfg.get("architecture")
    image_size = None
    input_size = (cfg.get("pretrained_cfg") or {}).get("input_size")
    if input_size and len(input_size) == 3:
        image_size = (int(input_size[1]), int(input_size[2]))
    elif variant and not variant.lower().startswith("vit-"):
        image_size = _image_size_from_name(variant)
    labels = cfg.get("label_names") if isinstance(cfg.get("label_names"), list) else None
    return SourceWeights(
        path=weights, fmt="timm", tensors=pick.out, names=pick.names, shapes=pick.shapes,
        heads=heads, image_size=image_size,
        layer_norm_eps=1e-6, gelu="erf", labels=labels,
        preprocessing=_timm_preprocessing(cfg, variant, notes), notes=notes,
    )
