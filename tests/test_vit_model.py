"""The Keras ViT: sizes, paper-faithful structure, save/reload, position-embedding resize."""

import numpy as np
import pytest

from vitedge.variants import ViTConfig, variant_config

keras = pytest.importorskip("keras")
from vitedge import vit  # noqa: E402
from vitedge.modelfile import ModelSpec, load_model, save_model  # noqa: E402

# Reference counts at 224x224, 1000 classes (timm / the paper's released checkpoints).
REFERENCE_PARAMS = {
    "vit-ti16": 5_717_416,
    "vit-s16": 22_050_664,
    "vit-b16": 86_567_656,
    "vit-l16": 304_326_632,
}


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_counts_match_reference(name):
    config = variant_config(name)
    assert config.param_count() == REFERENCE_PARAMS[name]
    model = vit.build_vit(config)
    assert model.count_params() == REFERENCE_PARAMS[name]
    keras.backend.clear_session()


def test_output_shape_and_logits(tiny_config):
    model = vit.build_vit(tiny_config, seed=1)
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    y = model.predict(x, verbose=0)
    assert y.shape == (3, 5)
    # logits, not probabilities: rows do not sum to one and values may be negative
    assert not np.allclose(y.sum(axis=1), 1.0)
    assert model.layers[-1].name == "head" and model.layers[-1].activation.__name__ == "linear"


def test_seed_variant_is_the_blog_configuration_built_right():
    c = variant_config("seed")
    assert (c.image_size, c.patch_size, c.width, c.depth, c.heads, c.mlp_dim, c.num_classes) == (
        (256, 256), 16, 64, 8, 4, 128, 10)
    model = vit.build_vit(c)
    block = model.get_layer("encoder_block_0")
    assert block.attn.head_dim == 16  # width/heads, not the full width
    assert block.mlp.out_dim == 64  # MLP returns to the embedding width explicitly
    assert block.mlp.fc1.units == 128


def test_per_head_width_and_attention_parameter_count(tiny_config):
    model = vit.build_vit(tiny_config)
    attn = model.get_layer("encoder_block_0").attn
    assert attn.head_dim == tiny_config.width // tiny_config.heads == 8
    d = tiny_config.width
    assert attn.qkv.kernel.shape == (d, 3 * d)
    assert attn.count_params() == 4 * (d * d + d)
    # A multi-head attention with key_dim = width (the blog bug) would have `heads` times more.


def test_attention_matches_a_reference_computation(tiny_config):
    rng = np.random.default_rng(3)
    layer = vit.MultiHeadSelfAttention(tiny_config.width, tiny_config.heads)
    x = rng.normal(size=(2, 7, tiny_config.width)).astype("float32")
    y = np.asarray(layer(x))
    wqkv, bqkv = (np.asarray(w) for w in (layer.qkv.kernel, layer.qkv.bias))
    wo, bo = (np.asarray(w) for w in (layer.proj.kernel, layer.proj.bias))
    q, k, v = np.split(x @ wqkv + bqkv, 3, axis=-1)
    h, dh = tiny_config.heads, tiny_config.width // tiny_config.heads
    out = np.zeros_like(x)
    for i in range(h):
        sl = slice(i * dh, (i + 1) * dh)
        s = q[..., sl] @ np.swapaxes(k[..., sl], -1, -2) / np.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        out[..., sl] = s @ v[..., sl]
    np.testing.assert_allclose(y, out @ wo + bo, atol=1e-5)


def test_stride_p_convolution_equals_patch_flatten_dense(tiny_config):
    """The paper's formulation: cut into PxP patches, flatten each, apply one Dense."""
    rng = np.random.default_rng(0)
    p, d = tiny_config.patch_size, tiny_config.width
    layer = vit.PatchEmbedding(d, p)
    images = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    conv_out = np.asarray(layer(images))
    kernel, bias = (np.asarray(w) for w in layer.projection.get_weights())  # (p, p, 3, d)
    gh = gw = 32 // p
    patches = images.reshape(2, gh, p, gw, p, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, gh * gw, p * p * 3)
    dense_out = patches @ kernel.reshape(p * p * 3, d) + bias
    assert conv_out.shape == (2, gh * gw, d)
    np.testing.assert_allclose(conv_out, dense_out, atol=1e-4)


