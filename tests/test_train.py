"""`vitedge train`: the input pipeline equals the runtime's preprocessing, training learns, runs are
reproducible and resumable, bad input fails cleanly, and the shipped default model is as accurate
as models/README.md says."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, assert_one_line_error, run_cli
from PIL import Image

from vitedge.data import fashion_mnist as fm
from vitedge.data.imagefolder import load_images, scan_image_folder
from vitedge.errors import VitedgeError
from vitedge.modelfile import read_spec
from vitedge.preprocess import Preprocessing, normalize_pixels, preprocess_image
from vitedge.train import TrainSettings, first_by_name, split_validation
from vitedge.variants import ViTConfig

SHIPPED = REPO / "models" / "fmnist-vit.keras"
SHIPPED_SUBSET = 500  # the first 500 Fashion-MNIST test images (test-00000 .. test-00499)

TINY = ViTConfig(image_size=(16, 16), patch_size=4, width=32, depth=2, heads=2, mlp_dim=64, num_classes=3,
                 variant="tiny-test")


def _pattern(kind: int, rng) -> np.ndarray:
    """Three easily told apart classes (each unchanged by a horizontal flip): bright top, bottom, centre."""
    img = np.zeros((16, 16), np.uint8)  # black background, as in Fashion-MNIST
    bright = rng.integers(120, 256, (16, 16)).astype(np.uint8)
    region = [np.s_[:8], np.s_[8:], np.s_[4:12, 4:12]][kind]
    img[region] = bright[region]
    return img


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A small ImageFolder: 3 classes x 24 grayscale PNGs, 16x16."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for kind, name in enumerate(("top", "bottom", "centre")):
        (root / name).mkdir()
        for i in range(24):
            Image.fromarray(_pattern(kind, rng), mode="L").save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def tiny_run(shapes, tmp_path_factory):
    from vitedge.train import train

    ckpt = tmp_path_factory.mktemp("ckpt") / "run"
    settings = TrainSettings(epochs=5, batch_size=12, lr=3e-3, warmup_epochs=0.5, val_split=0.25, seed=7)
    return train(shapes, TINY, settings, ckpt), settings


def test_pipeline_equals_preprocess_image(tmp_path):
    """What tf.data feeds the model is bit-identical to preprocess_image, resize and odd modes included."""
    from vitedge.train import make_dataset

    rng = np.random.default_rng(1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(tmp_path / "a" / "gray.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB").save(tmp_path / "a" / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").save(tmp_path / "b" / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (40, 24, 3), dtype=np.uint8), "RGB").save(tmp_path / "b" / "photo.jpg", quality=80)
    pre = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), background=(255, 255, 255))
    folder = scan_image_folder(tmp_path)
    expected = np.stack([preprocess_image(p, (16, 16), pre) for p in folder.files])
    pixels = load_images(folder, (16, 16), pre)
    batches = list(make_dataset(pixels, folder.labels, 2, pre, batch_size=3).as_numpy_iterator())
    fed = np.concatenate([x for x, _ in batches])
    assert fed.dtype == np.float32 and fed.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(fed, expected)
    labels = np.concatenate([y for _, y in batches]).argmax(-1)
    np.testing.assert_array_equal(labels, folder.labels)
    # The training pipeline (shuffled, no augmentation) feeds the same images, each exactly once.
    settings = TrainSettings(augment="none", batch_size=2, seed=3)
    train_fed = np.concatenate([x for x, _ in make_dataset(pixels, folder.labels, 2, pre, 2, settings).as_numpy_iterator()])
    assert sorted(x.tobytes() for x in train_fed) == sorted(x.tobytes() for x in expected)


def test_augmentation_only_moves_pixels(shapes):
    """Every augmented image is a flipped and/or shifted original, the gap filled with background."""
    from vitedge.train import make_dataset

    pre = Preprocessing()
    folder = scan_image_folder(shapes)
    pixels = load_images(folder, (16, 16), pre)
    settings = TrainSettings(augment="flip-shift", max_shift=0.25, seed=1)

    def run(epoch):
        return np.concatenate([x for x, _ in make_dataset(pixels, folder.labels, 3, pre, 8, settings, epoch=epoch)])

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)  # same seed and epoch: same augmented batches
    assert not np.array_equal(a, c)  # another epoch: other draws
    candidates = set()
    for img in pixels:
        for flipped in (img, img[:, ::-1]):
            padded = np.pad(flipped, ((4, 4), (4, 4), (0, 0)))  # background (0, 0, 0)
            candidates.update(padded[y:y + 16, x:x + 16].tobytes() for y in range(9) for x in range(9))
    as_uint8 = np.rint(a * 127.5 + 127.5).astype(np.uint8)
    np.testing.assert_array_equal(normalize_pixels(as_uint8, pre), a)
    assert all(img.tobytes() in candidates for img in as_uint8)
    assert sum(img.tobytes() in {p.tobytes() for p in pixels} for img in as_uint8) < len(a)  # some moved


def test_split_validation_is_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 30, 2])
    tr, va = split_validation(labels, 0.1, seed=5)
    assert np.bincount(labels[va]).tolist() == [1, 2, 3, 1]
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    np.testing.assert_array_equal(va, split_validation(labels, 0.1, seed=5)[1])
    assert not np.array_equal(va, split_validation(labels, 0.1, seed=6)[1])


def test_tiny_training_lowers_the_loss_and_keeps_the_labels(tiny_run):
    result, settings = tiny_run
    losses = [row["loss"] for row in result.history]
    assert len(losses) == settings.epochs
    assert losses[-1] < 0.8 * losses[0], losses
    assert result.best_val_accuracy >= 0.6, result.history  # 3 easy classes, chance is 1/3
    assert result.spec.labels == ["bottom", "centre", "top"]
    assert result.best_epoch == max(result.history, key=lambda r: (r["val_accuracy"], -r["epoch"]))["epoch"]
    lrs = [row["lr"] for row in result.history]
    assert lrs[-1] < lrs[1]  # cosine decay after the warm-up


def test_same_seed_same_weights_and_resume_continues_exactly(shapes, tiny_run, tmp_path):
    from vitedge.train import train

    result, settings = tiny_run
    again = train(shapes, TINY, settings, tmp_path / "a")
    for w1, w2 in zip(result.model.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)

    def stop_at_epoch_4(kind, info):
        if kind == "epoch_start" and info["epoch"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(shapes, TINY, settings, tmp_path / "b", on_event=stop_at_epoch_4)
    assert json.loads((tmp_path / "b" / "state.json").read_text())["epochs_done"] == 3
    with pytest.raises(VitedgeError, match="unfinished run; add --resume"):
        train(shapes, TINY, settings, tmp_path / "b")
    with pytest.raises(VitedgeError, match=r"another run \(lr 0.003 -> 0.001"):
        train(shapes, TINY, dataclasses.replace(settings, lr=1e-3), tmp_path / "b", resume=True)
    resumed = train(shapes, TINY, settings, tmp_path / "b", resume=True)
    assert resumed.resumed_from == 3 and [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5]
    for w1, w2 in zip(result.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)


def test_train_command_end_to_end_and_bad_input(shapes, tmp_path):
    out = tmp_path / "m.keras"
    common = ["--patch-size", 4, "--width", 32, "--depth", 1, "--heads", 2, "--mlp-dim", 64, "--image-size", 16,
              "--batch-size", 16]
    proc = run_cli("train", "--data", shapes, *common, "--epochs", 2, "--test-data", shapes, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["test"]["images"] == 72 and len(summary["history"]) == 2
    assert re.search(r"epoch 2: loss", proc.stderr)
    spec = read_spec(out)
    assert spec.labels == ["bottom", "centre", "top"] and spec.config.image_size == (16, 16)
    assert spec.info["training"]["settings"]["epochs"] == 2
    assert not (tmp_path / "m.ckpt").exists()  # checkpoint removed after success

    # --init: fine-tuning starts from the trained weights, so its first epoch beats a fresh start's.
    tuned = run_cli("train", "--data", shapes, *common, "--epochs", 1, "--lr", 1e-4, "--init", out,
                    "-o", tmp_path / "ft.keras", "--json")
    assert tuned.returncode == 0, tuned.stderr
    assert json.loads(tuned.stdout)["history"][0]["loss"] < summary["history"][0]["loss"]
    assert read_spec(tmp_path / "ft.keras").info["training"]["init"]["file"] == "m.keras"  # provenance kept
    other = [c if c != 32 else 48 for c in common]  # width 48: another architecture
    line = assert_one_line_error(run_cli("train", "--data", shapes, *other, "--init", out, "-o", tmp_path / "x.keras"))
    assert "another architecture" in line and "width" in line

    bad = tmp_path / "bad.keras"
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (16, 16)).save(flat / "x.png")
    assert "no class sub-folders" in assert_one_line_error(run_cli("train", "--data", flat, "-o", bad))
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    Image.new("L", (16, 16)).save(empty / "a" / "x.png")
    assert "class 'b' has no images" in assert_one_line_error(run_cli("train", "--data", empty, "-o", bad))
    line = assert_one_line_error(run_cli("train", "--data", shapes, "--image-size", 30, "-o", bad))
    assert "not divisible by the patch size" in line
    assert "--force" in assert_one_line_error(run_cli("train", "--data", shapes, "-o", out))
    assert "no checkpoint to resume" in assert_one_line_error(run_cli("train", "--data", shapes, "-o", bad, "--resume"))
    assert not bad.exists() and not (tmp_path / "bad.ckpt").exists()


def _stated_accuracy(pattern: str, what: str) -> float:
    text = (REPO / "models" / "README.md").read_text()
    m = re.search(pattern, text)
    assert m, f"models/README.md must state the top-1 on {what}"
    return float(m.group(1)) / 100


def _stated_subset_accuracy() -> float:
    return _stated_accuracy(r"first 500 test images:\s*\**([\d.]+)\s*%", "the first 500 test images")


HAS_FMNIST = fm.find_local(("test",)) is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FMNIST, reason="Fashion-MNIST not on disk (vitedge data fashion-mnist --download-only)")
def test_shipped_default_model_reaches_90_percent_on_the_full_test_split(tmp_path):
    """Measured, not read: all 10,000 test images through PNG files (about a minute on 2 cores)."""
    from vitedge.modelfile import load_model
    from vitedge.train import evaluate

    fm.write_image_folder(tmp_path / "fm", splits=("test",))
    model, spec = load_model(SHIPPED)
    result = evaluate(model, spec, tmp_path / "fm")
    assert result["images"] == 10_000
    assert result["top1"] >= 0.90, result
    stated = _stated_accuracy(r"full 10,000-image test split:\s*\**([\d.]+)\s*%", "the full 10,000-image test split")
    assert abs(result["top1"] - stated) <= 0.0001, (result, stated)  # at most 1 image differs


@pytest.mark.skipif(not HAS_FMNIST, reason="Fashion-MNIST not on disk (vitedge data fashion-mnist --download-only)")
def test_shipped_default_model_reaches_its_stated_accuracy(tmp_path):
    """models/fmnist-vit.keras on the first 500 Fashion-MNIST test images, through PNG files."""
    from vitedge.modelfile import load_model
    from vitedge.train import evaluate

    assert SHIPPED.is_file(), f"{SHIPPED} is part of the repository (models/README.md says how it was trained)"
    spec = read_spec(SHIPPED)
    assert spec.labels == sorted(fm.FOLDER_NAMES)
    assert spec.config.image_size == (28, 28) and spec.config.channels == 3 and spec.config.num_classes == 10
    fm.write_image_folder(tmp_path / "fm", limit=SHIPPED_SUBSET)
    folder = scan_image_folder(tmp_path / "fm" / "test")
    assert [p.name for p in np.asarray(folder.files)[first_by_name(folder, 3)]] == [
        "test-00000.png", "test-00001.png", "test-00002.png"]
    model, spec = load_model(SHIPPED)
    result = evaluate(model, spec, tmp_path / "fm" / "test")
    assert result["images"] == SHIPPED_SUBSET
    stated = _stated_subset_accuracy()
    assert abs(result["top1"] - stated) <= 0.004, (result, stated)  # at most 2 images differ
