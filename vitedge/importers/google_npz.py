"""The original Google ViT checkpoints (.npz, as released for the paper and AugReg).

Names: `embedding/kernel` (P, P, C, D), `cls`, `Transformer/posembed_input/pos_embedding`,
`Transformer/encoderblock_N/{LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2,
MlpBlock_3/Dense_0, MlpBlock_3/Dense_1}`, `Transformer/encoder_norm`, `head`; optionally
under `opt/target/`. JAX kernels are already (input, output) like Keras; attention kernels are
per head, (D, H, Dh) and (H, Dh, D), so the head count is read from them. Flax's GELU is the
tanh approximation and its LayerNorm eps is 1e-6.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from ..preprocess import Preprocessing
from .common import Picker, SourceWeights, block_count
from .tensorfile import read_npz

ATTN, MLP = "MultiHeadDotProductAttention_1", "MlpBlock_3"


def looks_like_npz_vit(keys) -> bool:
    return any(k.endswith("embedding/kernel") or k.startswith("Transformer/") for k in keys)


def _qkv(w: np.ndarray) -> np.ndarray:
    if w.ndim != 3:
        raise ValueError("per-head kernel expected")
    return w.reshape(w.shape[0], -1)


def _out(w: np.ndarray) -> np.ndarray:
    if w.ndim != 3:
        raise ValueError("per-head kernel expected")
    return w.reshape(-1, w.shape[-1])


def load(path: Path) -> SourceWeights:
    tensors = read_npz(path)
    prefix = "opt/target/" if "opt/target/embedding/kernel" in tensors else ""
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if "conv_root/kernel" in tensors or any(k.startswith("block1/") for k in tensors):
        raise VitedgeError(f"{path}: a hybrid ResNet+ViT checkpoint; vitedge imports plain ViTs only")
    if not looks_like_npz_vit(tensors):
        raise VitedgeError(f"{path}: no embedding/kernel or Transformer/ tensors; not a Google ViT checkpoint")
    pick = Picker(tensors, path, "Google .npz")
    depth = block_count(tensors, r"Transformer/encoderblock_(\d+)/")
    pick.take("patch.kernel", "embedding/kernel")
    pick.take("patch.bias", "embedding/bias")
    pick.take("cls", "cls")
    pick.take("pos", "Transformer/posembed_input/pos_embedding")
    for i in range(depth):
        b, n = f"Transformer/encoderblock_{i}", f"blocks.{i}"
        pick.take(f"{n}.norm1.gamma", f"{b}/LayerNorm_0/scale")
        pick.take(f"{n}.norm1.beta", f"{b}/LayerNorm_0/bias")
        for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
            pick.take(f"{n}.{ours}.kernel", f"{b}/{ATTN}/{theirs}/kernel", _qkv)
            pick.take(f"{n}.{ours}.bias", f"{b}/{ATTN}/{theirs}/bias", lambda w: w.reshape(-1))
        pick.take(f"{n}.o.kernel", f"{b}/{ATTN}/out/kernel", _out)
        pick.take(f"{n}.o.bias", f"{b}/{ATTN}/out/bias")
        pick.take(f"{n}.norm2.gamma", f"{b}/LayerNorm_2/scale")
        pick.take(f"{n}.norm2.beta", f"{b}/LayerNorm_2/bias")
        pick.take(f"{n}.fc1.kernel", f"{b}/{MLP}/Dense_0/kernel")
        pick.take(f"{n}.fc1.bias", f"{b}/{MLP}/Dense_0/bias")
        pick.take(f"{n}.fc2.kernel", f"{b}/{MLP}/Dense_1/kernel")
        pick.take(f"{n}.fc2.bias", f"{b}/{MLP}/Dense_1/bias")
    pick.take("norm.gamma", "Transformer/encoder_norm/scale")
    pick.take("norm.beta", "Transformer/encoder_norm/bias")
    pick.take("head.kernel", "head/kernel", optional=True)
    pick.take("head.bias", "head/bias", optional="head/kernel" not in tensors)
    pre_logits = pick.ignore(r"pre_logits/(kernel|bias)")
    pick.finish()

    query = tensors.get("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel")
    heads = int(query.shape[1]) if query is not None and query.ndim == 3 else None
    notes = ["preprocessing: the paper's (mean/std 0.5, bilinear resize); GELU: tanh approximation as in Flax"]
    return SourceWeights(
        path=path, fmt="npz", tensors=pick.out, names=pick.names, shapes=pick.shapes,
        heads=heads, image_size=None,
        layer_norm_eps=1e-6, gelu="tanh", labels=None,
        preprocessing=Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3, resize="stretch", interpolation="bilinear"),
        notes=notes,
        head_unusable=("it sits on a pre-logits layer (tanh Dense, ImageNet-21k paper checkpoints) that vitedge's "
                       "ViT does not have; pass --num-classes to replace the head (pre-logits dropped)")
        if pre_logits else None,
    )
