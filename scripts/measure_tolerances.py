#!/usr/bin/env python3
"""Print the errors the accuracy tolerances of tests/test_export.py and tests/test_runtime.py come from.

Rebuilds the suite's tiny ViT and its artifacts exactly as tests/conftest.py does (same config,
seed, calibration images and export calls), then measures:

  export:  every format x precision against Keras on the 12 calibration images
           (tests/test_export.py, EXPORT_TOLERANCE): max |logit diff| and top-1 agreement;
  runtime: the int8 files against the TFLite fp32 file on the 8 runtime-test images
           (tests/test_runtime.py, RUNTIME_TOLERANCE).

The tolerances in those tests are these figures times the margin they state. Re-run this after
a converter or recipe change and update the figures (and tolerances) the tests carry.

    PYTHONPATH=. python scripts/measure_tolerances.py [--json FILE]   (about 2 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _figures(logits, reference) -> dict:
    import numpy as np

    diff = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "top1_agreement": float(np.mean(logits.argmax(1) == reference.argmax(1))), "images": len(reference)}


def measure(work: Path) -> dict:
    import numpy as np
    from conftest import TINY_LABELS, make_images, tiny_vit_config

    from vitedge.calibration import load_calibration
    from vitedge.export import export_artifacts
    from vitedge.modelfile import ModelSpec, load_model, save_model
    from vitedge.predict import softmax
    from vitedge.preprocess import Preprocessing, preprocess_image
    from vitedge.runtime import load_runtime
    from vitedge.vit import build_vit

    config = tiny_vit_config()
    model_path = work / "tiny-vit.keras"  # conftest: tiny_model
    save_model(build_vit(config, seed=1), ModelSpec(config, TINY_LABELS), model_path)
    calib_dir = work / "calib"  # conftest: calib_dir
    make_images(calib_dir)
    calib = load_calibration(calib_dir, None, config.image_size, Preprocessing())
    model, _ = load_model(model_path)
    keras_logits = model.predict(calib.images, verbose=0)

    artifacts = {}  # conftest: tiny_artifacts, test_export: artifacts
    for fmt in ("tflite", "onnx"):
        for r in export_artifacts(model_path, formats=fmt, precisions="all", calib_dir=calib_dir, out_dir=work / "art",
                                  scores="logits"):
            artifacts[(r.format, r.precision)] = r.path
    (r,) = export_artifacts(model_path, formats="tflite", precisions="int8", int8_io=True, calib_dir=calib_dir,
                            out_dir=work / "int8io", scores="logits")
    artifacts[("tflite", "int8-io")] = r.path

    export = {}
    for (fmt, precision), path in sorted(artifacts.items()):
        logits = load_runtime(path, threads=1).run(calib.images)
        export[f"{fmt}/{precision}"] = _figures(logits, keras_logits)

    # test_runtime: its `batch`, `outputs` and `dynamic_tflite` fixtures
    paths = make_images(work / "rt-images", count=8, seed=3)
    batch = np.stack([preprocess_image(p, (32, 32), Preprocessing()) for p in paths])
    outputs = {key: load_runtime(path, threads=1).run(batch) for key, path in artifacts.items()
               if key[1] != "int8-io"}
    dynamic = {r.precision: r.path for r in export_artifacts(
        model_path, formats="tflite", precisions="fp32,int8", int8_io=True, tflite_batch=None, calib_dir=calib_dir,
        out_dir=work / "dyn", scores="logits")}
    ref = outputs[("tflite", "fp32")]
    t8, o8 = outputs[("tflite", "int8")], outputs[("onnx", "int8")]
    io8 = load_runtime(dynamic["int8"], threads=1).run(batch)
    runtime = {
        "tflite-fp32 vs onnx-fp32": _figures(outputs[("onnx", "fp32")], ref),
        "tflite-int8 vs tflite-fp32": _figures(t8, ref),
        "onnx-int8 vs tflite-fp32": _figures(o8, ref),
        "tflite-int8 vs onnx-int8": _figures(t8, o8),
        "tflite-int8-io(dynamic batch) vs tflite-fp32": _figures(io8, ref),
        "softmax: tflite-int8 vs onnx-int8": _figures(softmax(t8), softmax(o8)),
        "logit range (ptp) of tflite-fp32": {"max_abs_diff": float(np.ptp(ref))},
    }
    return {"export_vs_keras": export, "runtime_vs_tflite_fp32": runtime}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write the figures here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vitedge-tolerances-") as tmp:
        figures = measure(Path(tmp))
    for section, rows in figures.items():
        print(f"{section}:")
        for name, f in rows.items():
            agree = f" top-1 agreement {f['top1_agreement']:.3f}" if "top1_agreement" in f else ""
            mean = f" mean {f['mean_abs_diff']:.3g}" if "mean_abs_diff" in f else ""
            print(f"  {name:48s} max |diff| {f['max_abs_diff']:.4g}{mean}{agree}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
