"""Export that scales: heavy steps in child processes, progress, up-front memory/disk checks,
a converter killed by the out-of-memory killer. Small models only; the thresholds are forced
through the env knobs (VITEDGE_EXPORT_ISOLATE, VITEDGE_MEMORY_AVAILABLE, VITEDGE_DISK_AVAILABLE).
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, run_cli
from vitedge.errors import VitedgeError


def _no_files(folder) -> bool:
    return not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("tflite", marks=pytest.mark.slow)])
def test_isolated_export_matches_keras_and_says_where_it_is(tmp_path, tiny_model, calib_dir, calib, keras_logits,
                                                             monkeypatch, fmt):
    """Forced isolation (threshold 0) on the tiny model: the Keras reference, tf2onnx (its
    large-model route) or the SavedModel and TFLite converter, and verification run in child
    processes; the files verify against Keras as in-process ones do, and progress lines name
    each stage with the elapsed time. (Each child imports TensorFlow: TFLite is the slow tier.)"""
    from vitedge.export import export_artifacts
    from vitedge.formats import read_metadata
    from vitedge.runtime import load_runtime

    monkeypatch.setenv("VITEDGE_EXPORT_ISOLATE", "0")
    said: list[str] = []
    out = tmp_path / "out"
    results = export_artifacts(tiny_model, formats=fmt, precisions="fp32", calib_dir=calib_dir,
                               out_dir=out, scores="logits", progress=True, say=said.append)
    assert [r.path.name for r in results] == [f"tiny-vit_fp32.{fmt}"]
    images = calib.images
    for r in results:
        assert r.verification["max_abs_diff"] < 1e-4 and r.verification["top1_agreement"] == 1.0
        got = load_runtime(r.path).run(images)
        np.testing.assert_allclose(got, keras_logits, atol=1e-4)
    assert read_metadata(results[0].path)["verification"]["images"] == len(images)
    text = "\n".join(said)
    assert "Keras model and its reference scores (own process)" in text
    assert {"onnx": "tf2onnx fp32 conversion and graph rewrite (own process)",
            "tflite": "tflite fp32: TFLiteConverter (own process)"}[fmt] in text
    assert f"1/1 {fmt} fp32: converting" in text and f"1/1 {fmt} fp32: verified, top-1 agreement 100.0%" in text
    stamps = [float(line[1:line.index(" s]")]) for line in said if line.startswith("[")]
    assert stamps == sorted(stamps) and len(stamps) == len(said)


def test_converter_killed_by_the_system_is_one_line_and_leaves_nothing(tmp_path, tiny_model, calib_dir,
                                                                         monkeypatch):
    """The TFLite converter's child dies of SIGKILL (what the OOM killer sends): one line naming
    the step and the likely cause; no file under the final names, not even the ONNX one made first."""
    from vitedge.export import export_artifacts, isolate

    real = isolate.call

    def killed_converter(ref, *args, **kwargs):
        if ref == "vitedge.export.tflite:convert":
            return real("signal:raise_signal", signal.SIGKILL, isolate=True, what=kwargs["what"])
        return real(ref, *args, **kwargs)

    monkeypatch.setattr(isolate, "call", killed_converter)
    out = tmp_path / "out"
    with pytest.raises(VitedgeError) as caught:
        export_artifacts(tiny_model, formats="onnx,tflite", precisions="fp32", calib_dir=calib_dir, out_dir=out)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("TFLite fp32 conversion was killed by the system (SIGKILL, most likely out of memory)")
    assert _no_files(out)


def test_child_errors_come_back_as_the_same_error():
    from vitedge.errors import UsageError
    from vitedge.export import isolate

    with pytest.raises(UsageError, match="unknown format 'nope'"):
        isolate.call("vitedge.export.pipeline:parse_formats", "nope", isolate=True)
    assert isolate.call("vitedge.export.pipeline:parse_formats", "onnx,tflite", isolate=True) == ["onnx", "tflite"]


@pytest.mark.parametrize(("knob", "value", "expected"), [
    ("VITEDGE_MEMORY_AVAILABLE", "50M", "not enough memory for exporting tiny-vit"),
    ("VITEDGE_DISK_AVAILABLE", "10K", "not enough disk space for exporting tiny-vit"),
])
def test_not_enough_memory_or_disk_is_refused_up_front(tmp_path, tiny_model, calib_dir, knob, value, expected):
    out = tmp_path / "out"
    started = time.perf_counter()
    proc = run_cli("export", "--model", tiny_model, "--format", "all", "--precision", "fp32,int8",
                   "--calib", calib_dir, "--out", out, env={knob: value})
    line = assert_one_line_error(proc)
    assert expected in line and "needs about" in line, line
    assert time.perf_counter() - started < 20  # before TensorFlow, images or conversion
    assert _no_files(out)


def test_estimate_grows_with_the_model_and_isolation_lowers_it():
    from vitedge import formats
    from vitedge.export.resources import estimate, parse_bytes

    pairs = [(formats.get(f), p) for f in ("tflite", "onnx", "ort") for p in ("fp32", "int8")]
    small, big = estimate(88_000_000, pairs, True), estimate(346_000_000, pairs, True)
    assert big.memory > small.memory and big.disk > 3 * small.disk
    assert estimate(346_000_000, pairs, False).memory > big.memory
    assert parse_bytes("8G", "X") == 8_000_000_000 and parse_bytes("512m", "X") == 512_000_000
    from vitedge.errors import UsageError

    with pytest.raises(UsageError, match="X='lots'"):
        parse_bytes("lots", "X")


def test_isolation_knob():
    from vitedge.errors import UsageError
    from vitedge.export import isolate

    mp = pytest.MonkeyPatch()
    try:
        mp.setenv(isolate.ENV, "off")
        assert not isolate.wanted(10**12)
        mp.setenv(isolate.ENV, "1000")
        assert isolate.wanted(1000) and not isolate.wanted(999)
        mp.delenv(isolate.ENV)
        assert isolate.wanted(4 * 22_000_000) and not isolate.wanted(4 * 5_700_000)  # ViT-S yes, ViT-Ti no
        mp.setenv(isolate.ENV, "many")
        with pytest.raises(UsageError):
            isolate.threshold()
    finally:
        mp.undo()


def test_an_artifact_past_its_formats_file_limit_is_refused_up_front(tmp_path, calib_dir):
    """ViT-H/14's fp32 weights (2.5 GB) do not fit a .tflite FlatBuffer: refused in the plan,
    in one line naming the precisions that fit, before TensorFlow or any image."""
    out = tmp_path / "out"
    started = time.perf_counter()
    proc = run_cli("export", "--variant", "vit-h14", "--format", "tflite", "--precision", "fp32",
                   "--calib", calib_dir, "--out", out)
    line = assert_one_line_error(proc)
    assert "TFLite fp32 of vit-h14 would be about 2.5 GB, past the 2 GiB a .tflite file can hold" in line
    assert "int8" in line and time.perf_counter() - started < 20
    assert _no_files(out)


def test_progress_lines_do_not_come_before_a_bad_input_error(tmp_path, tiny_model):
    """With isolation (progress lines in logs too) a missing calibration folder is still one line."""
    proc = run_cli("export", "--model", tiny_model, "--calib", tmp_path / "nothing", "--out", tmp_path / "out",
                   env={"VITEDGE_EXPORT_ISOLATE": "0"})
    assert "nothing" in assert_one_line_error(proc)
