"""`vitedge bench`: figures checked against counts made by hand, failed rows, bad data, outputs."""

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from PIL import Image

from vitedge.bench.dataset import BenchData, limit_data
from vitedge.bench.report import COLUMNS
from vitedge.bench.runner import Row, choose_references, class_targets, reference_groups
from vitedge.bench.stats import latency_summary, paired_speedup, pareto_front
from vitedge.formats import read_metadata
from vitedge.preprocess import Preprocessing, preprocess_image
from vitedge.runtime import load_runtime

FAST = ("--warmup", "1", "--runs", "8", "--threads", "2")


@pytest.fixture(scope="module")
def labels(tiny_artifacts):
    return read_metadata(tiny_artifacts[("tflite", "fp32")])["labels"]


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory, labels):
    """Three images per class (coloured noise of different sizes) and one unreadable file."""
    root = tmp_path_factory.mktemp("bench-data") / "test"
    rng = np.random.default_rng(7)
    for c, name in enumerate(labels):
        (root / name).mkdir(parents=True)
        for i in range(3):
            size = (24 + 8 * i, 40 - 4 * i)
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8) // (c + 1)
            Image.fromarray(pixels).save(root / name / f"img{i}.png")
    (root / labels[0] / "broken.png").write_bytes(b"this is not a png")
    return root


def hand_scores(path, folder, labels):
    """Scores and targets of every readable image, computed here without vitedge.bench."""
    meta = read_metadata(path)
    size = tuple(meta["input"]["shape"][1:3])
    pre = Preprocessing.from_dict(meta["preprocessing"])
    rt = load_runtime(path, threads=2)
    scores, targets = [], []
    for c, name in enumerate(labels):
        for image in sorted((folder / name).glob("img*.png")):
            scores.append(rt.run(preprocess_image(image, size, pre)[None])[0])
            targets.append(c)
    return np.asarray(scores), np.asarray(targets)


