"""`vitedge predict`: the command, its output, its bad inputs, and the device path without TensorFlow."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, TINY_LABELS, assert_one_line_error, make_images, run_cli
from PIL import Image

from vitedge.predict import Prediction, expand_inputs, softmax, to_probabilities, top_k


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of 6 good images (PNG and JPEG, one in a subfolder)."""
    folder = tmp_path_factory.mktemp("predict-images")
    make_images(folder, count=6, seed=7)
    return folder


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory):
    """Every kind of bad image file the issue lists, by name."""
    folder = tmp_path_factory.mktemp("bad-images")
    good = folder / "good.jpg"
    Image.new("RGB", (64, 64), (120, 30, 200)).save(good, quality=90)
    files = {
        "empty.jpg": b"",
        "truncated.jpg": good.read_bytes()[: good.stat().st_size // 2],
        "text.jpg": b"Dear diary, this is not a JPEG.\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "onepixel.png")
    from test_preprocess import _png_header_only

    (folder / "bomb.png").write_bytes(_png_header_only(20_000, 20_000))
    good.unlink()
    return folder


def predict_json(*args):
    proc = run_cli("predict", *args, "--json")
    return proc, [json.loads(line) for line in proc.stdout.splitlines()]


# --------------------------------------------------------------------------- output ----
def test_table_output_for_one_image(tiny_artifacts, images):
    image = sorted(images.glob("*.png"))[0]
    proc = run_cli("predict", image, "--model", tiny_artifacts[("tflite", "int8")], "--top-k", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""  # no runtime chatter (XNNPACK's INFO line) either
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["image", "rank", "label", "probability"]
    rows = [ln.split() for ln in lines[2:]]
    assert len(rows) == 3 and rows[0][0] == str(image) and rows[0][1] == "1"
    labels = [r[-2] for r in rows]
    probs = [float(r[-1]) for r in rows]
    assert set(labels) <= set(TINY_LABELS) and len(set(labels)) == 3
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_json_equals_feeding_the_same_tensor_by_hand(tiny_artifacts, images, fmt):
    from vitedge.preprocess import preprocess_image
    from vitedge.runtime import load_runtime

    model = tiny_artifacts[(fmt, "int8")]
    proc, rows = predict_json(images, "--model", model, "--top-k", "5", "--threads", "1", "--batch", "4")
    assert proc.returncode == 0, proc.stderr
    paths = expand_inputs([images])
    assert [r["image"] for r in rows] == [str(p) for p in paths] and len(rows) == 6
    rt = load_runtime(model, threads=1)
    for path, row in zip(paths, rows, strict=True):
        x = preprocess_image(path, (32, 32), rt.info.preprocessing)
        probs = softmax(rt.run(x[None]))[0]
        best = int(np.argmax(probs))
        assert row["index"] == best and row["label"] == TINY_LABELS[best]
        assert row["probability"] == pytest.approx(probs[best], abs=1e-6)
        assert [t["index"] for t in row["top_k"]] == list(np.argsort(-probs, kind="stable"))
        assert sum(t["probability"] for t in row["top_k"]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "dynamic"])  # dynamic: per-call int8 scales, one per image
def test_batch_size_does_not_change_the_answer(tiny_artifacts, images, precision):
    model = tiny_artifacts[("onnx", precision)]
    _, one = predict_json(images, "--model", model, "-k", "2")
    _, four = predict_json(images, "--model", model, "-k", "2", "--batch", "4")
    assert [r["label"] for r in one] == [r["label"] for r in four]
    assert np.allclose([r["probability"] for r in one], [r["probability"] for r in four], atol=1e-5)


def test_top_k_larger_than_the_classes_shows_them_all(tiny_artifacts, images):
    proc, rows = predict_json(next(images.glob("*.png")), "--model", tiny_artifacts[("onnx", "fp32")], "-k", "50")
    assert proc.returncode == 0 and len(rows[0]["top_k"]) == 5


# ------------------------------------------------------------------------ bad input ----
@pytest.mark.parametrize("name, message", [
    ("missing.jpg", "no such file"),
    ("empty.jpg", r"empty file \(0 bytes\)"),
    ("truncated.jpg", "corrupt or truncated image"),
    ("text.jpg", "not an image Pillow can read"),
    ("bomb.png", "refused, more than 89,478,485 pixels"),
    ("onepixel.png", "1x1 pixels, too small to classify"),
])
def test_each_bad_image_gives_one_line_and_fails(tiny_artifacts, bad_images, name, message):
    import re

    proc = run_cli("predict", bad_images / name, "--model", tiny_artifacts[("tflite", "fp32")])
    line = assert_one_line_error(proc)
    assert proc.returncode == 1 and re.search(message, line), line
    assert str(bad_images / name) in line and proc.stdout == ""


def test_good_images_are_still_predicted_next_to_bad_ones(tiny_artifacts, images, bad_images):
    good = sorted(images.glob("*.png"))[:2]
    bad = sorted(bad_images.iterdir())
    args = [good[0], *bad, good[1]]
    proc, rows = predict_json(*args, "--model", tiny_artifacts[("onnx", "int8")], "--batch", "3")
    assert proc.returncode == 1  # some failed
    assert [r["image"] for r in rows] == [str(a) for a in args]  # one object per image, in order
    assert [("label" in r) for r in rows] == [True] + [False] * len(bad) + [True]
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == len(bad) and all(ln.startswith("vitedge: error: ") for ln in errors)
    assert "Traceback" not in proc.stderr
    table = run_cli("predict", *args, "--model", tiny_artifacts[("onnx", "int8")])
    assert table.returncode == 1 and str(good[1]) in table.stdout and str(bad[0]) not in table.stdout


def test_empty_folder_is_a_failure(tiny_artifacts, tmp_path):
    proc = run_cli("predict", tmp_path, "--model", tiny_artifacts[("onnx", "fp32")])
    assert "no image files in this folder" in assert_one_line_error(proc)


def test_bad_model_files(tiny_artifacts, images, tmp_path):
    image = next(images.glob("*.png"))
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(tiny_artifacts[("tflite", "fp32")].read_bytes()[:3000])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 not a protobuf" * 50)
    unknown = tmp_path / "model.h5"
    unknown.write_bytes(b"HDF")
    for model, message in ((corrupt, "LiteRT cannot load it"), (garbage, "ONNX Runtime cannot load it"),
                           (unknown, "unknown artifact type .h5"), (tmp_path / "nope.onnx", "no such file")):
        line = assert_one_line_error(run_cli("predict", image, "--model", model))
        assert message in line and str(model) in line


def test_default_model_missing_says_how_to_make_it(images, tmp_path):
    line = assert_one_line_error(run_cli("predict", next(images.glob("*.png")), cwd=tmp_path))
    assert "out/fmnist-vit_int8.tflite" in line and "vitedge export" in line and "--model" in line


def test_default_model_is_used_when_present(tiny_artifacts, images, tmp_path):
    (tmp_path / "out").mkdir()
    shutil.copy(tiny_artifacts[("tflite", "int8")], tmp_path / "out" / "fmnist-vit_int8.tflite")
    proc = run_cli("predict", next(images.glob("*.png")), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] in TINY_LABELS


def test_missing_metadata_warns_once_and_predicts(tiny_artifacts, images, tmp_path):
    from test_runtime import strip_tflite_metadata

    bare = strip_tflite_metadata(tiny_artifacts[("tflite", "fp32")], tmp_path / "bare.tflite")
    proc, rows = predict_json(images, "--model", bare)
    assert proc.returncode == 0
    warnings = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("vitedge: warning: bare.tflite has no vitedge metadata")
    assert len(rows) == 6 and all(r["label"].startswith("class_") for r in rows)


def test_options_are_checked_and_help_has_examples():
    assert run_cli("predict", "x.png", "--top-k", "0").returncode == 2
    assert run_cli("predict", "x.png", "--threads", "0").returncode == 2
    assert run_cli("predict").returncode == 2
    help_text = run_cli("predict", "--help").stdout
    assert "Examples:" in help_text and "--json" in help_text and "fmnist-vit_int8.tflite" in help_text


# ---------------------------------------------------------------- no TensorFlow ----
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_predict_works_where_tensorflow_cannot_be_imported(tiny_artifacts, images, tmp_path, fmt):
    """The device path: importing tensorflow, keras, onnx or tf2onnx raises; predict still works."""
    for name in ("tensorflow", "keras", "onnx", "tf2onnx"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True,
                           env={"PYTHONPATH": str(tmp_path)})
    assert "blocked in this test" in probe.stderr  # the block works
    proc = run_cli("predict", images, "--model", tiny_artifacts[(fmt, "int8")], "--json",
                   env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 6 and all(r["label"] in TINY_LABELS for r in rows)


def test_predict_imports_only_the_backend_it_needs(tiny_artifacts, images):
    code = ("import sys; from vitedge.cli import main; sys.argv=['vitedge','predict',{img!r},'--model',{m!r}];\n"
            "import atexit; atexit.register(lambda: print('MODULES', sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('onnxruntime','ai_edge_litert','tensorflow','keras','onnx')), file=sys.stderr))\n"
            "main()")
    image = str(next(images.glob("*.png")))
    for fmt, expected in (("tflite", "ai_edge_litert"), ("onnx", "onnxruntime")):
        # In-process: the forked child that normally runs the model exits without atexit hooks.
        proc = subprocess.run([sys.executable, "-c", code.format(img=image, m=str(tiny_artifacts[(fmt, "fp32")]))],
                              capture_output=True, text=True, env={**os.environ, "VITEDGE_IN_PROCESS": "1"})
        assert proc.returncode == 0, proc.stderr
        tops = {m.split(".")[0] for m in eval(proc.stderr.split("MODULES", 1)[1])}
        assert tops == {expected}, tops


# --------------------------------------------------------------------- unit level ----
def test_probabilities_and_top_k():
    logits = np.array([[1.0, 3.0, 2.0, 3.0]])
    p = softmax(logits)
    assert np.allclose(p.sum(), 1) and p[0, 1] == p[0, 3]
    assert [i for i, _, _ in top_k(p[0], 3, lambda i: f"c{i}")] == [1, 3, 2]  # ties: lower index first
    already = np.array([[0.1, 0.7, 0.2]])
    assert np.array_equal(to_probabilities(already, "probabilities"), already)
    assert np.allclose(to_probabilities(already, "auto"), already)
    assert not np.allclose(to_probabilities(already, "logits"), already)
    # logits are turned into probabilities exactly once: log(1), log(3) -> 1/4, 3/4
    assert np.allclose(to_probabilities(np.log([[1.0, 3.0]]), "logits"), [[0.25, 0.75]])
    assert np.allclose(to_probabilities(np.log([[1.0, 3.0]]), "auto"), [[0.25, 0.75]])
    assert np.allclose(softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])  # no overflow
    assert Prediction("a.png", error="a.png: bad").to_dict() == {"image": "a.png", "error": "a.png: bad"}


def test_bench_startup_script_prints_both_times(tiny_artifacts):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_startup.py"), "--runs", "1", "--json",
                           "--model", str(tiny_artifacts[("tflite", "int8")])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert 0 < result["python_import_numpy_s"] < result["vitedge_predict_s"]
    assert result["difference_s"] == pytest.approx(result["vitedge_predict_s"] - result["python_import_numpy_s"], abs=2e-3)
