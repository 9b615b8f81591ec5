import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run `python -m vitedge ARGS` in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vitedge", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout,
    )


def assert_one_line_error(proc):
    """A failed command: non-zero exit, exactly one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not _is_library_noise(ln)]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("vitedge: error:"), lines[0]
    return lines[0]


def _is_library_noise(line: str) -> bool:
    # TensorFlow/absl chatter that a library prints on import is not ours to silence entirely.
    return line.startswith(("WARNING: All log messages before absl", "I0000", "W0000", "E0000"))


def tiny_vit_config():
    """The tiny test ViT: 32x32, patch 8, width 32, depth 2, 5 classes (scripts/measure_tolerances.py too)."""
    from vitedge.variants import ViTConfig

    return ViTConfig(image_size=(32, 32), patch_size=8, width=32, depth=2, heads=4, mlp_dim=64, num_classes=5,
                     variant="tiny-test")


@pytest.fixture(scope="session")
def tiny_config():
    return tiny_vit_config()


TINY_LABELS = ["apple", "banana", "cherry", "date", "elderberry"]


def make_images(folder, count=12, size=(40, 40), seed=0):
    """`count` seeded synthetic RGB images (gradients, blocks, noise) as PNG/JPEG under `folder`."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    paths = []
    for i in range(count):
        base = np.stack([xx * rng.uniform(0, 255), yy * rng.uniform(0, 255), np.full((h, w), rng.uniform(0, 255))], -1)
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        base[y0:y0 + h // 3, x0:x0 + w // 3] = rng.uniform(0, 255, size=3)
        img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        path = folder / ("sub" if i % 3 == 0 else "") / f"img{i:03d}{'.jpg' if i % 4 == 1 else '.png'}"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory):
    """A folder of 12 synthetic calibration images (some in a subfolder, PNG and JPEG)."""
    folder = tmp_path_factory.mktemp("calib")
    make_images(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_config):
    """Path to a tiny labelled vitedge .keras (32x32, patch 8, width 32, depth 2, 5 classes), built once."""
    from vitedge.modelfile import ModelSpec, save_model
    from vitedge.vit import build_vit

    path = tmp_path_factory.mktemp("model") / "tiny-vit.keras"
    save_model(build_vit(tiny_config, seed=1), ModelSpec(tiny_config, TINY_LABELS), path)
    return path


@pytest.fixture(scope="session")
def calib(calib_dir, tiny_config):
    """The calibration set export uses for `tiny_model` (every image of `calib_dir`)."""
    from vitedge.calibration import load_calibration
    from vitedge.preprocess import Preprocessing

    return load_calibration(calib_dir, None, tiny_config.image_size, Preprocessing())


@pytest.fixture(scope="session")
def keras_logits(tiny_model, calib):
    """`tiny_model`'s Keras logits on `calib`: the reference exported files are compared with."""
    from vitedge.modelfile import load_model

    model, _ = load_model(tiny_model)
    return model.predict(calib.images, verbose=0)


TINY_EXPORT_SAID: list[str] = []  # what export said while making tiny_artifacts


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory, tiny_model, calib_dir):
    """{(format, precision): Path} for every precision of `tiny_model`, exported once.

    Keys: ("tflite", fp32|fp16|dynamic|int8|int16x8) and ("onnx", fp32|fp16|dynamic|int8).
    Files are named tiny-vit_<precision>.<tflite|onnx>; they carry vitedge metadata (labels,
    preprocessing, verification figures). One call per format shares its conversion set-up.
    Exported with scores="logits" (TFLite's default is probabilities, a softmax at the end) so
    tests can compare raw logits with Keras; tests/test_mobile.py covers the default.
    """
    from vitedge.export import export_artifacts

    out = tmp_path_factory.mktemp("artifacts")
    found = {}
    for fmt in ("tflite", "onnx"):
        for r in export_artifacts(tiny_model, formats=fmt, precisions="all", calib_dir=calib_dir, out_dir=out,
                                  scores="logits", say=TINY_EXPORT_SAID.append):
            found[(r.format, r.precision)] = r.path
    return found
