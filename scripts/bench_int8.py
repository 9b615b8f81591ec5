#!/usr/bin/env python3
"""`make bench-int8`: is int8 worth it? The issue 7 bar, checked in one run; exit 1 if not met.

For the default model (models/fmnist-vit.keras) and ViT-Ti/16 at 224x224 (random weights:
speed and size only), it exports fp32 and both int8 precisions (`dynamic`: int8 weights,
activations quantized per call; `int8`: static, calibrated on calibration/; the default recipes
for --target) to TFLite and ONNX with `vitedge export`, then:

  1. ONE `vitedge bench` run over all twelve artifacts (2 threads, batch 1, --interleave 30):
     size and p50 speed-up of each int8 artifact against the fp32 artifact of the same model and
     format (bench's `speedup`: each fp32 file and its int8 twins timed together in one process,
     in turns of ~0.2 s, the median of the per-turn ratios; this machine's speed drifts over
     seconds, and ratios of files timed in separate processes flipped the verdict run to run);
  2. a second `vitedge bench` run of the default model's six artifacts on the full test
     split (data/fashion-mnist/test): top-1 of each int8 artifact against its fp32 twin
     (one run cannot do both: ViT-Ti's 224x224 inputs for 10,000 images would need 6 GB);
  3. per model and format, the int8 and float matrix-multiply kernels of that runtime on the
     model's own shapes, timed side by side with the whole fp32 model (vitedge.quant.kernels):
     the speed-up int8 allows at all (the median of per-turn bounds, timed the same way). Where it is below 1.25x, the speed bar for that
     format becomes 90% of it (the issue's rule); docs/quantization.md carries the evidence.

Bars: p50 speed-up >= 1.25x (or 0.9 x bound), size <= 30% of fp32, top-1 within 0.3 points,
for the best int8 artifact of each model and format: the fastest that meets the size and top-1
bars (the fastest, if none does).
The machine's load is printed: on a shared machine a loaded run moves the ratios.

    python scripts/bench_int8.py [--out results/int8] [--interleave 30] [--skip-export] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitedge.bench.verdict import ISSUE7_BARS as BARS  # noqa: E402  (the bars are a table there)
from vitedge.bench.verdict import judge  # noqa: E402

INT8 = ("dynamic", "int8")  # the int8 precisions of `vitedge export`; the best of each pair is judged
PRECISIONS = ("fp32", *INT8)


def vitedge_command() -> list[str]:
    script = Path(sys.executable).with_name("vitedge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vitedge"]


def run(cmd: list[str], what: str) -> None:
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_int8: {what} failed:\n{proc.stderr.strip()[-2000:]}")


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/fmnist-vit.keras")
    ap.add_argument("--data", default="data/fashion-mnist/test")
    ap.add_argument("--calib", default="calibration")
    ap.add_argument("--out", default="results/int8")
    ap.add_argument("--target", default="x86", choices=["x86", "arm64"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per artifact in the speed bench's first pass")
    ap.add_argument("--interleave", type=float, default=30.0,
                    help="seconds each fp32 file and its int8 twins are timed together, in turns (bench --interleave)")
    ap.add_argument("--skip-export", action="store_true", help="reuse the artifacts already in OUT/artifacts")
    ap.add_argument("--no-bounds", action="store_true", help="skip the kernel measurement (bars stay 1.25x)")
    ap.add_argument("--json", default=None, help="write every figure here too")
    args = ap.parse_args()

    out = ROOT / args.out
    art = out / "artifacts"
    model = ROOT / args.model
    if not model.exists():
        sys.exit(f"bench_int8: {model} does not exist (make model, or pass --model)")
    if not (ROOT / args.data).is_dir():
        sys.exit(f"bench_int8: {args.data} does not exist (make data)")
    art.mkdir(parents=True, exist_ok=True)
    vitedge = vitedge_command()
    stems = {"default": model.stem, "vit-ti16": "vit-ti16"}
    print(f"load average before: {load()}", file=sys.stderr)
    started = time.time()
    if not args.skip_export:
        common = ["--format", "tflite,onnx", "--precision", ",".join(PRECISIONS), "--out", str(art), "--calib", args.calib,
                  "--target", args.target, "--force"]
        run(vitedge + ["export", "--model", str(model), *common], "export of the default model")
        run(vitedge + ["export", "--variant", "vit-ti16", *common], "export of vit-ti16")

    def path(key, fmt, precision):
        return art / f"{stems[key]}_{precision}.{fmt}"

    pairs = [(key, fmt) for key in stems for fmt in ("tflite", "onnx")]
    every = [path(k, f, p) for k, f in pairs for p in PRECISIONS]
    missing = [str(p) for p in every if not p.exists()]
    if missing:
        sys.exit(f"bench_int8: missing artifacts: {', '.join(missing)}")

    speed_json = out / "bench_speed.json"
    run(vitedge + ["bench", *map(str, every), "--threads", str(args.threads), "--batch", "1",
                   "--warmup", "20", "--runs", str(args.runs), "--interleave", str(args.interleave), "--json", str(speed_json),
                   "--force"],
        "speed bench")
    acc_json = out / "bench_accuracy.json"
    run(vitedge + ["bench", *(str(path("default", f, p)) for f in ("tflite", "onnx") for p in PRECISIONS),
                   "--data", args.data, "--threads", str(args.threads), "--runs", "20", "--json", str(acc_json),
                   "--force"], "accuracy bench")
    speed = {Path(r["path"]).name: r for r in json.loads(speed_json.read_text())["rows"]}
    acc = {Path(r["path"]).name: r for r in json.loads(acc_json.read_text())["rows"]}

    bounds = {}
    if not args.no_bounds:
        from vitedge.modelfile import read_spec
        from vitedge.quant.kernels import measure_bound
        from vitedge.variants import variant_config

        configs = {"default": read_spec(model).config, "vit-ti16": variant_config("vit-ti16")}
        for key, fmt in pairs:
            print(f"kernel bound: {key} {fmt}", file=sys.stderr, flush=True)
            runs = 300 if key == "vit-ti16" else 20000  # ~8 s per model either way
            bounds[(key, fmt)] = measure_bound(fmt, configs[key], path(key, fmt, "fp32"), threads=args.threads,
                                               runs=runs, target=args.target)

    candidates = []
    for key, fmt in pairs:
        f32 = speed[path(key, fmt, "fp32").name]
        bound = bounds.get((key, fmt))
        for precision in INT8:
            i8 = speed[path(key, fmt, precision).name]
            if i8["reference"] != f32["artifact"]:
                sys.exit(f"bench_int8: bench compared {i8['artifact']} with {i8['reference']}, not {f32['artifact']}")
            # The speed-up is bench's: the median of per-turn ratios, the fp32 file timed in turns
            # with its int8 twins (the pooled p50s' ratio is kept for the record).
            row = {"model": key, "format": fmt, "precision": precision, "fp32_p50_ms": f32["p50_ms"],
                   "int8_p50_ms": i8["p50_ms"], "speedup": i8["speedup"], "speedup_iqr": i8["speedup_iqr"],
                   "pooled_p50_ratio": f32["p50_ms"] / i8["p50_ms"],
                   "size_ratio": i8["size_bytes"] / f32["size_bytes"],
                   "bound": None if bound is None else bound.to_dict()}
            if key == "default":
                a32, a8 = acc[path(key, fmt, "fp32").name], acc[path(key, fmt, precision).name]
                row.update(fp32_top1=a32["top1"], int8_top1=a8["top1"], top1_delta=a8["top1"] - a32["top1"],
                           test_images=a8["images"])
            candidates.append(row)
    # Marks each row's bar and failures; the best int8 file of each model and format (the fastest
    # that keeps size and accuracy, else the fastest) is what the verdict judges.
    verdict = judge(candidates, BARS, {k: b.bound for k, b in bounds.items()})
    rows, failures = verdict.best, verdict.failures

    from vitedge.table import format_table

    table = []
    for r in rows:
        r["best"] = True
    for r in candidates:  # the best rows are among them (same objects), in model/format order
        b = r["bound"]
        table.append([r["model"], r["format"], r["precision"] + (" *" if r.get("best") else ""), f"{r['fp32_p50_ms']:.3f}", f"{r['int8_p50_ms']:.3f}",
                      f"{r['speedup']:.2f}x ({r['speedup_iqr'][0]:.2f}-{r['speedup_iqr'][1]:.2f})",
                      f">={r['speed_bar']:.2f}x",
                      "-" if b is None else f"{b['kernel_speedup']:.2f}x/{b['bound']:.2f}x",
                      f"{100 * r['size_ratio']:.1f}%",
                      "-" if "top1_delta" not in r else f"{r['fp32_top1']:.2f} -> {r['int8_top1']:.2f} ({r['top1_delta']:+.2f})",
                      ("ok" if not r["failed"] else "FAIL: " + ", ".join(r["failed"])) if r.get("best")
                      else ("(would pass)" if not r["failed"] else "(short: " + ", ".join(r["failed"]) + ")")])
    print(format_table(["model", "format", "int8", "fp32 p50 ms", "int8 p50 ms", "speed-up (IQR)", "bar", "kernels/bound",
                        "size", "top-1 (full test split)", "verdict"], table, right=range(3, 9)))
    print(f"*: the best int8 artifact of its model and format, which the verdict judges. "
          f"speed: one `vitedge bench` run of {len(every)} artifacts, {args.threads} threads, batch 1, each fp32 file "
          f"and its int8 twins timed together in one process for {args.interleave:g} s, in turns of ~0.2 s; "
          f"speed-up: the median (and quartiles) of the per-turn fp32/int8 p50 ratios; "
          f"top-1: {rows[0].get('test_images')} test images; kernels/bound: int8 vs fp32 matrix-multiply kernels on "
          f"the model's shapes, and the whole-model speed-up they allow (bar = 90% of it when below 1.25x)")
    print(f"load average after: {load()} (before: see above); {time.time() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "candidates": candidates, "load_after": load(), "target": args.target}, indent=2))
    if failures:
        print("bench-int8: short of the bar: " + "; ".join(failures), file=sys.stderr)
    return verdict.exit_code


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
