"""Mobile-ready artifacts (issue 9): the official TFLite Metadata, read back by hand and by
MediaPipe's ImageClassifier; probabilities out by default on device formats; the ORT format.

Real converters and runtimes on the tiny model of conftest. MediaPipe runs in its own venv
(`make mediapipe`, a dependency of `make test`); only its absence skips those tests.
"""

import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY_LABELS, assert_one_line_error, make_images, run_cli

from vitedge.artifact import read_tflite_official_metadata
from vitedge.errors import VitedgeError
from vitedge.formats import read_metadata
from vitedge.predict import softmax
from vitedge.preprocess import Preprocessing, preprocess_image
from vitedge.runtime import load_runtime

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

TFLITE_PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
ORT_PRECISIONS = ("fp32", "dynamic", "int8")
MEDIAPIPE_PYTHON = Path(os.environ.get("VITEDGE_MEDIAPIPE_PYTHON", REPO / ".venv-mediapipe" / "bin" / "python"))
MEDIAPIPE_SCRIPT = REPO / "tests" / "mediapipe_classify.py"


@pytest.fixture(scope="module")
def mobile(tmp_path_factory, tiny_model, calib_dir):
    """{(format, precision): path}: TFLite fp32/fp16/dynamic/int8/int16x8 and ORT fp32/dynamic/int8 with the
    defaults (probabilities out), plus ('tflite', 'fp32-logits') exported with --scores logits."""
    from vitedge.export import export_artifacts

    out = tmp_path_factory.mktemp("mobile")
    found = {}
    for fmt, precisions in (("tflite", TFLITE_PRECISIONS), ("ort", ORT_PRECISIONS)):
        for r in export_artifacts(tiny_model, formats=fmt, precisions=",".join(precisions), calib_dir=calib_dir,
                                  out_dir=out):
            found[(r.format, r.precision)] = r.path
    (r,) = export_artifacts(tiny_model, formats="tflite", precisions="fp32", calib_dir=calib_dir,
                            out_dir=out / "logits", scores="logits")
    found[("tflite", "fp32-logits")] = r.path
    return found


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """PNG files at the model's own size (32x32): no resize, lossless decoding in both stacks."""
    folder = tmp_path_factory.mktemp("mobile-images")
    paths = make_images(folder, count=16, size=(32, 32), seed=11)
    return [p for p in paths if p.suffix == ".png"]


