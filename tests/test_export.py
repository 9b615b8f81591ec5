"""`vitedge export`: real converters (TFLite, tf2onnx, ONNX Runtime quantization) on a tiny ViT.

Every format x precision comes from conftest's session fixture `tiny_artifacts` (shared with
the predict and bench tests); this module adds the TFLite int8 export with int8 I/O.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_LABELS, assert_one_line_error, make_images, run_cli

from vitedge.calibration import load_calibration
from vitedge.errors import UsageError, VitedgeError
from vitedge.fileio import sha256_file
from vitedge.formats import read_metadata
from vitedge.preprocess import Preprocessing
from vitedge.runtime import load_runtime

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

ALL_PAIRS = [("tflite", p) for p in ("fp32", "fp16", "dynamic", "int8", "int16x8")] + [
    ("onnx", p) for p in ("fp32", "fp16", "dynamic", "int8")]


@pytest.fixture(scope="module")
def artifacts(tiny_artifacts, tiny_model, calib_dir, tmp_path_factory):
    """Every (format, precision) of the tiny model, plus ('tflite', 'int8-io')."""
    from vitedge.export import export_artifacts

    out = tmp_path_factory.mktemp("more-artifacts")
    found = dict(tiny_artifacts)
    (r,) = export_artifacts(tiny_model, formats="tflite", precisions="int8", int8_io=True, calib_dir=calib_dir,
                            out_dir=out / "int8io", scores="logits")  # logits, like tiny_artifacts
    found[("tflite", "int8-io")] = r.path
    return found


def _tflite_tensors(path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without XNNPACK, so every op stays visible (a delegate hides its ops in one DELEGATE node).
    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


# Each artifact against Keras on the 12 calibration images: (max |logit diff|, min top-1 agreement).
# fp32 is held to the export limit (verify.FP32_TOLERANCE, 1e-4). Every other limit is the
# measured error times MARGIN, the measured figure next to it (scripts/measure_tolerances.py prints
# them). 1.5x: the integer kernels are exact and the float ops differ only in rounding across CPUs,
# so the figures are stable (identical run to run here), and an error twice today's fails.
# Agreement: the measured count less one image.
MARGIN = 1.5
EXPORT_TOLERANCE = {
    ("tflite", "fp32"): (1e-4, 12 / 12),             # measured 1.07e-6, 12/12
    ("onnx", "fp32"): (1e-4, 12 / 12),               # measured 7.15e-7, 12/12
    ("tflite", "fp16"): (MARGIN * 0.00205, 11 / 12),  # measured 0.00205, 12/12
    ("onnx", "fp16"): (MARGIN * 0.00215, 11 / 12),    # measured 0.00215, 12/12
    ("tflite", "dynamic"): (MARGIN * 0.0425, 11 / 12),  # measured 0.0425, 12/12
    ("onnx", "dynamic"): (MARGIN * 0.0453, 11 / 12),    # measured 0.0453, 12/12
    ("tflite", "int8"): (MARGIN * 0.0616, 11 / 12),     # measured 0.0616, 12/12
    ("onnx", "int8"): (MARGIN * 0.313, 11 / 12),        # measured 0.313 (mean 0.030), 12/12
    ("tflite", "int16x8"): (MARGIN * 0.0834, 11 / 12),  # measured 0.0834, 12/12
    ("tflite", "int8-io"): (MARGIN * 0.153, 10 / 12),   # measured 0.153, 11/12
}


def _within_tolerance(pair, logits, reference) -> bool:
    max_diff, agreement = EXPORT_TOLERANCE[pair]
    return bool(np.abs(logits - reference).max() <= max_diff
                and np.mean(logits.argmax(1) == reference.argmax(1)) >= agreement - 1e-9)


# ---------------------------------------------------------------- every artifact ----
@pytest.mark.parametrize("pair", ALL_PAIRS + [("tflite", "int8-io")], ids=lambda p: "-".join(p))
def test_every_format_and_precision_exports_loads_and_runs(artifacts, calib, keras_logits, pair):
    path = artifacts[pair]
    assert path.exists() and path.suffix == f".{pair[0]}"
    assert not list(path.parent.glob(".*partial*")), "temporary files left behind"
    logits = load_runtime(path, threads=1).run(calib.images)
    assert logits.shape == (calib.count, len(TINY_LABELS)) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    meta = read_metadata(path)
    assert meta["precision"] == pair[1].replace("-io", "")
    # The stored figures are what the runtime gives now (same images, same file).
    ver = meta["verification"]
    assert ver["images"] == calib.count
    diff = np.abs(logits - keras_logits)
    assert ver["max_abs_diff"] == pytest.approx(float(diff.max()), rel=1e-3, abs=1e-6)
    # As close to Keras as measured (EXPORT_TOLERANCE), and no closer than a real quantization.
    assert _within_tolerance(pair, logits, keras_logits), (diff.max(), EXPORT_TOLERANCE[pair])
    if pair[1] != "fp32":
        assert diff.max() > 1e-4  # really converted to another precision


@pytest.mark.parametrize("pair", [p for p in EXPORT_TOLERANCE if p[1] != "fp32"], ids=lambda p: "-".join(p))
def test_tolerance_fails_an_artifact_twice_as_far_from_keras(artifacts, calib, keras_logits, pair):
    """The limits are tight: the same file with its error doubled would fail the test above."""
    logits = load_runtime(artifacts[pair], threads=1).run(calib.images)
    doubled = keras_logits + 2.0 * (logits - keras_logits)
    assert not _within_tolerance(pair, doubled, keras_logits)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_fp32_matches_keras(artifacts, calib, keras_logits, fmt):
    logits = load_runtime(artifacts[(fmt, "fp32")]).run(calib.images)
    assert np.abs(logits - keras_logits).max() <= 1e-4
    assert (logits.argmax(1) == keras_logits.argmax(1)).all()


def test_quantized_files_are_smaller(artifacts):
    for fmt in ("tflite", "onnx"):
        fp32 = artifacts[(fmt, "fp32")].stat().st_size
        for precision in ("fp16", "dynamic", "int8"):
            assert artifacts[(fmt, precision)].stat().st_size < fp32, (fmt, precision)


# ------------------------------------------------------------- really quantized ----
def _weight_dtypes(interpreter, op_name):
    tensors = interpreter.get_tensor_details()
    dtypes = set()
    for op in interpreter._get_ops_details():
        if op["op_name"] == op_name:
            dtypes.add(np.dtype(tensors[op["inputs"][1]]["dtype"]).name)
    return dtypes


def test_tflite_int8_weights_and_activations_are_int8(artifacts):
    # The default int8 recipe ("fc", docs/quantization.md): matrix multiplies int8, calibrated.
    interpreter = _tflite_tensors(artifacts[("tflite", "int8")])
    assert _weight_dtypes(interpreter, "FULLY_CONNECTED") == {"int8"}
    # x86 (the default target): the patch-embedding conv stays float, XNNPACK's int8 one was slower.
    assert _weight_dtypes(interpreter, "CONV_2D") == {"float32"}
    ops = interpreter._get_ops_details()
    tensors = interpreter.get_tensor_details()
    fc_out = {np.dtype(tensors[op["outputs"][0]]["dtype"]).name for op in ops if op["op_name"] == "FULLY_CONNECTED"}
    assert fc_out == {"int8"}, fc_out
    assert interpreter.get_input_details()[0]["dtype"] == np.float32


def test_tflite_full_int8_recipe_computes_every_op_in_int8(artifacts):
    # --int8-io uses the textbook "full" recipe: every op but the I/O conversion is int8.
    interpreter = _tflite_tensors(artifacts[("tflite", "int8-io")])
    ops = interpreter._get_ops_details()
    tensors = interpreter.get_tensor_details()
    float_ops = {op["op_name"] for op in ops
                 if any(tensors[i]["dtype"] == np.float32 for i in op["outputs"])}
    assert float_ops <= {"DEQUANTIZE"}, float_ops


def test_tflite_int8_io_has_int8_input_and_output(artifacts):
    interpreter = _tflite_tensors(artifacts[("tflite", "int8-io")])
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert interpreter.get_input_details()[0]["quantization"][0] > 0
    meta = read_metadata(artifacts[("tflite", "int8-io")])
    assert meta["input"]["dtype"] == "int8" and meta["recipe"]["io"] == "int8"


def test_tflite_int16x8_has_int16_activations(artifacts):
    interpreter = _tflite_tensors(artifacts[("tflite", "int16x8")])
    assert _weight_dtypes(interpreter, "FULLY_CONNECTED") == {"int8"}
    fc_outputs = {np.dtype(interpreter.get_tensor_details()[op["outputs"][0]]["dtype"]).name
                  for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"}
    assert fc_outputs == {"int16"}


def test_tflite_fp16_and_dynamic_weights(artifacts):
    fp16 = _tflite_tensors(artifacts[("tflite", "fp16")])
    tensors = fp16.get_tensor_details()
    dequantized = {np.dtype(tensors[op["inputs"][0]]["dtype"]).name
                   for op in fp16._get_ops_details() if op["op_name"] == "DEQUANTIZE"}
    assert dequantized == {"float16"}
    assert "int8" in _weight_dtypes(_tflite_tensors(artifacts[("tflite", "dynamic")]), "FULLY_CONNECTED")


def test_onnx_int8_has_int8_weights_and_quantized_matmuls(artifacts):
    import onnx

    from vitedge.quant.onnx_batch import flatten

    model = flatten(onnx.load(str(artifacts[("onnx", "int8")])))  # the per-image graph inside the batch Scan
    ops = {n.op_type for n in model.graph.node}
    quantized = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeMatMul", "MatMulInteger",
                 "QLinearMatMul", "MatMulIntegerToFloat"}
    assert ops & quantized, ops
    int8_inits = [i for i in model.graph.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)]
    assert len(int8_inits) >= 2 * 4  # qkv, proj, fc1, fc2 of each block at least
    assert max(int(np.prod(i.dims)) for i in int8_inits) >= 32 * 96  # a real weight matrix, not a zero point
    recipe = read_metadata(artifacts[("onnx", "int8")])["recipe"]
    assert recipe["recipe"] == "qdq" and recipe["weights"] == "int8 per channel"
    # As recorded: each weight matrix (K x M) has one scale per output column.
    inits = {i.name: i for i in model.graph.initializer}
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                 and len(inits[n.input[0]].dims) == 2]
    assert len(weight_dq) >= 2 * 4
    for node in weight_dq:
        assert list(inits[node.input[1]].dims) == [inits[node.input[0]].dims[1]], node.name


def test_onnx_names_opset_and_dynamic_batch(artifacts):
    import onnx

    for precision in ("fp32", "fp16", "dynamic", "int8"):
        model = onnx.load(str(artifacts[("onnx", precision)]))
        assert [i.name for i in model.graph.input] == ["image"]
        assert [o.name for o in model.graph.output] == ["logits"]
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [32, 32, 3]
        out_dims = model.graph.output[0].type.tensor_type.shape.dim
        assert out_dims[0].dim_param == "batch" and out_dims[1].dim_value == len(TINY_LABELS)
        assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    fp16 = onnx.load(str(artifacts[("onnx", "fp16")]))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer)
    from vitedge.quant.onnx_batch import flatten

    dynamic = flatten(onnx.load(str(artifacts[("onnx", "dynamic")])))
    assert {"DynamicQuantizeLinear"} <= {n.op_type for n in dynamic.graph.node}


# ---------------------------------------------------------------------- metadata ----
def test_metadata_round_trip(artifacts, tiny_model, tiny_config, calib):
    digest = sha256_file(tiny_model)
    for (fmt, precision), path in artifacts.items():
        meta = read_metadata(path)
        assert meta["schema"] == 1 and meta["format"] == "vitedge-artifact"
        assert meta["model_format"] == fmt
        assert meta["labels"] == TINY_LABELS
        assert meta["input"]["layout"] == "NHWC" and meta["input"]["shape"][1:] == [32, 32, 3]
        # ONNX: a dynamic batch; TFLite: a fixed batch of 1 (faster kernels; runtimes chunk).
        assert meta["input"]["shape"][0] == (None if fmt == "onnx" else 1)
        assert meta["output"]["scores"] == "logits"
        assert Preprocessing.from_dict(meta["preprocessing"]) == Preprocessing()
        assert meta["source"]["model_sha256"] == digest and meta["source"]["model_file"] == "tiny-vit.keras"
        assert meta["source"]["config"]["width"] == tiny_config.width
        assert meta["recipe"] and meta["vitedge_version"]
        assert meta["verification"]["images_fingerprint"] == calib.fingerprint
        if precision.startswith(("int8", "int16")):
            assert meta["calibration"] == {"fingerprint": calib.fingerprint, "count": calib.count, "seed": 0,
                                           "folder": calib.folder.name}
        else:
            assert meta["calibration"] is None


def test_tflite_metadata_is_invisible_to_the_interpreter(artifacts):
    import zipfile

    path = artifacts[("tflite", "fp32")]
    assert zipfile.is_zipfile(path)  # the appended archive
    data = path.read_bytes()
    from ai_edge_litert.interpreter import Interpreter

    end = data.rfind(b"PK\x03\x04")
    bare = Interpreter(model_content=data[:end])
    bare.allocate_tensors()
    assert bare.get_input_details()[0]["shape"].tolist() == [1, 32, 32, 3]


def test_info_shows_the_artifact(artifacts):
    path = artifacts[("tflite", "int8")]
    proc = run_cli("info", path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("precision: int8", "apple, banana", "top-1 agreement", "fingerprint", "tiny-vit.keras",
                 "1x32x32x3 NHWC float32"):
        assert text in out, out
    data = json.loads(run_cli("info", artifacts[("onnx", "int8")], "--json").stdout)
    assert data["format"] == "onnx" and data["precision"] == "int8"
    assert data["recipe"]


# ------------------------------------------------------------------- calibration ----
def test_calibration_choice_is_deterministic(tmp_path, tiny_config):
    make_images(tmp_path, count=10)
    pre = Preprocessing()
    a = load_calibration(tmp_path, 4, tiny_config.image_size, pre, seed=3)
    b = load_calibration(tmp_path, 4, tiny_config.image_size, pre, seed=3)
    assert a.paths == b.paths and a.fingerprint == b.fingerprint and np.array_equal(a.images, b.images)
    c = load_calibration(tmp_path, 4, tiny_config.image_size, pre, seed=4)
    assert c.paths != a.paths and c.fingerprint != a.fingerprint
    assert a.images.shape == (4, 32, 32, 3) and a.images.dtype == np.float32
    # Recursive: the subfolder's images are candidates too.
    everything = load_calibration(tmp_path, 100, tiny_config.image_size, pre)
    assert everything.count == 10 and any(p.parent.name == "sub" for p in everything.paths)
    # The fingerprint covers file contents and preprocessing, not just names.
    other_pre = load_calibration(tmp_path, 4, tiny_config.image_size, Preprocessing(mean=(0.4,) * 3), seed=3)
    assert other_pre.paths == a.paths and other_pre.fingerprint != a.fingerprint
    a.paths[0].write_bytes(c.paths[0].read_bytes() if c.paths[0] != a.paths[0] else c.paths[1].read_bytes())
    assert load_calibration(tmp_path, 4, tiny_config.image_size, pre, seed=3).fingerprint != a.fingerprint


def test_two_exports_share_the_calibration_choice(artifacts):
    fingerprints = {read_metadata(artifacts[pair])["calibration"]["fingerprint"]
                    for pair in (("tflite", "int8"), ("tflite", "int8-io"), ("tflite", "int16x8"), ("onnx", "int8"))}
    assert len(fingerprints) == 1


def test_unreadable_calibration_images_are_skipped_and_named(tmp_path, tiny_config):
    make_images(tmp_path, count=5)
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "sub" / "empty.jpg").write_bytes(b"")
    warnings = []
    cal = load_calibration(tmp_path, 100, tiny_config.image_size, Preprocessing(), warn=warnings.append)
    assert cal.count == 5
    assert len(warnings) == 3 and any("broken.png" in w for w in warnings) and any("empty.jpg" in w for w in warnings)
    assert "has 5 usable images; using them all (100 asked)" in warnings[-1]
    # A size smaller than the folder replaces a skipped file with the next candidate.
    assert load_calibration(tmp_path, 5, tiny_config.image_size, Preprocessing()).count == 5


def test_zero_usable_images_is_an_error(tmp_path, tiny_config):
    (tmp_path / "a.jpg").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(VitedgeError, match="none of its 1 image files could be read.*a.jpg"):
        load_calibration(tmp_path, 10, tiny_config.image_size, Preprocessing())


# ------------------------------------------------------------------------ the CLI ----
def _no_partials(folder):
    return not folder.exists() or not [p for p in folder.rglob("*") if "partial" in p.name]


@pytest.mark.parametrize("case", ["missing", "empty", "non-images", "undecodable"])
def test_bad_calibration_folder(tmp_path, tiny_model, case):
    folder = tmp_path / "calib"
    if case != "missing":
        folder.mkdir()
    if case == "non-images":
        (folder / "readme.txt").write_text("no images here")
    if case == "undecodable":
        (folder / "x.png").write_bytes(b"garbage")
        (folder / "y.jpg").write_bytes(b"")
    out = tmp_path / "out"
    proc = run_cli("export", "--model", tiny_model, "--calib", folder, "--out", out, "--int8")
    line = assert_one_line_error(proc)
    assert "calib" in line and str(folder.name) in line
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("args, expected", [
    (["--format", "coreml"], "unknown format 'coreml'"),
    (["--precision", "int4"], "unknown precision 'int4'"),
    (["--format", "onnx", "--int8", "--int8-io"], "--int8-io is for TFLite only"),
    (["--format", "all", "--int8", "--int8-io"], "--int8-io is for TFLite only"),
    (["--format", "onnx", "--precision", "int16x8"], "int16x8 is not available for onnx"),
    (["--int8-io"], "--int8-io needs the int8 precision"),
    (["--int8", "--precision", "fp16"], "--int8 means --precision int8"),
    (["--variant", "vit-ti16"], "not both"),
    (["--calib-method", "kl"], "Invalid value for '--calib-method'"),
])
def test_bad_options(tmp_path, tiny_model, calib_dir, args, expected):
    proc = run_cli("export", "--model", tiny_model, "--calib", calib_dir, "--out", tmp_path / "out", *args)
    line = assert_one_line_error(proc)
    assert expected in line, line
    assert proc.returncode == 2
    assert not (tmp_path / "out").exists()


def test_model_that_is_not_a_vitedge_vit(tmp_path, calib_dir):
    import keras

    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(4, 8, strides=8, name="patch_embedding")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3, name="head")(x)).save(tmp_path / "cnn.keras")
    proc = run_cli("export", "--model", tmp_path / "cnn.keras", "--calib", calib_dir, "--out", tmp_path / "out")
    line = assert_one_line_error(proc)
    assert "not a ViT built by vitedge" in line
    assert "class_token" in line and "position_embedding" in line and "encoder_norm" in line
    assert "patch_embedding" not in line.split("missing layers:")[1]
    assert not (tmp_path / "out").exists()


def test_missing_default_model_says_what_to_pass(tmp_path):
    line = assert_one_line_error(run_cli("export", cwd=tmp_path))
    assert "models/fmnist-vit.keras" in line and "--model" in line and "--variant" in line


def test_existing_output_needs_force_then_json(tmp_path, tiny_model, calib_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny-vit_fp32.tflite").write_bytes(b"keep me")
    args = ["export", "--model", tiny_model, "--calib", calib_dir, "--out", out, "--precision", "fp32"]
    line = assert_one_line_error(run_cli(*args))
    assert "already exists" in line and "--force" in line
    assert (out / "tiny-vit_fp32.tflite").read_bytes() == b"keep me"

    proc = run_cli(*args, "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["path"].endswith("tiny-vit_fp32.tflite") and result["format"] == "tflite"
    assert result["verification"]["max_abs_diff"] <= 1e-4 and result["verification"]["images"] == 12
    assert result["size_bytes"] == (out / "tiny-vit_fp32.tflite").stat().st_size
    assert read_metadata(out / "tiny-vit_fp32.tflite")["precision"] == "fp32"
    assert _no_partials(out)


def test_failed_verification_leaves_nothing(tmp_path, tiny_model, calib_dir, monkeypatch):
    """An fp32 artifact off by more than the limit fails the export; no file of the call stays."""
    from vitedge.export import export_artifacts, verify

    monkeypatch.setattr(verify, "FP32_TOLERANCE", 0.0)  # real conversion; only the limit is tightened
    out = tmp_path / "out"
    with pytest.raises(VitedgeError, match="fp32 logits differ from Keras"):
        export_artifacts(tiny_model, formats="tflite", precisions="dynamic,fp32", calib_dir=calib_dir, out_dir=out)
    assert not out.exists() or not any(out.iterdir())


def test_api_rejects_bad_plans_before_work(tiny_model, calib_dir, tmp_path):
    from vitedge.export import export_artifacts

    with pytest.raises(UsageError):
        export_artifacts(tiny_model, formats="onnx", precisions="int8", int8_io=True, calib_dir=calib_dir,
                         out_dir=tmp_path)
    with pytest.raises(VitedgeError, match="no such file"):
        export_artifacts(tmp_path / "nope.keras", calib_dir=calib_dir, out_dir=tmp_path)


def test_export_modules_do_not_import_tensorflow_until_exporting():
    code = ("import sys, vitedge.export, vitedge.calibration, vitedge.commands.export; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_variant_with_random_weights(tmp_path, calib_dir):
    from vitedge.export import export_artifacts

    # fp16 first: converting it must leave the fp32 model untouched (fp32 parity still holds).
    half, r = export_artifacts(variant="fmnist-tiny", formats="onnx", precisions="fp16,fp32", calib_dir=calib_dir,
                               calib_size=4, out_dir=tmp_path, seed=3)
    assert half.precision == "fp16" and half.verification["max_abs_diff"] > 1e-6
    assert r.path == tmp_path / "fmnist-tiny_fp32.onnx" and r.verification["max_abs_diff"] <= 1e-4
    meta = read_metadata(r.path)
    assert meta["source"]["model_file"] is None and meta["source"]["random_weights_seed"] == 3
    assert meta["source"]["variant"] == "fmnist-tiny" and meta["input"]["shape"] == [None, 28, 28, 3]
    assert meta["verification"]["images"] == 4 and len(meta["labels"]) == 10
