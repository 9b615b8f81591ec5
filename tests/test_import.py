"""Pretrained-weight import (issue 8): parity with the reference implementations in PyTorch.

A tiny randomly initialised `transformers` ViT (width 32, 2 blocks, 4 heads, 32x32 images,
8-pixel patches) is the reference. Its weights are saved as a Hugging Face folder, rewritten
under timm's and Google's tensor names, imported, and the Keras logits compared with PyTorch's
on the same image (NCHW for PyTorch, NHWC for Keras): max abs diff <= 1e-4.

timm itself is not installed: it imports torchvision at module level, and PyPI's torchvision
wheels need a CUDA build of torch (the CPU torch 2.13.0 used here cannot load them). So the
timm state dict is written with timm's key names from the reference model, and compared
against the reference logits (timm's ViT and HF's compute the same function).
"""

import argparse
import json
import zipfile

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("keras")

from safetensors.numpy import load_file, save_file  # noqa: E402

from vitedge.errors import UsageError, VitedgeError  # noqa: E402
from vitedge.importers import import_checkpoint  # noqa: E402
from vitedge.modelfile import load_model, read_spec  # noqa: E402
from vitedge.preprocess import preprocess_image  # noqa: E402

TOL = 1e-4  # parity bound, logits
LABELS = ["apple", "bear", "cloud", "dune", "eel"]
D, L, H, P, S = 32, 2, 4, 8, 32  # width, depth, heads, patch, image side


def reference(folder, act="gelu", eps=1e-12, headless=False, seed=0):
    """A tiny HF ViT with weights of O(1) (not the near-zero init, so parity means something), saved."""
    config = transformers.ViTConfig(
        hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=2 * D, image_size=S,
        patch_size=P, hidden_act=act, layer_norm_eps=eps, num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
    )
    torch.manual_seed(seed)
    model = (transformers.ViTModel(config) if headless else transformers.ViTForImageClassification(config)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            norm_weight = "layernorm" in name and name.endswith("weight")
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if norm_weight else 0.3 * torch.randn_like(p))
    model.save_pretrained(folder)
    return model


def images(n=2, h=S, w=S, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, h, w)).astype("float32")


def torch_logits(model, x, **kw):
    with torch.no_grad():
        return model(torch.from_numpy(x), **kw).logits.numpy()


def keras_logits(model, x):
    return np.asarray(model(x.transpose(0, 2, 3, 1)))


def position_embedding(model):
    return np.asarray(model.get_layer("position_embedding").embedding)


def resized_reference(pos, grid, mode, **kw):
    """PyTorch's F.interpolate on the patch grid of (1, 1 + 16, D) embeddings; class token kept."""
    side = int(np.sqrt(pos.shape[1] - 1))
    t = torch.from_numpy(np.ascontiguousarray(pos[:, 1:])).reshape(1, side, side, -1).permute(0, 3, 1, 2)
    r = torch.nn.functional.interpolate(t, size=grid, mode=mode, **kw).permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
    return np.concatenate([pos[:, :1], r.numpy()], axis=1)


def hf_tensors(folder):
    return load_file(str(folder / "model.safetensors"))


