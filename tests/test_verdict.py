"""The pass/fail logic of `make bench-int8` and `--int8 auto`'s choice, on made-up timing rows
(vitedge.bench.verdict: pure functions, so a wrong comparison cannot hide behind real timings)."""

import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO

from vitedge.bench.verdict import (
    ANY,
    ISSUE7_BARS,
    Bars,
    best_int8,
    choose_recipe,
    failed_checks,
    judge,
)


def row(model="default", fmt="onnx", precision="int8", speedup=1.5, size_ratio=0.25, top1_delta=None):
    r = {"model": model, "format": fmt, "precision": precision, "speedup": speedup, "size_ratio": size_ratio}
    if top1_delta is not None:
        r["top1_delta"] = top1_delta
    return r


# ------------------------------------------------------------------------- one row ----
@pytest.mark.parametrize("speedup, size_ratio, top1_delta, failed", [
    (1.25, 0.30, -0.3, []),  # exactly on every bar passes
    (1.2499, 0.30, -0.3, ["speed"]),
    (1.5, 0.3001, 0.0, ["size"]),
    (1.5, 0.25, -0.31, ["top-1"]),
    (1.0, 0.5, -1.0, ["speed", "size", "top-1"]),
    (float("nan"), 0.25, None, ["speed"]),  # a failed measurement never passes
    (2.0, 0.25, None, []),  # top-1 not measured (ViT-Ti): not judged
])
def test_a_row_under_a_bar_fails_that_bar(speedup, size_ratio, top1_delta, failed):
    r = row(speedup=speedup, size_ratio=size_ratio, top1_delta=top1_delta)
    assert failed_checks(r, 1.25, ISSUE7_BARS) == failed


def test_speed_bar_is_looked_up_in_a_table_most_specific_first():
    # issue 15's fixed bars, as a table edit
    bars = Bars(speed={("vit-ti16", "onnx"): 1.5, ("vit-ti16", "tflite"): 1.10, ("default", ANY): 1.0},
                bound_fraction=None)
    assert bars.speed_bar("vit-ti16", "onnx") == 1.5
    assert bars.speed_bar("vit-ti16", "tflite") == 1.10
    assert bars.speed_bar("default", "onnx") == bars.speed_bar("default", "tflite") == 1.0
    assert bars.speed_bar("default", "onnx", bound=0.5) == 1.0  # fixed: a low kernel bound does not lower it
    with pytest.raises(KeyError):
        bars.speed_bar("vit-s16", "onnx")
    assert Bars(speed={(ANY, ANY): 1.2, (ANY, "tflite"): 1.1}).speed_bar("x", "tflite") == 1.1


def test_a_kernel_bound_below_the_bar_lowers_it_to_90_percent_of_the_bound():
    assert ISSUE7_BARS.speed_bar("default", "onnx") == 1.25
    assert ISSUE7_BARS.speed_bar("default", "onnx", bound=1.10) == pytest.approx(0.99)
    assert ISSUE7_BARS.speed_bar("default", "onnx", bound=1.40) == 1.25  # a higher bound never raises it


# -------------------------------------------------------------------- the best file ----
def test_the_best_file_is_the_fastest_faithful_one():
    fast_but_big = dict(row(precision="dynamic", speedup=1.9, size_ratio=0.5), failed=["size"])
    slower_ok = dict(row(precision="int8", speedup=1.3), failed=[])
    assert best_int8([fast_but_big, slower_ok]) is slower_ok
    # among faithful files, the fastest, even when it misses the speed bar
    a = dict(row(precision="dynamic", speedup=1.1), failed=["speed"])
    b = dict(row(precision="int8", speedup=1.2), failed=["speed"])
    assert best_int8([a, b]) is b and best_int8([b, a]) is b
    # none faithful: the fastest of all
    c = dict(row(precision="dynamic", speedup=1.4, top1_delta=-2.0), failed=["top-1"])
    d = dict(row(precision="int8", speedup=1.6, size_ratio=0.4), failed=["size"])
    assert best_int8([c, d]) is d
    with pytest.raises(ValueError):
        best_int8([])


