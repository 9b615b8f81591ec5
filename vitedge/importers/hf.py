"""Hugging Face transformers ViT folders: config.json + model.safetensors or pytorch_model.bin.

ViTModel (no classifier; its pooler is not part of the paper's ViT and is dropped) and
ViTForImageClassification (labels from id2label). Tensor names as save_pretrained writes them
(`encoder.layer.N.attention.attention.query`) and as transformers 5 names them in memory
(`layers.N.attention.q_proj`). PyTorch Linear weights are (out, in): transposed for Keras.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from ..preprocess import Preprocessing
from .common import Picker, SourceWeights, block_count
from .tensorfile import read_tensors

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
ARCHITECTURES = ("ViTModel", "ViTForImageClassification")
GELUS = {"gelu": "erf", "gelu_python": "erf", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}
# PIL resampling codes as HF processors store them
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VitedgeError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise VitedgeError(f"{path}: expected a JSON object")
    return data


def is_hf_folder(folder: Path) -> bool:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return False
    try:
        return "model_type" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def _load_tensors(folder: Path, weights: Path | None) -> tuple[dict, Path]:
    if weights is None:
        for name in WEIGHT_FILES:
            if (folder / name).is_file():
                weights = folder / name
                break
        else:
            raise VitedgeError(f"{folder}: no model.safetensors or pytorch_model.bin in this folder")
    if weights.name.endswith(".index.json"):  # sharded checkpoint
        index = _read_json(weights)
        shards = sorted(set((index.get("weight_map") or {}).values()))
        if not shards:
            raise VitedgeError(f"{weights}: no weight_map")
        tensors = {}
        for shard in shards:
            tensors.update(read_tensors(folder / shard))
        return tensors, weights
    return read_tensors(weights), weights


def _preprocessing(folder: Path, notes: list[str]) -> Preprocessing:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        notes.append("no preprocessor_config.json: ViTImageProcessor defaults assumed (mean/std 0.5, bilinear)")
        return Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3, resize="stretch", interpolation="bilinear")
    cfg = _read_json(path)
    mean = tuple(cfg.get("image_mean") or (0.5,) * 3)
    std = tuple(cfg.get("image_std") or (0.5,) * 3)
    if cfg.get("do_normalize") is False:
        mean, std = (0.0,) * 3, (1.0,) * 3
    # Preprocessing scales pixels by 1/255; fold any other rescale factor into mean and std.
    factor = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    k = 255.0 * factor
    if abs(k - 1.0) > 1e-9:
        mean, std = tuple(m / k for m in mean), tuple(s / k for s in std)
    resample = cfg.get("resample", 2)
    interpolation = RESAMPLE.get(resample, resample if isinstance(resample, str) else None)
    if interpolation not in ("nearest", "bilinear", "bicubic", "lanczos"):
        notes.append(f"resample {resample!r} not supported: bilinear used")
        interpolation = "bilinear"
    size = cfg.get("size") or {}
    crop = cfg.get("crop_size") or {}
    if cfg.get("do_center_crop") and isinstance(size, dict) and "shortest_edge" in size and crop:
        crop_side = max(crop.get("height", 0), crop.get("width", 0)) or size["shortest_edge"]
        return Preprocessing(mean=mean, std=std, resize="center_crop", interpolation=interpolation,
                             crop_pct=min(1.0, crop_side / size["shortest_edge"]))
    return Preprocessing(mean=mean, std=std, resize="stretch", interpolation=interpolation)


def _linear(w: np.ndarray) -> np.ndarray:
    if w.ndim != 2:
        raise ValueError("not a matrix")
    return w.T


def load(path: Path) -> SourceWeights:
    folder, weights = (path, None) if path.is_dir() else (path.parent, path)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise VitedgeError(f"{folder}: no config.json; a Hugging Face model folder needs it")
    cfg = _read_json(cfg_path)
    model_type = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    if model_type != "vit" or (archs and not set(archs) & set(ARCHITECTURES)):
        what = ", ".join(archs) or model_type or "unknown"
        raise VitedgeError(f"{cfg_path}: a {what} model (model_type {model_type!r}); vitedge imports plain ViTs "
                           f"({', '.join(ARCHITECTURES)})")
    act = cfg.get("hidden_act", "gelu")
    if act not in GELUS:
        raise VitedgeError(f"{cfg_path}: hidden_act {act!r} is not a GELU; vitedge's ViT uses GELU")
    tensors, weights = _load_tensors(folder, weights)
    notes: list[str] = []

    pick = Picker(tensors, weights, "Hugging Face")
    cls_key = next((k for k in tensors if k.endswith("embeddings.cls_token")), None)
    if cls_key is None:
        raise VitedgeError(f"{weights}: no embeddings.cls_token tensor; not a Hugging Face ViT checkpoint")
    p = cls_key[: -len("embeddings.cls_token")]  # "vit." for ViTForImageClassification, "" for ViTModel
    new_names = any(re.match(rf"{re.escape(p)}layers\.\d+\.", k) for k in tensors)
    layer = f"{p}layers" if new_names else f"{p}encoder.layer"
    depth = block_count(tensors, rf"{re.escape(layer)}\.(\d+)\.")
    pick.take("cls", cls_key)
    pick.take("pos", f"{p}embeddings.position_embeddings")
    pick.take("patch.kernel", f"{p}embeddings.patch_embeddings.projection.weight", lambda w: w.transpose(2, 3, 1, 0))
    pick.take("patch.bias", f"{p}embeddings.patch_embeddings.projection.bias")
    qkv_bias = cfg.get("qkv_bias", True)
    for i in range(depth):
        b, n = f"{layer}.{i}", f"blocks.{i}"
        if new_names:
            lin = {"q": "attention.q_proj", "k": "attention.k_proj", "v": "attention.v_proj",
                   "o": "attention.o_proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
        else:
            lin = {"q": "attention.attention.query", "k": "attention.attention.key",
                   "v": "attention.attention.value", "o": "attention.output.dense",
                   "fc1": "intermediate.dense", "fc2": "output.dense"}
        for ours, theirs in lin.items():
            pick.take(f"{n}.{ours}.kernel", f"{b}.{theirs}.weight", _linear)
            pick.take(f"{n}.{ours}.bias", f"{b}.{theirs}.bias", optional=ours in ("q", "k", "v") and not qkv_bias)
            if f"{n}.{ours}.bias" not in pick.out and f"{n}.{ours}.kernel" in pick.out:
                pick.out[f"{n}.{ours}.bias"] = np.zeros(pick.out[f"{n}.{ours}.kernel"].shape[1], np.float32)
        for ours, theirs in (("norm1", "layernorm_before"), ("norm2", "layernorm_after")):
            pick.take(f"{n}.{ours}.gamma", f"{b}.{theirs}.weight")
            pick.take(f"{n}.{ours}.beta", f"{b}.{theirs}.bias")
    pick.take("norm.gamma", f"{p}layernorm.weight")
    pick.take("norm.beta", f"{p}layernorm.bias")
    pick.take("head.kernel", "classifier.weight", _linear, optional=True)
    pick.take("head.bias", "classifier.bias", optional="classifier.weight" not in tensors)
    if pick.ignore(rf"{re.escape(p)}pooler\.dense\.(weight|bias)"):
        notes.append("ViTModel pooler dropped (not part of the ViT; the head reads the class token after the final LayerNorm)")
    pick.ignore(rf"{re.escape(p)}embeddings\.mask_token")
    pick.finish()

    labels = None
    id2label = cfg.get("id2label") or {}
    if "head.kernel" in pick.out and id2label:
        try:
            ordered = [str(id2label[str(i)]) for i in range(len(id2label))]
        except KeyError:
            ordered = []
        if ordered and ordered != [f"LABEL_{i}" for i in range(len(ordered))]:
            labels = ordered
    image_size = cfg.get("image_size", 224)
    image_size = tuple(image_size) if isinstance(image_size, (list, tuple)) else (int(image_size),) * 2
    src = SourceWeights(
        path=weights, fmt="hf", tensors=pick.out, names=pick.names, shapes=pick.shapes,
        heads=int(cfg.get("num_attention_heads", 0)) or None,
        image_size=image_size, layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)), gelu=GELUS[act],
        labels=labels, preprocessing=_preprocessing(folder, notes), notes=notes,
    )
    _check_config_agrees(cfg, src, cfg_path)
    return src


def _check_config_agrees(cfg: dict, src: SourceWeights, cfg_path: Path) -> None:
    t = src.tensors
    found = {"hidden_size": t["cls"].shape[-1], "num_hidden_layers": src.depth,
             "patch_size": t["patch.kernel"].shape[0], "num_channels": t["patch.kernel"].shape[2]}
    if "blocks.0.fc1.kernel" in t:
        found["intermediate_size"] = t["blocks.0.fc1.kernel"].shape[1]
    for key, value in found.items():
        if key in cfg and int(cfg[key]) != int(value):
            raise VitedgeError(f"{cfg_path}: {key} is {cfg[key]} but the weights have {value}")
