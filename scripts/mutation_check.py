#!/usr/bin/env python3
"""Does the suite have teeth? Apply hand-picked bugs one at a time and see whether tests fail.

Each mutation replaces one exact piece of source text with a plausible bug (a flipped
comparison, a dropped normalization, reversed labels, a second softmax, an off-by-one, ...) in
a fresh COPY of this checkout (the working tree is never touched), then runs only the test
files that should notice, with -x. "caught": the tests failed; "MISSED": they passed with the
bug in. First, each test selection runs once without any mutation, so a selection that fails
on its own is reported rather than counted as a catch.

Not part of `make test`: run it by hand after changing tests or the code they guard
(results: docs/testing.md). A mutation whose text no longer exists is reported as "stale".

    python scripts/mutation_check.py              # all mutations (about 10 minutes on 2 cores)
    python scripts/mutation_check.py --list
    python scripts/mutation_check.py --only topk-one-short,labels-reversed [--no-baseline]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions
    what: str


EXPORT_ROUND_TRIP = ("tests/test_export.py", "-k", "metadata_round_trip")
ONNX_INT8_VS_KERAS = ("tests/test_export.py::test_every_format_and_precision_exports_loads_and_runs[onnx-int8]",)

MUTATIONS = [
    Mutation("preprocess-size-check-flipped", "vitedge/preprocess.py",
             "if min(img.size) < MIN_IMAGE_SIDE:", "if min(img.size) > MIN_IMAGE_SIDE:",
             ("tests/test_preprocess.py",), "images too small to classify accepted, normal ones refused"),
    Mutation("preprocess-float-range-flipped", "vitedge/preprocess.py",
             "if top <= 1.0 and low >= 0.0:", "if top >= 1.0 and low >= 0.0:",
             ("tests/test_preprocess.py",), "float images in 0..1 not scaled to 0..255"),
    Mutation("preprocess-pad-scale-max", "vitedge/preprocess.py",
             "scale = min(w / img.width, h / img.height)", "scale = max(w / img.width, h / img.height)",
             ("tests/test_preprocess.py",), "pad resize crops instead of letterboxing"),
    Mutation("normalization-dropped", "vitedge/preprocess.py",
             "return (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)", "return x",
             ("tests/test_preprocess.py",), "pixels fed as 0..1, no mean/std"),
    Mutation("normalization-std-dropped", "vitedge/preprocess.py",
             "return (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)",
             "return x - np.asarray(pre.mean, np.float32)",
             ("tests/test_preprocess.py",), "mean subtracted, std division forgotten"),
    Mutation("labels-reversed-in-metadata", "vitedge/export/metadata.py",
             '"labels": list(spec.labels),', '"labels": list(reversed(spec.labels)),',
             EXPORT_ROUND_TRIP, "exported files name the classes in the wrong order"),
    Mutation("softmax-twice-on-logits", "vitedge/predict.py",
             "        return np.asarray(scores, dtype=np.float64)\n    return softmax(scores)",
             "        return np.asarray(scores, dtype=np.float64)\n    return softmax(softmax(scores))",
             ("tests/test_predict.py", "-k", "probabilities_and_top_k"), "predict's probabilities flattened"),
    Mutation("softmax-on-probabilities", "vitedge/predict.py",
             "        return np.asarray(scores, dtype=np.float64)\n    return softmax(scores)",
             "        return softmax(scores)\n    return softmax(scores)",
             ("tests/test_predict.py", "-k", "probabilities_and_top_k"), "a model ending in softmax gets a second one"),
    Mutation("topk-one-short", "vitedge/predict.py",
             'order = np.argsort(-probs, kind="stable")[:k]', 'order = np.argsort(-probs, kind="stable")[:k - 1]',
             ("tests/test_predict.py", "-k", "probabilities_and_top_k"), "top-k shows k-1 classes"),
    Mutation("topk-one-too-many", "vitedge/predict.py",
             'order = np.argsort(-probs, kind="stable")[:k]', 'order = np.argsort(-probs, kind="stable")[:k + 1]',
             ("tests/test_predict.py", "-k", "probabilities_and_top_k"), "top-k shows k+1 classes"),
    Mutation("bench-top5-is-top4", "vitedge/bench/stats.py",
             "k = min(5, scores.shape[1])", "k = min(4, scores.shape[1])",
             ("tests/test_bench.py", "-k", "accuracy_equals_a_count_by_hand"), "bench's top-5 counts 4 classes"),
    Mutation("bench-speedup-inverted", "vitedge/bench/stats.py",
             "ratios = np.asarray(ref_rounds, dtype=np.float64) / np.asarray(rounds, dtype=np.float64)",
             "ratios = np.asarray(rounds, dtype=np.float64) / np.asarray(ref_rounds, dtype=np.float64)",
             ("tests/test_bench.py", "-k", "speedup_is_the_median"), "slower int8 reported as faster"),
    Mutation("int8-input-zero-point-sign", "vitedge/runtime/litert.py",
             "np.rint(batch / scale) + zero", "np.rint(batch / scale) - zero",
             ("tests/test_runtime.py", "-k", "int8_io_uses"), "int8 inputs quantized with the wrong zero point"),
    Mutation("verify-records-mean-as-max", "vitedge/export/verify.py",
             '"max_abs_diff": float(diff.max()),', '"max_abs_diff": float(diff.mean()),',
             ONNX_INT8_VS_KERAS, "stored verification figures understate the error"),
    Mutation("fp32-limit-loosened", "vitedge/export/verify.py",
             "FP32_TOLERANCE = 1e-4", "FP32_TOLERANCE = 1e-2",
             ("tests/test_mobile.py", "-k", "fp32_limit_still_catches"), "export accepts fp32 files 100x further off"),
    Mutation("onnx-int8-per-tensor-weights", "vitedge/quant/onnx_quant.py",
             "quant_format=getattr(QuantFormat, recipe.quant_format), per_channel=per_channel,",
             "quant_format=getattr(QuantFormat, recipe.quant_format), per_channel=False,",
             (*ONNX_INT8_VS_KERAS, "tests/test_export.py::test_onnx_int8_has_int8_weights_and_quantized_matmuls"),
             "ONNX int8 weights per tensor while the metadata says per channel"),
    Mutation("tflite-calibrated-on-one-image", "vitedge/quant/tflite_quant.py",
             "for i in range(0, len(images) - step + 1, step))", "for i in range(0, 1))",
             ("tests/test_export.py::test_every_format_and_precision_exports_loads_and_runs[tflite-int8]",),
             "TFLite int8 ranges from the first calibration image only"),
    Mutation("calibration-seed-ignored", "vitedge/calibration.py",
             "np.random.default_rng(seed).permutation", "np.random.default_rng(0).permutation",
             ("tests/test_export.py", "-k", "calibration_choice_is_deterministic"), "--calib-seed has no effect"),
    Mutation("imagefolder-classes-reversed", "vitedge/data/imagefolder.py",
             "classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(\".\"))",
             "classes = sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(\".\")),"
             " reverse=True)",
             ("tests/test_data.py",), "class indexes no longer follow sorted folder names"),
    Mutation("verdict-speed-bar-strict", "vitedge/bench/verdict.py",
             'if not row["speedup"] >= speed_bar:', 'if not row["speedup"] > speed_bar:',
             ("tests/test_verdict.py",), "a file exactly on the speed bar fails"),
    Mutation("verdict-best-ignores-accuracy", "vitedge/bench/verdict.py",
             'faithful = [r for r in options if not set(FAITHFUL) & set(r["failed"])] or options',
             "faithful = options", ("tests/test_verdict.py",), "the fastest file wins even when it lost accuracy"),
    Mutation("auto-picks-the-slowest", "vitedge/bench/verdict.py",
             'return max(met, key=lambda i: candidates[i]["speedup_vs_fp32"])',
             'return min(met, key=lambda i: candidates[i]["speedup_vs_fp32"])',
             ("tests/test_verdict.py",), "--int8 auto keeps the slowest recipe"),
]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def make_copy(dest: Path, files: list[str]) -> None:
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def apply(copy: Path, m: Mutation) -> bool:
    path = copy / m.file
    text = path.read_text() if path.exists() else ""
    if text.count(m.old) != 1:
        return False
    path.write_text(text.replace(m.old, m.new))
    return True


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.MULTILINE)
    return proc.returncode, (failed[0] if failed else proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--only", default=None, help="comma-separated mutation names")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of each test selection")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per test run")
    args = ap.parse_args()
    chosen = MUTATIONS
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {m.name for m in MUTATIONS}
        if unknown:
            sys.exit(f"mutation_check: unknown mutation(s): {', '.join(sorted(unknown))}")
        chosen = [m for m in MUTATIONS if m.name in names]
    if args.list:
        for m in chosen:
            print(f"{m.name:32s} {m.file:28s} {m.what}")
        return 0

    files = tracked_files()
    rows, missed = [], []
    with tempfile.TemporaryDirectory(prefix="vitedge-mutants-") as tmp:
        if not args.no_baseline:
            clean = Path(tmp) / "clean"
            make_copy(clean, files)
            for tests in dict.fromkeys(m.tests for m in chosen):
                code, detail = run_tests(clean, tests, args.timeout)
                print(f"baseline {' '.join(tests)}: {'ok' if code == 0 else 'FAILS: ' + detail}", flush=True)
                if code != 0:
                    sys.exit("mutation_check: a test selection fails without any mutation; fix that first")
        for i, m in enumerate(chosen):
            copy = Path(tmp) / f"m{i}"
            make_copy(copy, files)
            started = time.time()
            if not apply(copy, m):
                result, detail = "stale", f"the text to replace is not (exactly once) in {m.file}"
            else:
                code, detail = run_tests(copy, m.tests, args.timeout)
                result = "caught" if code not in (0, 5, -1) else {0: "MISSED", 5: "no tests ran", -1: "timeout"}[code]
            if result != "caught":
                missed.append(m.name)
            rows.append((m.name, result, detail, f"{time.time() - started:.0f}s"))
            print(f"{m.name:32s} {result:8s} {detail}  ({rows[-1][3]})", flush=True)
            shutil.rmtree(copy, ignore_errors=True)

    print("\n| mutation | file | result | first failing test |\n|---|---|---|---|")
    for m, (name, result, detail, _) in zip(chosen, rows, strict=True):
        print(f"| {name} | {m.file} | {result} | {detail} |")
    print(f"\n{len(rows) - len(missed)} of {len(rows)} caught" + (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
