"""What every importer shares: the neutral weight set, shape checks, variant inference, and
turning the weights into a vitedge Keras ViT.

Each format module (hf.py, timm.py, google_npz.py) reads its checkpoint into `SourceWeights`:
tensors already in the Keras layout under neutral names (below), plus what the source says
about heads, image size, LayerNorm eps, GELU, labels and preprocessing. Everything after that
(shape checks, head replacement, position-embedding resize, Keras assignment) happens here,
once for all formats.

Neutral names and Keras layouts (D width, M MLP width, P patch, C channels, K classes, T tokens):
  patch.kernel (P, P, C, D)  patch.bias (D,)  cls (1, 1, D)  pos (1, T, D)
  blocks.i.{norm1,norm2}.{gamma,beta} (D,)
  blocks.i.{q,k,v,o}.kernel (D, D) [input, output]  blocks.i.{q,k,v,o}.bias (D,)
  blocks.i.fc1.kernel (D, M)  blocks.i.fc1.bias (M,)  blocks.i.fc2.kernel (M, D)  blocks.i.fc2.bias (D,)
  norm.{gamma,beta} (D,)  head.kernel (D, K)  head.bias (K,)   (head optional)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError, VitedgeError
from ..preprocess import Preprocessing
from ..variants import VARIANTS, ViTConfig

BLOCK_PARTS = (
    "norm1.gamma", "norm1.beta", "q.kernel", "q.bias", "k.kernel", "k.bias", "v.kernel", "v.bias",
    "o.kernel", "o.bias", "norm2.gamma", "norm2.beta", "fc1.kernel", "fc1.bias", "fc2.kernel", "fc2.bias",
)


def _shortlist(names, limit: int = 6) -> str:
    names = list(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class Picker:
    """Takes tensors out of a source state dict by name; reports every missing or unused one.

    Missing tensors are collected, not raised one by one, so the error names all of them.
    """

    def __init__(self, tensors: dict[str, np.ndarray], path: Path, fmt: str):
        self.tensors, self.path, self.fmt = tensors, path, fmt
        self.used: set[str] = set()
        self.missing: list[str] = []
        self.out: dict[str, np.ndarray] = {}
        self.names: dict[str, str] = {}  # neutral name -> source name, for error messages
        self.shapes: dict[str, tuple] = {}  # neutral name -> shape in the checkpoint

    def has(self, name: str) -> bool:
        return name in self.tensors

    def take(self, neutral: str, source: str, convert=None, optional: bool = False) -> None:
        if source not in self.tensors:
            if not optional:
                self.missing.append(source)
            return
        self.used.add(source)
        arr = np.asarray(self.tensors[source])
        if convert is not None:
            try:
                arr = convert(arr)
            except ValueError:
                raise VitedgeError(f"{self.path}: tensor {source} has shape {tuple(arr.shape)}, "
                                   "which does not fit a ViT") from None
        self.out[neutral] = arr.astype(np.float32)
        self.names[neutral] = source
        self.shapes[neutral] = tuple(np.shape(self.tensors[source]))

    def ignore(self, pattern: str) -> list[str]:
        """Mark tensors matching a regex as deliberately unused; returns their names."""
        hits = [k for k in self.tensors if re.fullmatch(pattern, k)]
        self.used.update(hits)
        return hits

    def finish(self) -> None:
        if self.missing:
            raise VitedgeError(f"{self.path}: not a complete {self.fmt} ViT checkpoint; missing tensors: "
                               f"{_shortlist(self.missing)}")
        unused = sorted(k for k in self.tensors if k not in self.used)
        if unused:
            raise VitedgeError(f"{self.path}: tensors that a plain ViT does not have (another architecture?): "
                               f"{_shortlist(unused)}")


def block_count(keys, pattern: str) -> int:
    """Number of encoder blocks: 1 + the highest index matched by `pattern` (one group)."""
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    if not found:
        return 0
    missing = sorted(set(range(max(found) + 1)) - found)
    if missing:
        raise VitedgeError(f"encoder blocks {_shortlist(map(str, missing))} are missing from the checkpoint")
    return max(found) + 1


@dataclass
class SourceWeights:
    """A checkpoint read into the neutral layout, with what its source says about itself."""

    path: Path
    fmt: str  # "hf", "timm", "npz"
    tensors: dict[str, np.ndarray]
    names: dict[str, str]
    shapes: dict[str, tuple] = field(default_factory=dict)  # as stored in the checkpoint
    heads: int | None = None
    image_size: tuple[int, int] | None = None
    layer_norm_eps: float = 1e-6
    gelu: str = "erf"
    labels: list[str] | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    notes: list[str] = field(default_factory=list)
    head_unusable: str | None = None  # why the source head cannot be kept as it is (then --num-classes)

    @property
    def depth(self) -> int:
        return len({k.split(".")[1] for k in self.tensors if k.startswith("blocks.")})

    @property
    def has_head(self) -> bool:
        return "head.kernel" in self.tensors


def heads_from_variant(name: str) -> int:
    """Heads from a vitedge variant name (vit-b16) or a timm model name (vit_base_patch16_224...)."""
    key = name.lower()
    if key in VARIANTS:
        return VARIANTS[key][0]["heads"]
    timm_heads = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16, "giant": 16, "gigantic": 16}
    m = re.match(r"(?:timm/)?(?:vit|deit3?)_(tiny|small|base|large|huge|giant|gigantic)_patch\d+", key)
    if m:
        return timm_heads[m.group(1)]
    raise UsageError(f"--variant {name!r}: not a vitedge variant ({', '.join(VARIANTS)}) "
                     "nor a timm ViT name like vit_base_patch16_224")


def infer_config(src: SourceWeights, heads: int | None, heads_origin: str = "--heads") -> tuple[ViTConfig, list[str]]:
    """The architecture the tensors describe; heads come from the source, the user or width/64."""
    notes = []
    t = src.tensors
    ranks = {"patch.kernel": 4, "cls": 3, "pos": 3, "blocks.0.fc1.kernel": 2, "head.kernel": 2}
    for name, rank in ranks.items():
        if name in t and t[name].ndim != rank:
            raise VitedgeError(f"{src.path}: tensor {src.names.get(name, name)} has shape "
                               f"{src.shapes.get(name, t[name].shape)}; a ViT's has {rank} dimensions")
    p, p2, c, d = t["patch.kernel"].shape
    if p != p2:
        raise VitedgeError(f"{src.path}: non-square patches ({p}x{p2}) are not supported")
    tokens = t["pos"].shape[1]
    if src.image_size is not None:
        image_size = src.image_size
    else:
        side = math.isqrt(tokens - 1)
        if side * side != tokens - 1:
            raise VitedgeError(f"{src.path}: {tokens} position embeddings are not 1 class token + a square grid")
        image_size = (side * p, side * p)
    heads = heads or src.heads
    if heads is None:
        if d % 64:
            raise UsageError(f"{src.path}: the number of attention heads is not stored in a {src.fmt} "
                             f"state dict; pass --heads or --variant (width {d})")
        heads = d // 64
        notes.append(f"heads not stored in the checkpoint: {heads} assumed (width/64, as in every standard ViT); "
                     "pass --heads to override")
    if src.heads is not None and heads != src.heads:
        raise UsageError(f"{heads_origin} gives {heads} heads but the checkpoint has {src.heads}")
    num_classes = t["head.kernel"].shape[1] if src.has_head else 1
    config = ViTConfig(
        image_size=image_size, patch_size=p, width=d, depth=src.depth, heads=heads,
        mlp_dim=t["blocks.0.fc1.kernel"].shape[1] if src.depth else 4 * d, num_classes=num_classes,
        channels=c, layer_norm_eps=src.layer_norm_eps, gelu=src.gelu, variant=name_variant(d, src.depth, heads, p),
    )
    return config, notes


def name_variant(width: int, depth: int, heads: int, patch: int) -> str:
    for name, (dims, _) in VARIANTS.items():
        if (dims["width"], dims["depth"], dims["heads"], dims["patch_size"]) == (width, depth, heads, patch) \
                and dims["mlp_dim"] == 4 * width:
            return name
    return "custom"


def expected_shapes(config: ViTConfig, tokens: int, num_classes: int | None) -> dict[str, tuple]:
    d, m, p, c = config.width, config.mlp_dim, config.patch_size, config.channels
    shapes = {"patch.kernel": (p, p, c, d), "patch.bias": (d,), "cls": (1, 1, d), "pos": (1, tokens, d),
              "norm.gamma": (d,), "norm.beta": (d,)}
    per_block = {"norm1.gamma": (d,), "norm1.beta": (d,), "norm2.gamma": (d,), "norm2.beta": (d,),
                 "fc1.kernel": (d, m), "fc1.bias": (m,), "fc2.kernel": (m, d), "fc2.bias": (d,)}
    for x in "qkvo":
        per_block[f"{x}.kernel"] = (d, d)
        per_block[f"{x}.bias"] = (d,)
    for i in range(config.depth):
        shapes.update({f"blocks.{i}.{k}": v for k, v in per_block.items()})
    if num_classes is not None:
        shapes.update({"head.kernel": (d, num_classes), "head.bias": (num_classes,)})
    return shapes


def check_shapes(src: SourceWeights, config: ViTConfig) -> None:
    """Every tensor must agree with the architecture read from the others; name the first that does not."""
    tokens = config.seq_len
    if src.tensors["pos"].shape[1] != tokens:
        raise VitedgeError(f"{src.path}: {src.names['pos']} has {src.tensors['pos'].shape[1]} positions, "
                           f"but a {config.image_size[0]}x{config.image_size[1]} image in {config.patch_size}-pixel "
                           f"patches needs {tokens}")
    want = expected_shapes(config, tokens, config.num_classes if src.has_head else None)
    for name, shape in want.items():
        got = tuple(src.tensors[name].shape)
        if got != shape:
            stored = src.shapes.get(name, got)
            raise VitedgeError(f"{src.path}: tensor {src.names.get(name, name)} has shape {stored}, which disagrees "
                               f"with the other tensors (width {config.width}, MLP {config.mlp_dim}, "
                               f"{config.depth} blocks, patch {config.patch_size})")
        if not np.all(np.isfinite(src.tensors[name])):
            raise VitedgeError(f"{src.path}: tensor {src.names.get(name, name)} contains NaN or infinite values")


# -- position embeddings -----------------------------------------------------------------------
# How each source framework resizes its position embeddings for another resolution; the
# import does the same by default, so the model matches what that framework would compute.
SOURCE_RESIZE = {
    "hf": "torch-bicubic",  # HF interpolate_pos_encoding: F.interpolate bicubic, no antialias
    "timm": "torch-bicubic-antialias",  # timm resample_abs_pos_embed: bicubic, antialias=True
    "npz": "zoom-linear",  # Google vit_jax: scipy.ndimage.zoom(order=1), corners aligned
}
RESIZE_METHODS = (*SOURCE_RESIZE.values(), "bilinear", "bicubic")


def _torch_bicubic_matrix(n_in: int, n_out: int, a: float = -0.75) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's bicubic resize (align_corners=False, no antialias).

    PyTorch uses the cubic-convolution coefficient a = -0.75; TensorFlow's resize uses Keys'
    a = -0.5 (a few percent apart on smooth embeddings), hence our own.
    """
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    scale = n_in / n_out
    w = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        src = (i + 0.5) * scale - 0.5
        x0 = math.floor(src)
        t = src - x0
        for offset, weight in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t)), strict=True):
            w[i, min(max(x0 + offset, 0), n_in - 1)] += weight
    return w