def test_judge_marks_every_row_judges_the_best_and_sets_the_exit_code():
    rows = [
        row("default", "tflite", "dynamic", speedup=1.05, top1_delta=0.0),
        row("default", "tflite", "int8", speedup=1.30, top1_delta=-0.1),   # best, passes
        row("default", "onnx", "dynamic", speedup=1.60, top1_delta=-0.5),  # fastest, but loses top-1
        row("default", "onnx", "int8", speedup=1.20, top1_delta=0.0),      # best: faithful, short of 1.25x
        row("vit-ti16", "onnx", "dynamic", speedup=1.40, size_ratio=0.26),
        row("vit-ti16", "onnx", "int8", speedup=1.10, size_ratio=0.26),
    ]
    verdict = judge(rows, ISSUE7_BARS, bounds={("vit-ti16", "onnx"): 1.2})
    assert [r["speed_bar"] for r in rows] == pytest.approx([1.25] * 4 + [1.08] * 2)
    assert [r["failed"] for r in rows] == [["speed"], [], ["top-1"], ["speed"], [], []]
    assert [(r["model"], r["format"], r["precision"]) for r in verdict.best] == [
        ("default", "tflite", "int8"), ("default", "onnx", "int8"), ("vit-ti16", "onnx", "dynamic")]
    assert verdict.failures == ["default onnx: speed"]
    assert verdict.exit_code == 1
    # the same rows, the onnx int8 file a little faster: everything passes, exit 0
    rows[3]["speedup"] = 1.26
    verdict = judge(rows, ISSUE7_BARS, bounds={("vit-ti16", "onnx"): 1.2})
    assert verdict.failures == [] and verdict.exit_code == 0


def test_a_failing_row_that_is_not_the_best_does_not_fail_the_run():
    rows = [row(precision="dynamic", speedup=0.9), row(precision="int8", speedup=1.4)]
    verdict = judge(rows)
    assert rows[0]["failed"] == ["speed"] and verdict.exit_code == 0


# ------------------------------------------------------------------------ --int8 auto ----
def test_auto_chooses_the_fastest_recipe_within_the_bound():
    candidates = [{"recipe": "dynamic", "met": True, "speedup_vs_fp32": 1.1, "drop": 0.2},
                  {"recipe": "qdq", "met": False, "speedup_vs_fp32": 1.5, "drop": 2.0},
                  {"recipe": "qdq-fast", "met": True, "speedup_vs_fp32": 1.3, "drop": 0.4}]
    assert choose_recipe(candidates) == (2, "fastest within the bound")


def test_auto_without_a_recipe_within_the_bound_takes_the_closest():
    candidates = [{"met": False, "speedup_vs_fp32": 1.5, "drop": 2.0},
                  {"met": False, "speedup_vs_fp32": 1.1, "drop": 1.0},
                  {"met": False, "speedup_vs_fp32": 1.2, "drop": 1.0}]
    assert choose_recipe(candidates) == (2, "none within the bound: the closest")  # tie on drop: faster
    # no accuracy measured (no --max-drop): every candidate is met, the fastest wins
    assert choose_recipe([{"met": True, "speedup_vs_fp32": 0.9}, {"met": True, "speedup_vs_fp32": 1.2}])[0] == 1
    with pytest.raises(ValueError):
        choose_recipe([])


# -------------------------------------------------------------------- the call sites ----
def test_bench_int8_script_and_auto_use_these_functions():
    spec = importlib.util.spec_from_file_location("bench_int8", REPO / "scripts" / "bench_int8.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.judge is judge and script.BARS is ISSUE7_BARS
    from vitedge.quant import control

    assert control.choose_recipe is choose_recipe


def test_verdict_module_needs_nothing_but_the_standard_library():
    code = "import sys, vitedge.bench.verdict; assert 'numpy' not in sys.modules and 'tensorflow' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