def to_timm(sd):
    """HF (save_pretrained names) -> timm VisionTransformer names (PyTorch layouts kept)."""
    out = {"cls_token": sd["vit.embeddings.cls_token"], "pos_embed": sd["vit.embeddings.position_embeddings"],
           "patch_embed.proj.weight": sd["vit.embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": sd["vit.embeddings.patch_embeddings.projection.bias"],
           "norm.weight": sd["vit.layernorm.weight"], "norm.bias": sd["vit.layernorm.bias"],
           "head.weight": sd["classifier.weight"], "head.bias": sd["classifier.bias"]}
    for i in range(L):
        h, t = f"vit.encoder.layer.{i}.", f"blocks.{i}."
        a = h + "attention.attention."
        for part in ("weight", "bias"):
            out[t + f"attn.qkv.{part}"] = np.concatenate([sd[a + f"{x}.{part}"] for x in ("query", "key", "value")])
            out[t + f"norm1.{part}"] = sd[h + f"layernorm_before.{part}"]
            out[t + f"attn.proj.{part}"] = sd[h + f"attention.output.dense.{part}"]
            out[t + f"norm2.{part}"] = sd[h + f"layernorm_after.{part}"]
            out[t + f"mlp.fc1.{part}"] = sd[h + f"intermediate.dense.{part}"]
            out[t + f"mlp.fc2.{part}"] = sd[h + f"output.dense.{part}"]
    return out


def to_npz(sd):
    """HF -> the Google/AugReg .npz names and JAX layouts (per-head attention kernels)."""
    dh = D // H
    out = {"embedding/kernel": sd["vit.embeddings.patch_embeddings.projection.weight"].transpose(2, 3, 1, 0),
           "embedding/bias": sd["vit.embeddings.patch_embeddings.projection.bias"],
           "cls": sd["vit.embeddings.cls_token"],
           "Transformer/posembed_input/pos_embedding": sd["vit.embeddings.position_embeddings"],
           "Transformer/encoder_norm/scale": sd["vit.layernorm.weight"],
           "Transformer/encoder_norm/bias": sd["vit.layernorm.bias"],
           "head/kernel": sd["classifier.weight"].T, "head/bias": sd["classifier.bias"]}
    for i in range(L):
        h, g = f"vit.encoder.layer.{i}.", f"Transformer/encoderblock_{i}/"
        att = g + "MultiHeadDotProductAttention_1/"
        for x, name in (("query", "query"), ("key", "key"), ("value", "value")):
            out[att + f"{name}/kernel"] = sd[h + f"attention.attention.{x}.weight"].T.reshape(D, H, dh)
            out[att + f"{name}/bias"] = sd[h + f"attention.attention.{x}.bias"].reshape(H, dh)
        out[att + "out/kernel"] = sd[h + "attention.output.dense.weight"].T.reshape(H, dh, D)
        out[att + "out/bias"] = sd[h + "attention.output.dense.bias"]
        for ln, src in (("LayerNorm_0", "layernorm_before"), ("LayerNorm_2", "layernorm_after")):
            out[g + f"{ln}/scale"] = sd[h + f"{src}.weight"]
            out[g + f"{ln}/bias"] = sd[h + f"{src}.bias"]
        for j, src in enumerate(("intermediate.dense", "output.dense")):
            out[g + f"MlpBlock_3/Dense_{j}/kernel"] = sd[h + f"{src}.weight"].T
            out[g + f"MlpBlock_3/Dense_{j}/bias"] = sd[h + f"{src}.bias"]
    return out


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """The reference classifier, saved as an HF folder with a preprocessor config."""
    folder = tmp_path_factory.mktemp("hf") / "vit-tiny"
    model = reference(folder)
    transformers.ViTImageProcessor(image_mean=[0.4, 0.45, 0.5], image_std=[0.2, 0.25, 0.3], resample=3,
                                   size={"height": S, "width": S}).save_pretrained(folder)
    return folder, model


def test_hf_classifier_parity_labels_and_preprocessing(hf, tmp_path):
    folder, ref = hf
    x = images()
    want = torch_logits(ref, x)
    assert want.std() > 0.3  # weights of O(1): a wrong mapping could not hide under 1e-4
    model, spec, notes = import_checkpoint(folder)
    assert np.abs(keras_logits(model, x) - want).max() <= TOL
    assert spec.labels == LABELS and spec.config.layer_norm_eps == 1e-12 and spec.config.gelu == "erf"
    assert (spec.config.width, spec.config.depth, spec.config.heads, spec.config.mlp_dim) == (D, L, H, 2 * D)

    # Preprocessing carried over: vitedge's one preprocessing function gives what HF's processor gives.
    pre = spec.preprocessing
    assert pre.mean == (0.4, 0.45, 0.5) and pre.interpolation == "bicubic" and pre.resize == "stretch"
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 41, 3), dtype=np.uint8))
    processor = transformers.ViTImageProcessor.from_pretrained(folder)
    theirs = processor(img, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    ours = preprocess_image(img, (S, S), pre)
    assert np.abs(ours - theirs).max() < 1e-5

    # pytorch_model.bin written by torch.save (transformers' in-memory names), read without torch.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "config.json").write_text((folder / "config.json").read_text())
    torch.save(ref.state_dict(), bin_dir / "pytorch_model.bin")
    model2, _, _ = import_checkpoint(bin_dir)
    assert np.abs(keras_logits(model2, x) - want).max() <= TOL


def test_hf_vitmodel_without_classifier(tmp_path):
    ref = reference(tmp_path / "base", headless=True)
    with pytest.raises(UsageError, match="no classification head"):
        import_checkpoint(tmp_path / "base")
    model, spec, notes = import_checkpoint(tmp_path / "base", num_classes=3)
    assert any("pooler dropped" in n for n in notes) and any("head replaced" in n for n in notes)
    assert spec.info["head"].startswith("replaced") and spec.labels == ["class_0", "class_1", "class_2"]
    x = images()
    with torch.no_grad():
        cls = ref(torch.from_numpy(x)).last_hidden_state[:, 0].numpy()  # after the final LayerNorm
    head = model.get_layer("head")
    want = cls @ np.asarray(head.kernel) + np.asarray(head.bias)
    assert np.abs(keras_logits(model, x) - want).max() <= TOL


def test_google_npz_parity(tmp_path):
    # Flax's ViT: tanh GELU, LayerNorm eps 1e-6; the reference is built the same way.
    ref = reference(tmp_path / "ref", act="gelu_pytorch_tanh", eps=1e-6, seed=1)
    npz = tmp_path / "ViT-tiny.npz"
    np.savez(npz, **to_npz(hf_tensors(tmp_path / "ref")))
    x = images(seed=2)
    model, spec, _ = import_checkpoint(npz)
    assert spec.config.gelu == "tanh" and spec.config.heads == H and spec.config.layer_norm_eps == 1e-6
    assert spec.preprocessing.mean == (0.5, 0.5, 0.5)
    assert np.abs(keras_logits(model, x) - torch_logits(ref, x)).max() <= TOL

    # An ImageNet-21k paper checkpoint has a pre-logits layer: the head cannot be kept as it is.
    tensors = to_npz(hf_tensors(tmp_path / "ref"))
    tensors.update({"pre_logits/kernel": np.eye(D, dtype="float32"), "pre_logits/bias": np.zeros(D, "float32")})
    np.savez(tmp_path / "in21k.npz", **tensors)
    with pytest.raises(VitedgeError, match="pre-logits"):
        import_checkpoint(tmp_path / "in21k.npz")
    _, spec, _ = import_checkpoint(tmp_path / "in21k.npz", num_classes=7)
    assert spec.config.num_classes == 7

    # Resized like vit_jax does it: scipy.ndimage.zoom(order=1) = corner-aligned bilinear.
    model, _, notes = import_checkpoint(npz, image_size="48x40")
    assert any("zoom-linear" in n for n in notes)
    want = resized_reference(tensors["Transformer/posembed_input/pos_embedding"], (6, 5), "bilinear",
                             align_corners=True)
    assert np.abs(position_embedding(model) - want).max() < 1e-5


def test_timm_state_dict_parity(tmp_path):
    ref = reference(tmp_path / "ref", eps=1e-6, seed=3)  # timm: exact GELU, eps 1e-6
    sd = to_timm(hf_tensors(tmp_path / "ref"))
    save_file(sd, str(tmp_path / "vit_tiny.safetensors"))
    # A training checkpoint: the state dict beside other Python objects (read as inert stubs).
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in sd.items()}, "epoch": 3,
                "args": argparse.Namespace(lr=0.1, model="vit")}, tmp_path / "checkpoint.pth")
    x = images(seed=4)
    want = torch_logits(ref, x)
    with pytest.raises(UsageError, match="--heads"):  # width 32: no standard heads to assume
        import_checkpoint(tmp_path / "vit_tiny.safetensors")
    for name in ("vit_tiny.safetensors", "checkpoint.pth"):
        model, spec, _ = import_checkpoint(tmp_path / name, heads=H)
        assert np.abs(keras_logits(model, x) - want).max() <= TOL, name
    assert spec.preprocessing.interpolation == "bicubic" and spec.preprocessing.crop_pct == 0.9

    # A timm hub folder: config.json names the model, its labels and pretrained_cfg preprocessing.
    hub = tmp_path / "timm-hub"
    hub.mkdir()
    save_file(sd, str(hub / "model.safetensors"))
    (hub / "config.json").write_text(json.dumps({
        "architecture": "vit_custom_tiny", "num_classes": 5, "label_names": LABELS,
        "pretrained_cfg": {"input_size": [3, S, S], "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
                           "std": [0.229, 0.224, 0.225], "crop_pct": 0.875, "crop_mode": "center"}}))
    model, spec, notes = import_checkpoint(hub, heads=H)
    assert spec.labels == LABELS and spec.preprocessing.std == (0.229, 0.224, 0.225)
    assert (spec.preprocessing.resize, spec.preprocessing.interpolation) == ("center_crop", "bilinear")
    assert np.abs(keras_logits(model, x) - want).max() <= TOL

    # Resized like timm's resample_abs_pos_embed: bicubic with antialias=True (up and down).
    for size, grid in (("48x40", (6, 5)), ("24x16", (3, 2))):
        model, _, _ = import_checkpoint(tmp_path / "vit_tiny.safetensors", heads=H, image_size=size)
        want = resized_reference(sd["pos_embed"], grid, "bicubic", antialias=True)
        assert np.abs(position_embedding(model) - want).max() < 1e-5, size


