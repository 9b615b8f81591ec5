"""The Keras Vision Transformer of Dosovitskiy et al. (arXiv 2010.11929). Needs TensorFlow/Keras.

Every layer is registered for Keras serialization (package "vitedge"), so a saved `.keras`
file reloads with `keras.saving.load_model(..., safe_mode=True)` and no custom_objects.
Deliberate differences from the blog sketch we started from:
  * attention heads are width/heads wide (not the full width each);
  * the MLP's output width is an explicit argument (the block passes the embedding width);
  * no layer reads a global config: every size is a constructor argument;
  * the head returns logits; softmax is the runtime's job.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from .variants import ViTConfig  # noqa: E402

PACKAGE = "vitedge"
register = keras.saving.register_keras_serializable(package=PACKAGE)


@register
class Gelu(layers.Layer):
    """GELU written with erf (exact) or tanh (approximate).

    Keras' built-in "gelu" lowers to a TF `Erfc` op that tf2onnx cannot convert, and an
    `Activation(fn)` comes back from load_model as the built-in; a named layer survives both.
    """

    def __init__(self, approximate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.approximate = bool(approximate)

    def call(self, x):
        if self.approximate:
            c = math.sqrt(2.0 / math.pi)
            return 0.5 * x * (1.0 + ops.tanh(c * (x + 0.044715 * x * x * x)))
        return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


@register
class PatchEmbedding(layers.Layer):
    """Cut the image into PxP patches, flatten and project each: a stride-P convolution."""

    def __init__(self, width: int, patch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.patch_size = int(patch_size)
        self.projection = layers.Conv2D(
            self.width, self.patch_size, strides=self.patch_size, padding="valid", name="projection"
        )

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None or h % self.patch_size or w % self.patch_size:
            raise ValueError(f"input {h}x{w} is not a multiple of patch size {self.patch_size}")
        self.grid = (h // self.patch_size, w // self.patch_size)
        self.projection.build(input_shape)

    def call(self, images):
        x = self.projection(images)
        return ops.reshape(x, (-1, self.grid[0] * self.grid[1], self.width))

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        return (input_shape[0], (h // self.patch_size) * (w // self.patch_size), self.width)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "patch_size": self.patch_size}


@register
class ClassToken(layers.Layer):
    """Prepend a learnable class token to the patch sequence."""

    def build(self, input_shape):
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="zeros", name="token")

    def call(self, x):
        # x[:, :1] * 0 broadcasts the token over the batch without Shape/Tile ops in exports.
        return ops.concatenate([x[:, :1, :] * 0.0 + self.token, x], axis=1)

    def compute_output_shape(self, input_shape):
        n = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], n, input_shape[2])


@register
class PositionEmbedding(layers.Layer):
    """Learned 1-D position embeddings, added; resizable over the 2-D patch grid."""

    def __init__(self, grid: tuple[int, int] | list[int], num_prefix_tokens: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.grid = (int(grid[0]), int(grid[1]))
        self.num_prefix_tokens = int(num_prefix_tokens)

    def build(self, input_shape):
        expected = self.num_prefix_tokens + self.grid[0] * self.grid[1]
        if input_shape[1] != expected:
            raise ValueError(f"sequence of {input_shape[1]} tokens, expected {expected}")
        self.embedding = self.add_weight(
            shape=(1, expected, input_shape[-1]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="embedding",
        )

    def call(self, x):
        return x + self.embedding

    def get_config(self):
        return {**super().get_config(), "grid": list(self.grid), "num_prefix_tokens": self.num_prefix_tokens}


@register
class MultiHeadSelfAttention(layers.Layer):
    """Scaled dot-product self-attention; each of `heads` heads is width/heads wide.

    One fused QKV projection (a single matrix multiply, friendlier to int8 kernels) whose
    parameter count equals separate query/key/value projections.
    """

    def __init__(self, width: int, heads: int, attention_dropout: float = 0.0, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.width = int(width)
        self.heads = int(heads)
        self.head_dim = self.width // self.heads
        self.attention_dropout = float(attention_dropout)
        self.dropout = float(dropout)
        self.qkv = layers.Dense(3 * self.width, name="qkv")
        self.proj = layers.Dense(self.width, name="proj")
        self.attn_drop = layers.Dropout(self.attention_dropout)
        self.proj_drop = layers.Dropout(self.dropout)

    def build(self, input_shape):
        self.seq_len = input_shape[1]
        self.qkv.build(input_shape)
        self.proj.build((input_shape[0], input_shape[1], self.width))

    def _split_heads(self, x):
        x = ops.reshape(x, (-1, self.seq_len, self.heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))  # (batch, heads, tokens, head_dim)

    def call(self, x, training=None):
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)
        q = self._split_heads(q) * (1.0 / math.sqrt(self.head_dim))
        k = self._split_heads(k)
        v = self._split_heads(v)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        weights = self.attn_drop(ops.softmax(scores, axis=-1), training=training)
        out = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
        out = ops.reshape(out, (-1, self.seq_len, self.width))
        return self.proj_drop(self.proj(out), training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "heads": self.heads,
            "attention_dropout": self.attention_dropout,
            "dropout": self.dropout,
        }


@register
class Mlp(layers.Layer):
    """Dense -> GELU -> Dense; the output width is explicit, never inferred."""

    def __init__(self, hidden_dim: int, out_dim: int, dropout: float = 0.0, approximate_gelu: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.out_dim = int(out_dim)
        self.dropout = float(dropout)
        self.approximate_gelu = bool(approximate_gelu)
        self.fc1 = layers.Dense(self.hidden_dim, name="fc1")
        self.act = Gelu(approximate=self.approximate_gelu, name="gelu")
        self.fc2 = layers.Dense(self.out_dim, name="fc2")
        self.drop1 = layers.Dropout(self.dropout)
        self.drop2 = layers.Dropout(self.dropout)

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.fc2.build((*input_shape[:-1], self.hidden_dim))

    def call(self, x, training=None):
        x = self.drop1(self.act(self.fc1(x)), training=training)
        return self.drop2(self.fc2(x), training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "out_dim": self.out_dim,
            "dropout": self.dropout,
            "approximate_gelu": self.approximate_gelu,
        }


@register
class EncoderBlock(layers.Layer):
    """Pre-norm Transformer block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width, heads, mlp_dim, dropout=0.0, attention_dropout=0.0, layer_norm_eps=1e-6,
                 approximate_gelu=False, **kwargs):
        super().__init__(**kwargs)
        self.width, self.heads, self.mlp_dim = int(width), int(heads), int(mlp_dim)
        self.dropout, self.attention_dropout = float(dropout), float(attention_dropout)
        self.layer_norm_eps = float(layer_norm_eps)
        self.approximate_gelu = bool(approximate_gelu)
        self.norm1 = layers.LayerNormalization(epsilon=self.layer_norm_eps, name="norm1")
        self.attn = MultiHeadSelfAttention(self.width, self.heads, self.attention_dropout, self.dropout, name="attn")
        self.norm2 = layers.LayerNormalization(epsilon=self.layer_norm_eps, name="norm2")
        self.mlp = Mlp(self.mlp_dim, self.width, self.dropout, self.approximate_gelu, name="mlp")

    def build(self, input_shape):
        for sub in (self.norm1, self.attn, self.norm2, self.mlp):
            sub.build(input_shape)

    def call(self, x, training=None):
        x = x + self.attn(self.norm1(x), training=training)
        return x + self.mlp(self.norm2(x), training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "heads": self.heads,
            "mlp_dim": self.mlp_dim,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "layer_norm_eps": self.layer_norm_eps,
            "approximate_gelu": self.approximate_gelu,
        }