def test_gelu_is_exact_or_tanh():
    from math import erf, pi, sqrt, tanh
    xs = np.linspace(-4, 4, 17).astype("float32")
    exact = np.array([0.5 * x * (1 + erf(x / sqrt(2))) for x in xs])
    approx = np.array([0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))) for x in xs])
    np.testing.assert_allclose(np.asarray(vit.Gelu()(xs)), exact, atol=1e-6)
    np.testing.assert_allclose(np.asarray(vit.Gelu(approximate=True)(xs)), approx, atol=1e-6)


def test_pre_norm_structure(tiny_config):
    model = vit.build_vit(tiny_config)
    names = [layer.name for layer in model.layers]
    assert names[:5] == ["image", "patch_embedding", "class_token", "position_embedding", "embedding_dropout"]
    assert names[-3:] == ["encoder_norm", "class_token_output", "head"]
    pos = model.get_layer("position_embedding").embedding
    assert tuple(pos.shape) == (1, tiny_config.seq_len, tiny_config.width)


def test_save_reload_safe_mode_identical(tmp_path, tiny_config):
    model = vit.build_vit(tiny_config.replace(dropout=0.1), seed=4)
    spec = ModelSpec(tiny_config, labels=list("abcde"))
    path = save_model(model, spec, tmp_path / "m.keras")
    again = keras.saving.load_model(path, safe_mode=True)  # no custom_objects needed
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    gelu = again.get_layer("encoder_block_0").mlp.act
    assert isinstance(gelu, vit.Gelu)  # not swapped for Keras' built-in gelu on reload
    loaded, loaded_spec = load_model(path)
    assert loaded_spec.labels == list("abcde")
    assert loaded_spec.config == tiny_config


def test_position_embedding_resize_keeps_class_token_and_grid():
    d = 4
    old = np.zeros((1, 1 + 2 * 3, d), "float32")
    old[0, 0] = [9, 8, 7, 6]  # class token
    grid = np.arange(6, dtype="float32").reshape(2, 3)
    old[0, 1:] = np.repeat(grid.reshape(6, 1), d, axis=1)
    same = vit.resize_position_embedding(old, (2, 3), (2, 3))
    np.testing.assert_array_equal(same, old)
    new = vit.resize_position_embedding(old, (2, 3), (4, 6))
    assert new.shape == (1, 1 + 24, d)
    np.testing.assert_array_equal(new[0, 0], old[0, 0])
    new_grid = new[0, 1:, 0].reshape(4, 6)
    # row-major grid order survives: values grow along rows and columns as in the original
    assert np.all(np.diff(new_grid, axis=1) >= 0) and np.all(np.diff(new_grid, axis=0) >= 0)
    assert new_grid.min() >= 0 and new_grid.max() <= 5
    # a constant grid stays constant under interpolation
    const = old.copy()
    const[0, 1:] = 3.0
    np.testing.assert_allclose(vit.resize_position_embedding(const, (2, 3), (5, 7))[0, 1:], 3.0, atol=1e-6)


def test_rebuild_at_new_image_size(tiny_config):
    model = vit.build_vit(tiny_config, seed=2)
    bigger, cfg = vit.rebuild_at_image_size(model, tiny_config, (48, 64))
    assert cfg.grid == (6, 8)
    assert bigger.output_shape == (None, 5)
    old_pe = model.get_layer("position_embedding").get_weights()[0]
    new_pe = bigger.get_layer("position_embedding").get_weights()[0]
    assert new_pe.shape == (1, 49, tiny_config.width)
    np.testing.assert_array_equal(new_pe[0, 0], old_pe[0, 0])
    np.testing.assert_array_equal(bigger.get_layer("head").get_weights()[0], model.get_layer("head").get_weights()[0])


def test_config_rejects_indivisible_sizes():
    from vitedge.errors import VitedgeError

    with pytest.raises(VitedgeError, match="not divisible by the patch size"):
        ViTConfig(image_size=(30, 32), patch_size=8, width=32, depth=1, heads=4, mlp_dim=64)
    with pytest.raises(VitedgeError, match="heads"):
        ViTConfig(image_size=(32, 32), patch_size=8, width=30, depth=1, heads=4, mlp_dim=64)