@pytest.fixture(scope="module")
def full_run(tiny_artifacts, labelled_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-out")
    files = [tiny_artifacts[k] for k in (("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8"))]
    proc = run_cli("bench", *files, "--data", labelled_folder, *FAST, "--json", out / "b.json",
                   "--csv", out / "b.csv", "--plot", out / "b.png")
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads((out / "b.json").read_text()), out


def test_accuracy_equals_a_count_by_hand(full_run, tiny_artifacts, labelled_folder, labels):
    _, report, _ = full_run
    rows = {r["path"]: r for r in report["rows"]}
    assert report["data"]["images"] == 3 * len(labels)
    assert report["data"]["unreadable"] == 1 and "broken.png" in report["data"]["unreadable_files"][0]["file"]
    hand = {}
    for key, path in tiny_artifacts.items():
        if key[0] not in ("tflite", "onnx") or key[1] not in ("fp32", "int8"):
            continue
        scores, targets = hand_scores(path, labelled_folder, labels)
        hand[key] = scores
        row = rows[str(path)]
        correct = int((scores.argmax(1) == targets).sum())
        top5 = int(sum(t in np.argsort(-s)[:5] for s, t in zip(scores, targets, strict=True)))
        assert row["status"] == "ok" and row["images"] == len(targets)
        assert row["correct"] == correct, key
        assert row["top1"] == pytest.approx(100 * correct / len(targets))
        assert row["top5"] == pytest.approx(100 * top5 / len(targets))
    # agreement: each int8 file against the fp32 file of its own format
    for fmt in ("tflite", "onnx"):
        row = rows[str(tiny_artifacts[(fmt, "int8")])]
        assert row["reference"] == tiny_artifacts[(fmt, "fp32")].name
        same = (hand[(fmt, "int8")].argmax(1) == hand[(fmt, "fp32")].argmax(1)).mean()
        assert row["agreement_top1"] == pytest.approx(100 * same)
        assert row["mean_abs_diff"] == pytest.approx(np.abs(hand[(fmt, "int8")] - hand[(fmt, "fp32")]).mean(), abs=1e-4)
        assert row["delta_top1"] == pytest.approx(row["top1"] - rows[str(tiny_artifacts[(fmt, "fp32")])]["top1"])
        assert rows[str(tiny_artifacts[(fmt, "fp32")])]["agreement_top1"] == 100.0


def test_json_csv_table_and_plot_hold_every_column(full_run):
    proc, report, out = full_run
    assert [c["key"] for c in report["columns"]] == [k for _, k in COLUMNS]
    for row in report["rows"]:
        for _, key in COLUMNS:
            assert key in row, key
            assert row[key] is not None or key == "delta_top1" and row["reference"] == row["artifact"], key
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["min_ms"] <= row["p50_ms"]
        assert row["load_ms"] > 0 and row["first_inference_ms"] > 0 and row["peak_rss_mb"] > 10
        assert row["images_per_s"] == pytest.approx(1e3 / row["mean_ms"], rel=1e-6)
        assert row["size_bytes"] > 0 and row["runs"] == 8 and row["threads"] == 2
    machine = report["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and "onnxruntime" in machine["packages"]
    assert "ai-edge-litert" in machine["packages"] and machine["python"].startswith("3.")
    lines = list(csv.DictReader(io.StringIO((out / "b.csv").read_text())))
    assert len(lines) == len(report["rows"])
    for line, row in zip(lines, report["rows"], strict=True):
        assert line["artifact"] == row["artifact"] and float(line["p50_ms"]) == pytest.approx(row["p50_ms"])
        assert line["machine_cpu"] == machine["cpu"] and line["version_onnxruntime"]
    table = proc.stdout
    for header, _ in COLUMNS:
        assert header in table
    assert table.count(" ok") == 4 and "skipped 1 unreadable" in table
    assert (out / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_broken_artifacts_give_failed_rows(tiny_artifacts, labelled_folder, tmp_path):
    good = tiny_artifacts[("onnx", "fp32")]
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(tiny_artifacts[("tflite", "fp32")].read_bytes()[:2000])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("not a model")
    proc = run_cli("bench", good, truncated, garbage, tmp_path / "missing.onnx", "--data", labelled_folder,
                   *FAST, "--json", tmp_path / "b.json")
    line = assert_one_line_error(proc)
    assert "3 of 4 artifacts failed" in line
    rows = {r["artifact"]: r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    assert rows[good.name]["status"] == "ok" and rows[good.name]["top1"] is not None
    for name in ("truncated.tflite", "garbage.onnx", "missing.onnx"):
        assert rows[name]["status"] == "failed" and rows[name]["error"], name
        assert rows[name]["p50_ms"] is None
    assert "no such file" in rows["missing.onnx"]["error"]
    assert "FAILED" in proc.stdout and good.name in proc.stdout


def test_timeout_fails_the_row(tiny_artifacts, tmp_path):
    proc = run_cli("bench", tiny_artifacts[("tflite", "fp32")], "--runs", "1000000", "--timeout", "3",
                   "--limit", "4", "--json", "-")
    assert proc.returncode == 1
    (row,) = json.loads(proc.stdout)["rows"]
    assert row["status"] == "failed" and row["error"].startswith("timeout:")


def test_a_crashing_worker_is_a_failed_row(tmp_path, monkeypatch):
    from vitedge.bench import runner

    crash = "import os, signal, sys; sys.stderr.write('about to crash\\n'); os.kill(os.getpid(), signal.SIGSEGV)"
    monkeypatch.setattr(runner, "WORKER_COMMAND", [sys.executable, "-c", crash])
    reply = runner.run_worker({}, timeout=60, stderr_path=tmp_path / "err")
    assert reply["event"] == "error" and reply["stage"] == "crash"
    assert "SIGSEGV" in reply["message"] and "about to crash" in reply["message"]


def test_no_data_gives_agreement_only_and_json_on_stdout(tiny_artifacts):
    # --reference names a file not in the list: it is benched too, as the row the others compare with
    proc = run_cli("bench", tiny_artifacts[("onnx", "int8")], *FAST, "--reference", tiny_artifacts[("tflite", "fp32")],
                   "--limit", "10", "--batch", "2", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # the table went to stderr
    assert "agreement" in proc.stderr and report["data"]["source"] == "random" and report["data"]["images"] == 10
    int8, ref = report["rows"]
    assert ref["artifact"] == tiny_artifacts[("tflite", "fp32")].name and ref["reference"] == ref["artifact"]
    assert int8["top1"] is None and int8["reference"] == ref["artifact"] and 0 <= int8["agreement_top1"] <= 100
    assert int8["batch"] == 2 and int8["images_per_s"] == pytest.approx(2e3 / int8["mean_ms"], rel=1e-6)


def test_bad_data_and_options_are_one_line_errors(tiny_artifacts, labelled_folder, labels, tmp_path):
    art = tiny_artifacts[("tflite", "fp32")]
    wrong = tmp_path / "wrong"
    shutil.copytree(labelled_folder, wrong)
    (wrong / labels[0]).rename(wrong / "zebra")
    line = assert_one_line_error(run_cli("bench", art, "--data", wrong))
    assert "zebra" in line and labels[1] in line and "labels" in line
    (tmp_path / "empty").mkdir()
    assert "no images" in assert_one_line_error(run_cli("bench", art, "--data", tmp_path / "empty"))
    assert "no such folder" in assert_one_line_error(run_cli("bench", art, "--data", tmp_path / "nope"))
    assert ".png" in assert_one_line_error(run_cli("bench", art, "--plot", tmp_path / "p.jpg"))
    assert "stdout" in assert_one_line_error(run_cli("bench", art, "--json", "-", "--csv", "-"))
    existing = tmp_path / "b.json"
    existing.write_text("{}")
    assert "--force" in assert_one_line_error(run_cli("bench", art, "--json", existing))
    assert existing.read_text() == "{}"


def test_device_path_without_tensorflow(tiny_artifacts, tmp_path):
    """With TensorFlow unimportable, artifacts bench normally and a .keras file is a clear error."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):\n"
        "            raise ModuleNotFoundError(f'blocked: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {"PYTHONPATH": str(site)}
    proc = run_cli("bench", tiny_artifacts[("tflite", "int8")], tiny_artifacts[("onnx", "fp32")], *FAST,
                   "--limit", "4", "--json", "-", env=env)
    assert proc.returncode == 0, proc.stderr
    assert all(r["status"] == "ok" for r in json.loads(proc.stdout)["rows"])
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"PK")
    line = assert_one_line_error(run_cli("bench", tiny_artifacts[("onnx", "fp32")], keras_file, env=env))
    assert "TensorFlow" in line and "vitedge[export]" in line


def test_keras_model_is_the_float_reference(tiny_model, tiny_artifacts, labelled_folder):
    proc = run_cli("bench", tiny_artifacts[("tflite", "fp32")], tiny_artifacts[("onnx", "int8")], tiny_model,
                   "--data", labelled_folder, *FAST, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    fp32, int8, keras = json.loads(proc.stdout)["rows"]
    assert keras["runtime"] == "keras" and keras["precision"] == "fp32" and keras["status"] == "ok"
    assert fp32["reference"] == int8["reference"] == keras["artifact"]
    assert fp32["agreement_top1"] == 100.0 and fp32["mean_abs_diff"] < 1e-4 and fp32["delta_top1"] == 0.0
    assert int8["agreement_top1"] is not None and int8["top1"] is not None


def test_help_has_examples():
    proc = run_cli("bench", "--help")
    assert proc.returncode == 0 and "Example" in proc.stdout and "--reference" in proc.stdout


# ------------------------------------------------------------------------- pure helpers ---
def test_latency_percentiles_are_ordered():
    rng = np.random.default_rng(0)
    s = latency_summary(rng.gamma(2.0, 3.0, 500), batch=4)
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["images_per_s"] == pytest.approx(4e3 / s["mean_ms"])


def test_pareto_front():
    points = [(1.0, 80.0), (2.0, 85.0), (2.5, 84.0), (3.0, 85.0), (0.5, 70.0), (4.0, 90.0)]
    assert pareto_front(points) == [4, 0, 1, 5]


def test_class_folders_match_labels_by_name():
    labels = ["T-shirt/top", "Trouser", "Ankle boot"]
    targets, missing = class_targets(["Ankle_boot", "T-shirt_top"], labels)
    assert targets.tolist() == [2, 0] and missing == []
    assert class_targets(["Trouser", "Hat"], labels) == (None, ["Hat"])


def test_limit_is_class_balanced_and_repeatable():
    targets = np.repeat(np.arange(3), [50, 30, 5])
    data = BenchData("x", [f"f{i}" for i in range(len(targets))], ["a", "b", "c"], targets, len(targets))
    one, two = limit_data(data, 12), limit_data(data, 12)
    assert one.files == two.files
    assert np.bincount(one.targets, minlength=3).tolist() == [4, 4, 4]
    few = limit_data(data, 20)  # class c has only 5: the others fill in
    assert np.bincount(few.targets, minlength=3).tolist() == [8, 7, 5]
    assert len(limit_data(data, 1000)) == len(targets)


def test_rounds_pool_the_timed_runs_of_fresh_processes(tiny_artifacts):
    proc = run_cli("bench", tiny_artifacts[("onnx", "dynamic")], tiny_artifacts[("tflite", "fp32")], "--warmup", "1",
                   "--runs", "5", "--rounds", "3", "--threads", "1", "--limit", "4", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["settings"]["rounds"] == 3 and "in each of 3 alternating rounds" in proc.stderr
    for row in report["rows"]:
        assert row["status"] == "ok" and row["runs"] == 5 and row["timed_runs"] == 15, row
        assert row["p50_ms"] > 0 and len(row["round_p50_ms"]) == 3
    dynamic, fp32 = report["rows"]
    assert fp32["speedup"] == 1.0  # its own reference
    ratios = [a / b for a, b in zip(fp32["round_p50_ms"], dynamic["round_p50_ms"], strict=True)]
    assert dynamic["reference"] == fp32["artifact"] and dynamic["speedup"] == pytest.approx(float(np.median(ratios)))
    assert "median of the per-round ratios" in proc.stderr


def test_speedup_is_the_median_of_paired_round_ratios():
    # the machine slows down in rounds 2 and 3: pooled p50s (5 vs 5) would call it a tie
    ref, row = [10.0, 20.0, 20.0, 10.0], [5.0, 10.0, 10.0, 5.0]
    got = paired_speedup(ref, row)
    assert got["speedup"] == 2.0 and got["speedup_iqr"] == [2.0, 2.0]
    assert paired_speedup([4.0, 4.0, 8.0], [2.0, 4.0, 4.0])["speedup"] == 2.0
    assert paired_speedup([1.0, 2.0], [1.0]) == {} and paired_speedup(None, [1.0]) == {}


def _row(name, fmt, precision, model):
    return Row(path=Path(name), name=name, format=fmt,
               metadata={"precision": precision, "source": {"model_sha256": model, "variant": "custom"}})


def test_each_artifact_is_compared_with_the_fp32_file_of_its_own_model_and_format():
    rows = [_row(*spec) for spec in [("a_fp32.onnx", "onnx", "fp32", "A"), ("b_int8.onnx", "onnx", "int8", "B"),
                                     ("b_fp32.onnx", "onnx", "fp32", "B"), ("a_int8.onnx", "onnx", "int8", "A"),
                                     ("a_fp32.tflite", "tflite", "fp32", "A"), ("c_int8.onnx", "onnx", "int8", "C")]]
    choose_references(rows, None)
    names = {r.name: r.reference.name for r in rows}
    assert names == {"a_fp32.onnx": "a_fp32.onnx", "b_int8.onnx": "b_fp32.onnx", "b_fp32.onnx": "b_fp32.onnx",
                     "a_int8.onnx": "a_fp32.onnx", "a_fp32.tflite": "a_fp32.tflite",
                     "c_int8.onnx": "a_fp32.onnx"}  # no fp32 of model C: the format's first
    # timed in groups, each reference next to the rows compared with it
    assert [r.name for r in reference_groups(rows)] == ["a_fp32.onnx", "a_int8.onnx", "c_int8.onnx", "b_fp32.onnx",
                                                       "b_int8.onnx", "a_fp32.tflite"]


def test_min_time_keeps_timing_past_the_runs_asked_for(tiny_artifacts):
    # the tiny model runs in well under a millisecond: 0.2 s holds far more than 5 runs
    proc = run_cli("bench", tiny_artifacts[("tflite", "fp32")], "--warmup", "1", "--runs", "5", "--min-time", "0.2",
                   "--rounds", "2", "--threads", "1", "--limit", "2", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["rows"]
    assert row["timed_runs"] > 2 * 20 and row["min_time_s"] == 0.2, row["timed_runs"]
    assert "(or more, to fill 0.2 s)" in proc.stderr


def test_interleave_times_each_reference_with_its_rows_in_one_process(tiny_artifacts):
    files = [tiny_artifacts[("onnx", "fp32")], tiny_artifacts[("onnx", "dynamic")], tiny_artifacts[("tflite", "fp32")],
             tiny_artifacts[("tflite", "int8")]]
    proc = run_cli("bench", *files, "--warmup", "1", "--runs", "5", "--interleave", "1", "--threads", "1",
                   "--limit", "2", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    rows = {r["artifact"]: r for r in json.loads(proc.stdout)["rows"]}
    assert all(r["interleaved"] for r in rows.values()) and "timed together in one process" in proc.stderr
    fp32, dynamic = rows["tiny-vit_fp32.onnx"], rows["tiny-vit_dynamic.onnx"]
    # one turn each per cycle: the pair has as many turns, and the speed-up is their median ratio
    assert len(fp32["round_p50_ms"]) == len(dynamic["round_p50_ms"]) > 1
    ratios = np.asarray(fp32["round_p50_ms"]) / np.asarray(dynamic["round_p50_ms"])
    assert dynamic["speedup"] == pytest.approx(float(np.median(ratios)))
    assert dynamic["timed_runs"] > 5 and rows["tiny-vit_int8.tflite"]["reference"] == "tiny-vit_fp32.tflite"


def test_interleave_and_rounds_do_not_mix(tiny_artifacts):
    line = assert_one_line_error(run_cli("bench", tiny_artifacts[("onnx", "fp32")], "--interleave", "1", "--rounds", "3"))
    assert "--interleave" in line and "--rounds" in line