def test_non_square_position_embedding_resize_matches_hf(hf):
    """HF interpolates with PyTorch's bicubic (a=-0.75, no antialias); the import reproduces it.

    TensorFlow's bicubic (Keys, a=-0.5; vit.resize_position_embedding) differs by a few percent
    of the embeddings' scale: the test records that it is measurably further from the reference.
    Tolerance: logits 1e-4 (as without resize), embeddings 1e-5.
    """
    folder, ref = hf
    x = images(1, 48, 40, seed=5)
    want = torch_logits(ref, x, interpolate_pos_encoding=True)
    model, spec, notes = import_checkpoint(folder, image_size="48x40")
    assert spec.config.grid == (6, 5) and spec.info["source_image_size"] == [S, S]
    ours = np.abs(keras_logits(model, x) - want).max()
    assert ours <= TOL

    from vitedge.vit import resize_position_embedding

    with torch.no_grad():
        emb = ref.vit.embeddings
        theirs = emb.interpolate_pos_encoding(torch.zeros(1, 31, D), 48, 40).numpy()
    tf_bicubic = resize_position_embedding(emb.position_embeddings.detach().numpy(), (4, 4), (6, 5), method="bicubic")
    ours_pos = np.asarray(model.get_layer("position_embedding").embedding)
    assert np.abs(ours_pos - theirs).max() < 1e-5
    assert np.abs(tf_bicubic - theirs).max() > 10 * np.abs(ours_pos - theirs).max()


