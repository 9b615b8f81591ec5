"""Where an .onnx file's time goes, per operator, with ONNX Runtime's own profiler.

The session runs with the same graph optimizations and threads as `vitedge predict`, so the
op types are those ONNX Runtime actually executes after its fusions (DynamicQuantizeMatMul,
QLinearMatMul, MatMulIntegerToFloat, BiasGelu, ...). Each op's compute type is read from its
type: integer kernels (QLinear*, *Integer*, DynamicQuantize*, QAttention, ...) run int8;
QuantizeLinear/DequantizeLinear are the conversions between the two.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..fileio import work_directory
from .tflite import OpTiming

_INT8_MARKERS = ("QLinear", "Integer", "DynamicQuantize", "QAttention", "QGemm", "QEmbed", "QOrdered")
_CONVERSIONS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def compute_type(op_type: str) -> str:
    if op_type in _CONVERSIONS:
        return "convert"
    return "int8" if any(m in op_type for m in _INT8_MARKERS) else "float32"


def profile(path: str | os.PathLike, threads: int = 2, runs: int = 50) -> dict:
    from ..runtime.onnxrt import new_session

    with work_directory("ortprof") as work:
        plain = new_session(path, threads=threads)
        session = new_session(path, threads=threads, profile_prefix=Path(work) / "ort")
        inp = session.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in inp.shape])
        feed = {inp.name: x.astype(np.float32)}
        for _ in range(5):
            session.run(None, feed)
            plain.run(None, feed)
        import time

        whole = []
        for _ in range(runs):
            session.run(None, feed)
            start = time.perf_counter()
            plain.run(None, feed)
            whole.append(time.perf_counter() - start)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            if name == "vitedge_per_image":  # the per-image Scan (quant/onnx_batch.py): its body's nodes are listed
                continue
            per_node.setdefault(name, [e["args"].get("op_name", "?"), []])[1].append(e["dur"] / 1e3)
    ops = []
    for index, (name, (op_type, durations)) in enumerate(per_node.items()):
        # 5 warm-up runs are in the trace too: the median of the node's durations ignores them.
        ops.append(OpTiming(index, op_type, name, compute_type(op_type), False, float(np.median(durations))))
    whole_ms = float(np.median(whole) * 1e3)
    total = float(sum(o.ms for o in ops))
    return {"path": str(path), "runtime": "onnxruntime", "provider": "CPUExecutionProvider", "threads": threads,
            "whole_ms": whole_ms, "ops_ms": total, "coverage": total / whole_ms if whole_ms else None,
            "ops": ops}
