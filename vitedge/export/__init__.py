"""Export a vitedge Keras ViT to TFLite and ONNX (fp32, fp16, dynamic, int8, int16x8), verified.

    from vitedge.export import export_artifacts
    results = export_artifacts("models/fmnist-vit.keras", formats="all", precisions="fp32,int8",
                               calib_dir="calibration", out_dir="out")

Modules: pipeline (the order of work), tflite / onnx (converters), verify (runtime vs Keras),
metadata (what each file carries), quiet (converter logs kept off the terminal).
Importing this package does not import TensorFlow; exporting does.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines off by default

from .pipeline import ExportResult, export_artifacts, output_path

__all__ = ["ExportResult", "export_artifacts", "output_path"]
