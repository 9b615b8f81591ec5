"""`vitedge profile`: per-op-type time (LiteRT per-op models, ONNX Runtime profiler) and the
per-layer quantization error report, on conftest's tiny artifacts."""

import json
import shutil

import pytest
from conftest import assert_one_line_error, run_cli

pytest.importorskip("tensorflow")


def test_tflite_profile_prints_op_types_delegation_and_worst_layers(tiny_artifacts):
    proc = run_cli("profile", tiny_artifacts[("tflite", "int8")], "--runs", "5", "--images", "4")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "QUANTIZE", "XNNPACK", "whole model p50",
                 "quantization error vs", "tiny-vit_fp32.tflite", "worst first"):
        assert text in out, text
    fc = next(line for line in out.splitlines() if line.startswith("FULLY_CONNECTED"))
    assert " int8 " in fc and "9/9" in fc  # qkv, proj, fc1, fc2 of 2 blocks + head; XNNPACK takes all


def test_profile_json_for_onnx_and_fp32(tiny_artifacts):
    proc = run_cli("profile", tiny_artifacts[("onnx", "dynamic")], "--runs", "5", "--images", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    kinds = {(r["op_type"], r["compute"]) for r in data["op_types"]}
    assert ("DynamicQuantizeMatMul", "int8") in kinds or ("MatMulInteger", "int8") in kinds, kinds
    assert ("LayerNormalization", "float32") in kinds
    assert data["errors"]["int8_layers"] == 10 and len(data["errors"]["worst"]) == 5
    assert data["whole_ms"] > 0 and data["runtime"] == "onnxruntime"
    fp32 = json.loads(run_cli("profile", tiny_artifacts[("tflite", "fp32")], "--runs", "3", "--json").stdout)
    assert fp32["errors"] is None and "fp32 artifact itself" in fp32["note"]
    assert {r["compute"] for r in fp32["op_types"]} <= {"float32", "int32"}


def test_profile_without_twin_and_bad_input(tiny_artifacts, tmp_path):
    alone = tmp_path / "model_int8.tflite"
    shutil.copy(tiny_artifacts[("tflite", "int8")], alone)
    proc = run_cli("profile", alone, "--runs", "3")
    assert proc.returncode == 0 and "no fp32 twin" in proc.stderr and "FULLY_CONNECTED" in proc.stdout
    assert "no such file" in assert_one_line_error(run_cli("profile", tmp_path / "missing.tflite"))
    wrong = run_cli("profile", alone, "--reference", tiny_artifacts[("onnx", "fp32")])
    assert "same format" in assert_one_line_error(wrong)