def _corner_linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of linear interpolation with the corners aligned (scipy zoom, order 1)."""
    w = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        x0 = min(math.floor(src), n_in - 1)
        t = src - x0
        w[i, x0] += 1 - t
        if t > 0:
            w[i, x0 + 1] += t
    return w


def resize_positions(pos: np.ndarray, old_grid, new_grid, method: str) -> np.ndarray:
    """Resize (1, 1 + gh*gw, D) position embeddings over the patch grid; the class token's is kept.

    Methods: torch-bicubic (= "bicubic"), torch-bicubic-antialias, zoom-linear (see SOURCE_RESIZE),
    and bilinear (half-pixel, the same in PyTorch and TensorFlow: vit.resize_position_embedding).
    """
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if old_grid == new_grid:
        return pos
    if method == "bilinear":
        from ..vit import resize_position_embedding

        return resize_position_embedding(pos, old_grid, new_grid, method="bilinear")
    d = pos.shape[-1]
    grid = pos[0, 1:].reshape(old_grid[0], old_grid[1], d)
    if method == "torch-bicubic-antialias":
        # TensorFlow's antialiased bicubic is PyTorch's (both Pillow-style, a = -0.5): measured equal to 1e-6.
        import tensorflow as tf

        resized = tf.image.resize(grid[None], new_grid, method="bicubic", antialias=True).numpy()[0]
    elif method in ("torch-bicubic", "bicubic", "zoom-linear"):
        matrix = _corner_linear_matrix if method == "zoom-linear" else _torch_bicubic_matrix
        wh, ww = matrix(old_grid[0], new_grid[0]), matrix(old_grid[1], new_grid[1])
        resized = np.einsum("oh,hwd,pw->opd", wh, grid.astype(np.float64), ww)
    else:
        raise VitedgeError(f"unknown position-embedding resize method {method!r}")
    flat = resized.reshape(1, new_grid[0] * new_grid[1], d).astype(pos.dtype)
    return np.concatenate([pos[:, :1], flat], axis=1)


# -- Keras ---------------------------------------------------------------------------------------

def assign_weights(model, tensors: dict[str, np.ndarray], depth: int, with_head: bool) -> None:
    """Copy neutral tensors into a model from vit.build_vit (fused qkv: q|k|v side by side)."""
    pe = model.get_layer("patch_embedding").projection
    pe.kernel.assign(tensors["patch.kernel"])
    pe.bias.assign(tensors["patch.bias"])
    model.get_layer("class_token").token.assign(tensors["cls"])
    model.get_layer("position_embedding").embedding.assign(tensors["pos"])
    for i in range(depth):
        blk = model.get_layer(f"encoder_block_{i}")
        t = {k: tensors[f"blocks.{i}.{k}"] for k in BLOCK_PARTS}
        blk.norm1.gamma.assign(t["norm1.gamma"])
        blk.norm1.beta.assign(t["norm1.beta"])
        blk.attn.qkv.kernel.assign(np.concatenate([t["q.kernel"], t["k.kernel"], t["v.kernel"]], axis=1))
        blk.attn.qkv.bias.assign(np.concatenate([t["q.bias"], t["k.bias"], t["v.bias"]]))
        blk.attn.proj.kernel.assign(t["o.kernel"])
        blk.attn.proj.bias.assign(t["o.bias"])
        blk.norm2.gamma.assign(t["norm2.gamma"])
        blk.norm2.beta.assign(t["norm2.beta"])
        blk.mlp.fc1.kernel.assign(t["fc1.kernel"])
        blk.mlp.fc1.bias.assign(t["fc1.bias"])
        blk.mlp.fc2.kernel.assign(t["fc2.kernel"])
        blk.mlp.fc2.bias.assign(t["fc2.bias"])
    norm = model.get_layer("encoder_norm")
    norm.gamma.assign(tensors["norm.gamma"])
    norm.beta.assign(tensors["norm.beta"])
    if with_head:
        head = model.get_layer("head")
        head.kernel.assign(tensors["head.kernel"])
        head.bias.assign(tensors["head.bias"])
