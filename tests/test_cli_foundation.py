"""`vitedge variants`, `build`, `info` and their handling of bad input."""

import json
import zipfile

from conftest import assert_one_line_error, run_cli


def test_version_and_help():
    proc = run_cli("--version")
    assert proc.returncode == 0 and "vitedge" in proc.stdout
    for cmd in ("variants", "build", "info"):
        proc = run_cli(cmd, "--help")
        assert proc.returncode == 0, proc.stderr
        assert "Example" in proc.stdout


def test_variants_table_and_json():
    proc = run_cli("variants", "--json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert {"vit-ti16", "vit-s16", "vit-b16", "vit-b32", "vit-l16", "vit-l32", "vit-h14", "seed"} <= set(rows)
    assert rows["vit-b16"]["params"] == 86_567_656
    assert rows["vit-ti16"]["head_dim"] == 64
    table = run_cli("variants").stdout
    assert "vit-h14" in table and "86.57M" in table


def test_build_then_info(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    out = tmp_path / "m.keras"
    proc = run_cli("build", "--variant", "seed", "--image-size", "64", "--labels", labels, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["num_classes"] == 3 and summary["input_shape"] == [None, 64, 64, 3]
    info = json.loads(run_cli("info", out, "--json").stdout)
    assert info["labels"] == ["cat", "dog", "bird"]
    assert info["patch_grid"] == [4, 4] and info["tokens"] == 17
    assert info["params"] == summary["params"]
    assert info["macs"] > 0
    text = run_cli("info", out).stdout
    assert "patch grid" in text and "cat" in text


def test_bad_input_one_line_errors(tmp_path):
    out = tmp_path / "m.keras"
    assert "unknown variant" in assert_one_line_error(run_cli("build", "--variant", "vit-zz", "-o", out))
    assert "not divisible" in assert_one_line_error(run_cli("build", "--variant", "vit-ti16", "--image-size", "100", "-o", out))
    assert "no such file" in assert_one_line_error(run_cli("info", tmp_path / "missing.keras"))
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    assert "not a Keras model" in assert_one_line_error(run_cli("info", text))
    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("config.json", "{}")
    assert "not one saved by vitedge" in assert_one_line_error(run_cli("info", other_zip))
    assert "--force" in assert_one_line_error(run_cli("build", "-o", text))
    assert text.read_text() == "hello"  # nothing overwritten
    assert_one_line_error(run_cli("build", "--bogus-option"))
    assert "labels" in assert_one_line_error(run_cli("build", "--num-classes", "4", "--labels", _labels(tmp_path), "-o", out))
    assert not out.exists()


def _labels(tmp_path):
    p = tmp_path / "l3.txt"
    p.write_text("a\nb\nc\n")
    return p