def _predict_json(model, images, k=5):
    proc = run_cli("predict", *images, "--model", model, "-k", k, "--json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def mediapipe_python():
    """The MediaPipe venv's python; the only reason to skip is its absence."""
    if not MEDIAPIPE_PYTHON.exists():
        pytest.skip(f"no MediaPipe venv at {MEDIAPIPE_PYTHON} (make mediapipe creates it; make test does)")
    return MEDIAPIPE_PYTHON


def _mediapipe(python, model, images):
    proc = subprocess.run([str(python), str(MEDIAPIPE_SCRIPT), str(model), *map(str, images)],
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON from the MediaPipe script (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(lines[-1])


# ------------------------------------------------------- the official TFLite Metadata ----
@pytest.mark.parametrize("precision", TFLITE_PRECISIONS)
def test_tflite_metadata_parsed_back(mobile, precision):
    path = mobile[("tflite", precision)]
    official = read_tflite_official_metadata(path)
    assert official is not None, "no TFLITE_METADATA"
    assert official["min_parser_version"] == "1.0.0" and official["author"] == "vitedge"
    (sub,) = official["subgraph_metadata"]
    (inp,) = sub["input_tensor_metadata"]
    (out,) = sub["output_tensor_metadata"]
    # Input: RGB image of the model's size, vitedge's (pixel/255 - 0.5)/0.5 as (pixel - 127.5)/127.5.
    assert inp["content"] == {"type": "ImageProperties", "color_space": "RGB",
                              "default_size": {"width": 32, "height": 32}}
    (norm,) = inp["process_units"]
    assert norm == {"type": "NormalizationOptions", "mean": [127.5], "std": [127.5]}
    assert inp["stats"] == {"max": [1.0], "min": [-1.0]}
    # Output: probabilities, labelled by labels.txt.
    assert out["content"] == {"type": "FeatureProperties"} and out["name"] == "probabilities"
    assert out["stats"] == {"max": [1.0], "min": [0.0]} and "Probabilities of the 5 labels" in out["description"]
    assert [(f["name"], f["type"]) for f in out["associated_files"]] == [("labels.txt", "TENSOR_AXIS_LABELS")]
    assert [(f["name"], f["type"]) for f in official["associated_files"]] == [("vitedge.json", "DESCRIPTIONS")]
    # One appended zip, entries stored (MediaPipe refuses compressed ones), vitedge's JSON beside labels.txt.
    assert official["packed_files"] == {"labels.txt": "stored", "vitedge.json": "stored"}
    with zipfile.ZipFile(path) as zf:
        assert zf.read("labels.txt").decode().splitlines() == TINY_LABELS
    meta = read_metadata(path)
    assert meta["precision"] == precision and meta["labels"] == TINY_LABELS
    assert meta["output"]["scores"] == "probabilities" and meta["verification"]["scores"] == "probabilities"


@pytest.mark.parametrize("precision", ["fp32", "fp16", "dynamic", "int8", "int16x8"])
def test_logit_artifacts_say_so_in_the_tflite_metadata(tiny_artifacts, precision):
    """conftest's artifacts are exported with --scores logits: the metadata says logits, no range."""
    path = tiny_artifacts[("tflite", precision)]
    (out,) = read_tflite_official_metadata(path)["subgraph_metadata"][0]["output_tensor_metadata"]
    assert out["name"] == "logits" and "stats" not in out and "apply softmax" in out["description"]
    assert read_metadata(path)["output"]["scores"] == "logits"


def _tflite_buffers(data: bytes):
    """(data offset, length) of every Model.buffers entry, walked with struct only."""
    from vitedge.artifact import _Table

    model = _Table.root(data)
    spans = []
    for buf in model.tables(4):
        at = buf._target(0)
        if at:
            spans.append((at + 4, struct.unpack_from("<I", data, at)[0]))
    return spans


def test_tflite_file_stays_a_valid_model_with_its_converter_entries(mobile, calib, keras_logits):
    from tensorflow.lite.python import schema_py_generated as schema

    path = mobile[("tflite", "int8")]
    data = path.read_bytes()
    model = schema.Model.GetRootAsModel(data, 0)
    names = [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]
    assert "TFLITE_METADATA" in names and "min_runtime_version" in names, names  # the converter's kept
    entry = model.Metadata(names.index("TFLITE_METADATA"))
    raw = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert raw[4:8] == b"M001"
    # Weights stay 16-byte aligned after re-serialization, as the converter wrote them.
    spans = _tflite_buffers(data)
    assert len(spans) > 10 and all(offset % 16 == 0 for offset, n in spans if n)
    # And it still runs: the stored verification figures are what LiteRT gives now.
    from vitedge.export.verify import compare_probabilities

    probs = load_runtime(path, threads=1).run(calib.images)
    assert np.allclose(probs.sum(1), 1.0, atol=0.02)  # int8 probabilities: steps of 1/256
    ver = read_metadata(path)["verification"]
    now = compare_probabilities(probs, keras_logits, "int8")
    assert ver["max_abs_diff"] == pytest.approx(now["max_abs_diff"], rel=1e-3, abs=1e-7)
    assert ver["top1_agreement"] == now["top1_agreement"] >= 11 / 12  # measured 12/12 (logits: tests/test_export.py)


def test_a_label_file_with_a_newline_character_is_refused_by_the_writer():
    from vitedge.export.tflite_metadata import check_labels

    for bad, message in ((["a", "b\nc"], "newline"), (["a", "b\u2028c"], "newline"), (["a", " "], "empty"),
                         (["a", "a"], "not unique"), (["a"], "1 labels given for a head of 2")):
        with pytest.raises(VitedgeError, match=message):
            check_labels(bad, 2)


# ------------------------------------------------------------------------ MediaPipe ----
@pytest.mark.parametrize("precision", TFLITE_PRECISIONS)
def test_mediapipe_image_classifier_names_the_same_classes_as_predict(mediapipe_python, mobile, images, precision):
    path = mobile[("tflite", precision)]
    got = _mediapipe(mediapipe_python, path, images)
    assert "error" not in got, got
    ours = _predict_json(path, images)
    assert len(got["results"]) == len(ours) == len(images)
    tops = []
    for theirs, mine in zip(got["results"], ours, strict=True):
        cats = theirs["categories"]
        assert [c["name"] for c in cats][:1] == [mine["label"]], (theirs["image"], cats, mine)
        tops.append(mine["label"])
        # Same file, same kernels, same pixels: the same probabilities, summing to 1 (the softmax inside).
        assert sorted(c["name"] for c in cats) == sorted(TINY_LABELS)
        assert sum(c["score"] for c in cats) == pytest.approx(1.0, abs=0.02 if precision.startswith("int") else 1e-4)
        theirs_by_name = {c["name"]: c["score"] for c in cats}
        for entry in mine["top_k"]:
            assert theirs_by_name[entry["label"]] == pytest.approx(entry["probability"], abs=1e-4)
    assert len(set(tops)) >= 2, "every image got the same class: the comparison would say nothing"


def test_mediapipes_generated_schema_code_reads_what_ours_reads(mediapipe_python, mobile):
    """A second reader: MediaPipe's own generated flatbuffer classes (object API) on the same bytes."""
    for precision in ("fp32", "int8"):
        path = mobile[("tflite", precision)]
        proc = subprocess.run([str(mediapipe_python), str(MEDIAPIPE_SCRIPT), "--metadata", str(path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        theirs = json.loads(proc.stdout)["metadata"]
        ours = read_tflite_official_metadata(path)
        assert theirs["minParserVersion"] == ours["min_parser_version"] == "1.0.0"
        assert theirs["name"] == ours["name"] and theirs["version"] == ours["version"]
        (sub,) = theirs["subgraphMetadata"]
        (inp,) = sub["inputTensorMetadata"]
        (out,) = sub["outputTensorMetadata"]
        assert inp["content"] == {"contentPropertiesType": 2,  # ImageProperties
                                  "contentProperties": {"colorSpace": 1, "defaultSize": {"width": 32, "height": 32}}}
        assert inp["processUnits"] == [{"optionsType": 1, "options": {"mean": [127.5], "std": [127.5]}}]
        assert inp["stats"] == {"max": [1.0], "min": [-1.0]}
        assert out["name"] == "probabilities" and out["content"]["contentPropertiesType"] == 1  # FeatureProperties
        assert out["associatedFiles"] == [{"name": "labels.txt", "type": 2,  # TENSOR_AXIS_LABELS
                                           "description": "Labels of the output classes, one per line, in order."}]
        assert [(f["name"], f["type"]) for f in theirs["associatedFiles"]] == [("vitedge.json", 1)]  # DESCRIPTIONS


def test_mediapipe_reports_raw_logits_without_the_softmax(mediapipe_python, mobile, images):
    """Why probabilities are the default: MediaPipe passes the output through as the score."""
    path = mobile[("tflite", "fp32-logits")]
    got = _mediapipe(mediapipe_python, path, images[:3])
    assert "error" not in got, got
    ours = _predict_json(path, images[:3])
    for theirs, mine in zip(got["results"], ours, strict=True):
        assert theirs["categories"][0]["name"] == mine["label"]
        assert abs(sum(c["score"] for c in theirs["categories"]) - 1.0) > 1e-3  # logits, not probabilities


def test_mediapipe_refuses_a_float_model_without_the_metadata(mediapipe_python, mobile, images, tmp_path):
    """The issue's starting point, reproduced: the bare flatbuffer (what vitedge wrote before)."""
    from tensorflow.lite.python import schema_py_generated as schema

    data = mobile[("tflite", "fp32")].read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    model.metadata = [m for m in model.metadata if m.name != b"TFLITE_METADATA"]
    import flatbuffers

    b = flatbuffers.Builder(len(data))
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(bytes(b.Output()))
    got = _mediapipe(mediapipe_python, bare, images[:1])
    assert "NormalizationOptions" in got.get("error", ""), got


# -------------------------------------------------------------------- probabilities ----
def test_verification_compares_with_softmax_of_keras(mobile, calib, keras_logits):
    path = mobile[("tflite", "fp32")]
    probs = load_runtime(path, threads=1).run(calib.images)
    expected = softmax(keras_logits)
    ver = read_metadata(path)["verification"]
    assert ver["max_abs_diff"] == pytest.approx(float(np.abs(probs - expected).max()), rel=1e-3, abs=1e-7)
    assert ver["max_abs_logprob_diff"] <= 1e-4
    assert np.abs(np.log(probs) - np.log(expected)).max() <= 1e-4


def test_the_fp32_limit_still_catches_a_small_logit_error():
    """A 2e-4 error on one logit moves a probability by < 1e-4 but fails the log-space check."""
    from vitedge.export.verify import FP32_TOLERANCE, compare_probabilities

    logits = np.array([[2.0, 0.5, -1.0, 0.0, 1.0]] * 3)
    off = logits.copy()
    off[1, 0] += 2e-4
    figures = compare_probabilities(softmax(off).astype(np.float32), logits, "fp32")
    assert figures["max_abs_diff"] < FP32_TOLERANCE < figures["max_abs_logprob_diff"]
    with pytest.raises(VitedgeError, match="should output probabilities"):
        compare_probabilities(logits.astype(np.float32), logits, "fp32")  # logits where probabilities belong


def test_predict_does_not_apply_softmax_twice(mobile, images):
    prob_rows = _predict_json(mobile[("tflite", "fp32")], images)
    logit_rows = _predict_json(mobile[("tflite", "fp32-logits")], images)
    for p, q in zip(prob_rows, logit_rows, strict=True):
        assert p["label"] == q["label"]
        assert p["probability"] == pytest.approx(q["probability"], abs=1e-5)
        assert sum(t["probability"] for t in p["top_k"]) == pytest.approx(1.0, abs=1e-5)


def test_onnx_can_end_in_a_softmax_too(tiny_model, calib_dir, tmp_path, tiny_artifacts, calib):
    import onnx

    from vitedge.export import export_artifacts

    (r,) = export_artifacts(tiny_model, formats="onnx", precisions="fp32", calib_dir=calib_dir, out_dir=tmp_path,
                            scores="probabilities")
    proto = onnx.load(str(r.path))
    assert [o.name for o in proto.graph.output] == ["probabilities"] and proto.graph.node[-1].op_type == "Softmax"
    assert read_metadata(r.path)["output"] == {"name": "probabilities", "scores": "probabilities", "dtype": "float32"}
    logits = load_runtime(tiny_artifacts[("onnx", "fp32")], threads=1).run(calib.images)
    assert np.abs(load_runtime(r.path, threads=1).run(calib.images) - softmax(logits)).max() < 1e-6


# ----------------------------------------------------------------------------- ORT ----
@pytest.mark.parametrize("precision", ORT_PRECISIONS)
def test_ort_format_file_config_and_metadata(mobile, precision, tiny_artifacts, calib):
    path = mobile[("ort", precision)]
    assert path.name == f"tiny-vit_{precision}.ort"
    assert path.read_bytes()[4:8] == b"ORTM"  # the ORT flatbuffer, not an ONNX protobuf
    config = path.with_name(f"tiny-vit_{precision}.required_operators.config")
    text = config.read_text()
    assert f"# - {path.name}" in text and "Softmax" in text
    if precision != "fp32":  # quantized MatMuls (static QDQ -> QLinearMatMul; dynamic) and the fused contrib ops
        assert "com.microsoft;1;" in text and "MultiHeadAttention" in text
        assert {"QLinearMatMul", "DynamicQuantizeMatMul", "MatMulInteger"} & set(re.split(r"[;,\n]", text)), text
    meta = read_metadata(path)  # metadata_props survive the ORT format
    assert meta["model_format"] == "ort" and meta["precision"] == precision and meta["labels"] == TINY_LABELS
    assert meta["output"]["scores"] == "probabilities" and meta["recipe"]["ort_format"].startswith("onnxruntime")
    rt = load_runtime(path, threads=1)
    assert rt.name == "onnxruntime" and rt.output_kind == "probabilities" and rt.batch_size is None
    # The same model as the .onnx of that precision (logits there), up to the softmax.
    ref = softmax(load_runtime(tiny_artifacts[("onnx", precision)], threads=1).run(calib.images))
    got = rt.run(calib.images)
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert np.abs(got - ref).max() < (1e-5 if precision == "fp32" else 1e-3)


def test_info_predict_and_bench_run_ort_files(mobile, images, tiny_artifacts, tmp_path):
    info = json.loads(run_cli("info", mobile[("ort", "int8")], "--json").stdout)
    assert info["format"] == "ort" and info["precision"] == "int8"
    assert info["ort_config"] == "tiny-vit_int8.required_operators.config"
    text = run_cli("info", mobile[("tflite", "int8")]).stdout
    assert "TFLITE_METADATA" in text and "labels.txt (stored)" in text
    assert "max |probability diff|" in text and "max |logit diff|" not in text

    rows = _predict_json(mobile[("ort", "fp32")], images)
    assert [r["label"] for r in rows] == [r["label"] for r in _predict_json(mobile[("tflite", "fp32")], images)]

    labelled = tmp_path / "labelled"
    for i, path in enumerate(images[:5]):
        (labelled / TINY_LABELS[i]).mkdir(parents=True)
        (labelled / TINY_LABELS[i] / path.name).write_bytes(path.read_bytes())
    reference = tiny_artifacts[("onnx", "fp32")]  # logits
    proc = run_cli("bench", mobile[("ort", "fp32")], mobile[("ort", "int8")], mobile[("tflite", "fp32")],
                   reference, "--reference", reference, "--data", labelled, "--runs", "3", "--warmup", "1",
                   "--threads", "1", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    by_file = {Path(r["path"]).name: r for r in report["rows"]}
    assert all(r["status"] == "ok" for r in by_file.values()), by_file
    assert by_file["tiny-vit_fp32.ort"]["output_kind"] == "probabilities"
    assert by_file["tiny-vit_fp32.onnx"]["output_kind"] == "logits"
    # Probabilities (ORT, TFLite) and logits (ONNX) of one model: the same top-1 everywhere, and
    # compared with the logits reference in the space they share.
    assert len({r["top1"] for r in by_file.values()}) == 1, by_file
    for name in ("tiny-vit_fp32.ort", "tiny-vit_fp32.tflite"):
        row = by_file[name]
        assert row["agreement_top1"] == 100.0 and row["diff_space"] == "probabilities" and row["max_abs_diff"] < 1e-5
    assert by_file["tiny-vit_int8.ort"]["agreement_top1"] >= 80.0


# ------------------------------------------------------------------------ bad input ----
def _export(tmp_path, tiny_model, calib_dir, *args):
    out = tmp_path / "out"
    proc = run_cli("export", "--model", tiny_model, "--calib", calib_dir, "--out", out, *args)
    return proc, out


@pytest.mark.parametrize("content, message", [
    ("apple\nbanana\ncherry\n", "3 labels given for a head of 5 classes"),
    ("apple\nbanana\n\ncherry\ndate\n", "label 2 is empty"),
    ("apple\nbanana\ncherry\ndate\napple\n", "not unique"),
    ("apple\nbanana\u2028split\ncherry\ndate\nfig\n", "6 labels given"),
    ("", "no labels in the file"),
])
def test_bad_label_files_fail_before_any_work(tmp_path, tiny_model, calib_dir, content, message):
    labels = tmp_path / "labels.txt"
    labels.write_text(content, encoding="utf-8")
    proc, out = _export(tmp_path, tiny_model, calib_dir, "--format", "tflite,ort", "--labels", labels)
    line = assert_one_line_error(proc)
    assert message in line and "labels.txt" in line, line
    assert not out.exists()


def test_labels_with_a_newline_from_the_api(tmp_path, tiny_model, calib_dir):
    from vitedge.export import export_artifacts

    with pytest.raises(VitedgeError, match="contains a newline"):
        export_artifacts(tiny_model, formats="tflite", calib_dir=calib_dir, out_dir=tmp_path / "out",
                         labels=["apple", "banana\ncherry", "date", "elderberry", "fig"])
    assert not (tmp_path / "out").exists()


def test_oversized_metadata_is_refused(tmp_path, tiny_model, calib_dir):
    labels = tmp_path / "huge.txt"
    labels.write_text("".join(f"{i}{'x' * 300_000}\n" for i in range(5)))
    proc, out = _export(tmp_path, tiny_model, calib_dir, "--labels", labels)
    line = assert_one_line_error(proc)
    assert "limit is 1,000,000" in line
    assert not out.exists()


def test_labels_file_replaces_the_models_labels(tmp_path, tiny_model, calib_dir):
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(names) + "\n")
    proc, out = _export(tmp_path, tiny_model, calib_dir, "--labels", labels, "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    path = out / "tiny-vit_fp32.tflite"
    assert read_metadata(path)["labels"] == names
    with zipfile.ZipFile(path) as zf:
        assert zf.read("labels.txt").decode().splitlines() == names


@pytest.mark.parametrize("args, expected", [
    (["--format", "ort", "--precision", "fp16"], "fp16 is not available for ort"),
    (["--format", "ort", "--int8", "--int8-io"], "--int8-io is for TFLite only"),
    (["--scores", "softmax"], "Invalid value for '--scores'"),
])
def test_bad_mobile_options(tmp_path, tiny_model, calib_dir, args, expected):
    proc, out = _export(tmp_path, tiny_model, calib_dir, *args)
    assert expected in assert_one_line_error(proc)
    assert proc.returncode == 2 and not out.exists()


def test_ort_config_is_not_overwritten_without_force(tmp_path, tiny_model, calib_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny-vit_fp32.required_operators.config").write_text("keep me")
    proc, _ = _export(tmp_path, tiny_model, calib_dir, "--format", "ort")
    assert "already exists" in assert_one_line_error(proc)
    assert sorted(p.name for p in out.iterdir()) == ["tiny-vit_fp32.required_operators.config"]
    assert (out / "tiny-vit_fp32.required_operators.config").read_text() == "keep me"


# ------------------------------------------------------------------ install split ----
def test_metadata_writer_is_export_only_and_reading_needs_nothing():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("flatbuffers", "mediapipe", "tflite-support", "tensorflow"):
        assert name not in core, name
    assert any(d.startswith("flatbuffers") for d in project["optional-dependencies"]["export"])
    # The device side reads the official metadata with struct alone.
    code = ("import sys, vitedge.artifact, vitedge.predict, vitedge.runtime, vitedge.commands.info; "
            "assert not {'tensorflow', 'flatbuffers', 'keras'} & set(sys.modules), sorted(sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_preprocessing_matches_what_mediapipe_is_told(images):
    """NormalizationOptions (pixel - 127.5) / 127.5 is exactly vitedge's (pixel/255 - 0.5) / 0.5."""
    from PIL import Image

    from vitedge.export.tflite_metadata import normalization

    mean, std = normalization(Preprocessing().to_dict())
    x = preprocess_image(images[0], (32, 32), Preprocessing())
    pixels = np.asarray(Image.open(images[0]).convert("RGB"), dtype=np.float32)
    assert np.abs(x - (pixels - mean[0]) / std[0]).max() < 1e-6
    assert normalization(Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)).to_dict())[0] == \
        pytest.approx([123.675, 116.28, 103.53])