@register
class TakeClassToken(layers.Layer):
    """The class token's final representation: the sequence's first position."""

    def call(self, x):
        return x[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


# Layer names that every vitedge ViT has; used to recognise (and reject) other models.
REQUIRED_LAYERS = ("patch_embedding", "class_token", "position_embedding", "encoder_norm", "head")


def build_vit(config: ViTConfig, name: str | None = None, seed: int | None = None) -> keras.Model:
    """Build the ViT described by `config`; returns a Keras functional model producing logits."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    h, w = config.image_size
    inputs = keras.Input(shape=(h, w, config.channels), name="image")
    x = PatchEmbedding(config.width, config.patch_size, name="patch_embedding")(inputs)
    x = ClassToken(name="class_token")(x)
    x = PositionEmbedding(config.grid, name="position_embedding")(x)
    x = layers.Dropout(config.dropout, name="embedding_dropout")(x)
    for i in range(config.depth):
        x = EncoderBlock(
            config.width, config.heads, config.mlp_dim,
            dropout=config.dropout, attention_dropout=config.attention_dropout,
            layer_norm_eps=config.layer_norm_eps, approximate_gelu=config.gelu == "tanh",
            name=f"encoder_block_{i}",
        )(x)
    x = layers.LayerNormalization(epsilon=config.layer_norm_eps, name="encoder_norm")(x)
    x = TakeClassToken(name="class_token_output")(x)
    logits = layers.Dense(config.num_classes, name="head")(x)
    return keras.Model(inputs, logits, name=name or config.variant.replace("-", "_"))


def resize_position_embedding(
    embedding: np.ndarray, old_grid: tuple[int, int], new_grid: tuple[int, int],
    num_prefix_tokens: int = 1, method: str = "bilinear",
) -> np.ndarray:
    """Interpolate (1, prefix + gh*gw, D) position embeddings to a new patch grid.

    The class token's embedding is kept as it is; the grid part is resized in 2-D, as the
    paper does to fine-tune at a higher resolution.
    """
    import tensorflow as tf

    embedding = np.asarray(embedding)
    prefix, grid = embedding[:, :num_prefix_tokens], embedding[:, num_prefix_tokens:]
    if tuple(old_grid) == tuple(new_grid):
        return embedding.copy()
    d = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], d)
    resized = tf.image.resize(grid, new_grid, method=method, antialias=False).numpy()
    return np.concatenate([prefix, resized.reshape(1, new_grid[0] * new_grid[1], d)], axis=1).astype(embedding.dtype)


def rebuild_at_image_size(model: keras.Model, config: ViTConfig, image_size, method: str = "bilinear"):
    """A copy of `model` at another input size; weights copied, position embeddings resized."""
    new_config = config.replace(image_size=image_size)
    new_model = build_vit(new_config, name=model.name)
    for old_layer, new_layer in zip(model.layers, new_model.layers, strict=True):
        weights = old_layer.get_weights()
        if isinstance(old_layer, PositionEmbedding):
            weights = [resize_position_embedding(weights[0], config.grid, new_config.grid, method=method)]
        new_layer.set_weights(weights)
    return new_model, new_config
