"""OpenVINO IR (`--format openvino`): real OpenVINO and NNCF on the tiny test model.

fp32 against Keras, int8 agreement, the metadata inside the IR, predict/bench/info on it
through the CLI, and hostile or broken .xml/.bin pairs. Skipped where openvino is absent
(it is an optional extra: vitedge[openvino]).
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TINY_LABELS, assert_one_line_error, make_images, run_cli

pytest.importorskip("openvino")
pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def ir(tmp_path_factory, tiny_model, calib_dir):
    """{precision: export result} of the tiny model as fp32 and int8 IR, exported once by the CLI."""
    out = tmp_path_factory.mktemp("openvino")
    proc = run_cli("export", "--model", tiny_model, "--format", "openvino", "--precision", "fp32,int8",
                   "--calib", calib_dir, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    return {r["precision"]: SimpleNamespace(**{**r, "path": Path(r["path"])}) for r in json.loads(proc.stdout)}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ov-images")
    make_images(folder, count=3, seed=5)
    return folder


def test_export_writes_xml_and_bin_and_nothing_else(ir):
    for result in ir.values():
        assert result.format == "openvino" and result.path.suffix == ".xml"
        assert result.path.with_suffix(".bin").stat().st_size > 0
    folder = ir["fp32"].path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["tiny-vit_fp32.bin", "tiny-vit_fp32.xml",
                                                        "tiny-vit_int8.bin", "tiny-vit_int8.xml"]


def test_fp32_ir_matches_keras(ir, calib, keras_logits, tiny_config):
    from vitedge.runtime import load_runtime

    rt = load_runtime(ir["fp32"].path, threads=2)
    assert rt.describe()["backend"] == "openvino" and rt.describe()["inference_precision"] == "f32"
    logits = rt.run(calib.images)
    assert np.abs(logits - keras_logits).max() < 1e-4
    assert ir["fp32"].verification["max_abs_diff"] < 1e-4
    # weights kept fp32 (OpenVINO's default would store fp16): 4 bytes per parameter
    assert ir["fp32"].path.with_suffix(".bin").stat().st_size >= 4 * tiny_config.param_count() * 0.95


def test_int8_ir_is_quantized_and_agrees_with_keras(ir, calib, keras_logits):
    from vitedge.runtime import load_runtime

    xml = ir["int8"].path.read_text()
    assert 'type="FakeQuantize"' in xml  # NNCF's quantizers; fp32 has none
    assert 'type="FakeQuantize"' not in ir["fp32"].path.read_text()
    logits = load_runtime(ir["int8"].path, threads=2).run(calib.images)
    agreement = float(np.mean(logits.argmax(1) == keras_logits.argmax(1)))
    assert agreement == pytest.approx(ir["int8"].verification["top1_agreement"])
    assert agreement >= 0.75, agreement
    assert 0 < np.abs(logits - keras_logits).max() < 1.0  # really quantized, still close
    assert ir["int8"].recipe["quantizer"].startswith("nncf ") and ir["int8"].recipe["model_type"] == "transformer"


def test_metadata_round_trip(ir, calib):
    from vitedge.formats import read_metadata
    from vitedge.preprocess import Preprocessing

    for precision in ("fp32", "int8"):
        meta = read_metadata(ir[precision].path)
        assert meta["model_format"] == "openvino" and meta["precision"] == precision
        assert meta["labels"] == TINY_LABELS
        assert meta["input"]["shape"] == [None, 32, 32, 3] and meta["input"]["layout"] == "NHWC"
        assert Preprocessing.from_dict(meta["preprocessing"]) == Preprocessing()
        assert meta["verification"] == ir[precision].verification
    assert read_metadata(ir["int8"].path)["calibration"]["fingerprint"] == calib.fingerprint
    assert read_metadata(ir["fp32"].path)["calibration"] is None


def test_predict_on_ir_equals_the_runtime_by_hand(ir, image_dir):
    from vitedge.preprocess import Preprocessing, preprocess_image
    from vitedge.runtime import load_runtime

    image = sorted(image_dir.glob("*.png"))[0]
    proc = run_cli("predict", image, "--model", ir["int8"].path, "--top-k", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[0])
    logits = load_runtime(ir["int8"].path).run(preprocess_image(image, (32, 32), Preprocessing())[None])[0]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert got["label"] == TINY_LABELS[int(np.argmax(probs))]
    assert [r["label"] for r in got["top_k"]] == [TINY_LABELS[i] for i in np.argsort(-probs)]
    assert [r["probability"] for r in got["top_k"]] == pytest.approx(sorted(probs, reverse=True), abs=1e-5)


def test_bench_and_info_on_ir(ir, tmp_path):
    report = tmp_path / "b.json"
    proc = run_cli("bench", ir["fp32"].path, ir["int8"].path, "--warmup", "1", "--runs", "5", "--threads", "2",
                   "--json", report)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(report.read_text())["rows"]
    assert [r["precision"] for r in rows] == ["fp32", "int8"]
    assert all(r["runtime"] == "openvino" for r in rows), rows
    assert rows[0]["agreement_top1"] in (1.0, 100.0)  # fp32 is the int8 row's reference (itself for fp32)
    assert rows[1]["agreement_top1"] is not None and all(r["p50_ms"] > 0 for r in rows)

    proc = run_cli("info", ir["int8"].path)
    assert proc.returncode == 0, proc.stderr
    for text in ("format: openvino", "precision: int8", "apple, banana", "nncf", "tiny-vit_int8.bin"):
        assert text in proc.stdout, proc.stdout
    data = json.loads(run_cli("info", ir["fp32"].path, "--json").stdout)
    assert data["format"] == "openvino" and data["weights_bytes"] == ir["fp32"].path.with_suffix(".bin").stat().st_size


def _copy_pair(src, folder, name="m"):
    folder.mkdir(exist_ok=True)
    xml = folder / f"{name}.xml"
    shutil.copy(src, xml)
    shutil.copy(src.with_suffix(".bin"), xml.with_suffix(".bin"))
    return xml


def test_broken_pairs_give_one_clear_line(ir, image_dir, tmp_path):
    image = sorted(image_dir.glob("*.png"))[0]
    src = ir["fp32"].path

    missing = _copy_pair(src, tmp_path / "a")
    missing.with_suffix(".bin").unlink()
    line = assert_one_line_error(run_cli("predict", image, "--model", missing))
    assert "m.bin is missing" in line

    truncated = _copy_pair(src, tmp_path / "b")
    data = truncated.with_suffix(".bin").read_bytes()
    truncated.with_suffix(".bin").write_bytes(data[: len(data) // 3])
    line = assert_one_line_error(run_cli("predict", image, "--model", truncated))
    assert "Incorrect weights in bin file" in line and "m.bin" in line

    swapped = _copy_pair(src, tmp_path / "c")  # another model's weights: too short for this topology
    shutil.copy(ir["int8"].path.with_suffix(".bin"), swapped.with_suffix(".bin"))
    assert "cannot read this IR" in assert_one_line_error(run_cli("info", swapped))

    padded = _copy_pair(src, tmp_path / "p")  # loads in OpenVINO, but not the size export recorded
    with open(padded.with_suffix(".bin"), "ab") as fh:
        fh.write(b"\0" * 64)
    assert "keep each .xml with its own .bin" in assert_one_line_error(run_cli("predict", image, "--model", padded))
    info = json.loads(run_cli("info", padded, "--json").stdout)
    assert info["weights_match"] is False

    foreign = tmp_path / "notes.xml"
    foreign.write_text("<?xml version='1.0'?><notes><note>hello</note></notes>")
    foreign.with_suffix(".bin").write_bytes(b"\0" * 16)
    assert "not an OpenVINO IR" in assert_one_line_error(run_cli("info", foreign))

    hostile = _copy_pair(src, tmp_path / "d")
    text = hostile.read_text()
    hostile.write_text(text.replace("<rt_info>", '<rt_info>\n\t\t<vitedge value="[1, 2" />', 1)
                       .replace('<vitedge value="{', '<ignored value="{', 1))
    assert "not valid JSON" in assert_one_line_error(run_cli("info", hostile))


def test_export_keeps_an_existing_bin(tiny_model, calib_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny-vit_fp32.bin").write_bytes(b"precious")
    line = assert_one_line_error(run_cli("export", "--model", tiny_model, "--format", "openvino", "--calib", calib_dir,
                                         "--out", out))
    assert "--force" in line and "tiny-vit_fp32.bin" in line
    assert (out / "tiny-vit_fp32.bin").read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["tiny-vit_fp32.bin"]


def test_openvino_is_not_in_format_all():
    from vitedge import formats

    assert formats.get("openvino").suffix == ".xml"
    assert "openvino" not in [f.name for f in formats.all_formats() if f.in_all]