def test_cli_import_end_to_end(hf, tmp_path):
    folder, ref = hf
    out = tmp_path / "imported.keras"
    proc = run_cli("build", "--weights", folder, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["source_format"] == "hf" and summary["head"] == "imported" and summary["num_classes"] == 5
    model, spec = load_model(out)
    x = images(seed=6)
    assert np.abs(keras_logits(model, x) - torch_logits(ref, x)).max() <= TOL
    assert read_spec(out).preprocessing.std == (0.2, 0.25, 0.3) and spec.labels == LABELS


def test_bad_input_one_line_errors_and_nothing_written(hf, tmp_path):
    folder, _ = hf
    out = tmp_path / "out.keras"

    def fails(*args, cwd=None):
        line = assert_one_line_error(run_cli("build", *args, "-o", out, cwd=cwd))
        assert not out.exists() and not list(tmp_path.glob(".out.*"))
        return line

    assert "download it first" in fails("--weights", "google/vit-base-patch16-224", cwd=tmp_path)

    sd = hf_tensors(folder)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    partial = {k: v for k, v in sd.items() if "layer.1.intermediate" not in k and k != "vit.layernorm.bias"}
    save_file(partial, str(broken / "model.safetensors"))
    line = fails("--weights", broken)
    assert "missing tensors" in line and "vit.encoder.layer.1.intermediate.dense.weight" in line
    assert "vit.layernorm.bias" in line

    bad = dict(sd)
    bad["vit.encoder.layer.0.output.dense.weight"] = np.zeros((D, 3 * D), "float32")
    save_file(bad, str(broken / "model.safetensors"))
    with pytest.raises(VitedgeError, match=r"vit\.encoder\.layer\.0\.output\.dense\.weight has shape \(32, 96\), which disagrees"):
        import_checkpoint(broken)

    data = (folder / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert "truncated" in fails("--weights", broken)

    (tmp_path / "half.pth").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    assert "truncated" in fails("--weights", tmp_path / "half.pth")

    swin = tmp_path / "swin"
    swin.mkdir()
    (swin / "config.json").write_text(json.dumps({"model_type": "swin", "architectures": ["SwinForImageClassification"]}))
    save_file({"x": np.zeros(2, "float32")}, str(swin / "model.safetensors"))
    assert "SwinForImageClassification" in fails("--weights", swin)

    assert "--weights reads the architecture" in fails("--weights", folder, "--width", "64")

    # The same errors, checked in-process (no subprocess start-up each).
    resnet = {"conv1.weight": np.zeros((8, 3, 7, 7), "float32"), "fc.weight": np.zeros((5, 8), "float32")}
    save_file(resnet, str(tmp_path / "resnet.safetensors"))
    with pytest.raises(VitedgeError, match="no ViT tensors"):
        import_checkpoint(tmp_path / "resnet.safetensors")
    deit = to_timm(sd)
    deit["dist_token"] = np.zeros((1, 1, D), "float32")
    save_file(deit, str(tmp_path / "deit.safetensors"))
    with pytest.raises(VitedgeError, match="distilled DeiT"):
        import_checkpoint(tmp_path / "deit.safetensors", heads=H)
    with zipfile.ZipFile(tmp_path / "not_vit.npz", "w") as zf:
        zf.writestr("a.npy", b"")
    with pytest.raises(VitedgeError, match="npz"):
        import_checkpoint(tmp_path / "not_vit.npz")
    np.savez(tmp_path / "other.npz", **{"conv_root/kernel": np.zeros((7, 7, 3, 8), "float32")})
    with pytest.raises(VitedgeError, match="hybrid ResNet"):
        import_checkpoint(tmp_path / "other.npz")
    with pytest.raises(UsageError, match="--variant vit-b16 gives 12 heads but the checkpoint has 4"):
        import_checkpoint(folder, variant="vit-b16")
