"""How much faster can int8 make a ViT in this runtime, on this CPU? Kernels timed side by side.

A ViT's int8 gain can only come from its weight-bearing matrix multiplies (everything else
stays float in the fast recipes). This builds, for one ViT configuration, a model made of
exactly those multiplies, at the model's own shapes and counts (per block QKV D->3D,
projection D->D, MLP D->M and M->D on N tokens; patch embedding; head), in fp32 and in int8,
and times them with the whole fp32 artifact in one process, in turns of ~0.2 s
(`timing.time_in_turns`, as `vitedge bench --interleave`); each ratio is the median of the
per-turn ratios:

    bound = T_fp32 / (T_fp32 - T_matmul_fp32 + T_matmul_int8)

is the whole-model speed-up int8 matrix multiplies allow if everything else cost nothing
extra (Amdahl). The issue's rule: when a format's bound is below 1.25x, its bar becomes 90%
of the bound (docs/quantization.md).

  * LiteRT: FULLY_CONNECTED fp32 vs int8 (int8 input/output: the pure int8 kernel, no
    QUANTIZE/DEQUANTIZE), XNNPACK, fixed batch 1; built with TensorFlow's converter.
  * ONNX Runtime: MatMul fp32 vs the dynamic recipe's DynamicQuantizeMatMul (activation
    quantization included, as it runs in the model), the stack built like the artifact's graph
    (its own input per multiply, dynamic batch, bias Adds only if the model has them); no
    TensorFlow needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import work_directory
from ..variants import ViTConfig


def amdahl_bound(whole_fp32_ms: float, matmul_fp32_ms: float, matmul_int8_ms: float) -> float:
    rest = max(0.0, whole_fp32_ms - matmul_fp32_ms)
    return whole_fp32_ms / (rest + matmul_int8_ms)


@dataclass
class Bound:
    format: str
    whole_fp32_ms: float
    matmul_fp32_ms: float
    matmul_int8_ms: float
    # (whole, fp32 stack, int8 stack) p50s of each turn or round: the ratios are then medians of
    # per-turn ratios, each taken under one machine state (as bench.stats.paired_speedup)
    rounds: list[tuple[float, float, float]] | None = None

    @property
    def kernel_speedup(self) -> float:
        if self.rounds:
            return float(np.median([f / i for _, f, i in self.rounds]))
        return self.matmul_fp32_ms / self.matmul_int8_ms

    @property
    def matmul_share(self) -> float:
        return min(1.0, self.matmul_fp32_ms / self.whole_fp32_ms)

    @property
    def bound(self) -> float:
        if self.rounds:
            return float(np.median([amdahl_bound(*r) for r in self.rounds]))
        return amdahl_bound(self.whole_fp32_ms, self.matmul_fp32_ms, self.matmul_int8_ms)

    def to_dict(self) -> dict:
        return {"format": self.format, "whole_fp32_ms": round(self.whole_fp32_ms, 4),
                "matmul_fp32_ms": round(self.matmul_fp32_ms, 4), "matmul_int8_ms": round(self.matmul_int8_ms, 4),
                "kernel_speedup": round(self.kernel_speedup, 3), "matmul_share": round(self.matmul_share, 3),
                "bound": round(self.bound, 3)}


def matmul_shapes(config: ViTConfig) -> list[tuple[int, int, int]]:
    """(rows, K, M) of every weight-bearing matrix multiply of one image through the ViT."""
    n, d, m = config.seq_len, config.width, config.mlp_dim
    p = config.patch_size
    shapes = [(config.num_patches, p * p * config.channels, d)]
    for _ in range(config.depth):
        shapes += [(n, d, 3 * d), (n, d, d), (n, d, m), (n, m, d)]
    shapes.append((1, d, config.num_classes))
    return shapes


def _weights(shapes, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [((rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32), (0.01 * rng.standard_normal(m)).astype(np.float32))
            for _, k, m in shapes]


def _inputs(shapes) -> list[tuple[int, int]]:
    return sorted({(rows, k) for rows, k, _ in shapes})


# --------------------------------------------------------------------------- LiteRT ----
def tflite_matmul_models(config: ViTConfig) -> tuple[bytes, bytes]:
    """(fp32, int8) FULLY_CONNECTED stacks of the ViT's shapes (TensorFlow's converter)."""
    import tensorflow as tf

    from ..quiet import captured_stderr

    shapes = matmul_shapes(config)
    inputs = _inputs(shapes)
    weights = [(tf.constant(w), tf.constant(b)) for w, b in _weights(shapes)]
    signature = [tf.TensorSpec(shape, tf.float32) for shape in inputs]

    @tf.function(input_signature=signature)
    def stack(*xs):
        by_shape = dict(zip(inputs, xs, strict=True))
        return [tf.matmul(by_shape[(rows, k)], w) + b for (rows, k, _), (w, b) in zip(shapes, weights, strict=True)]

    rng = np.random.default_rng(1)

    def representative():
        for _ in range(16):
            yield [rng.standard_normal(shape).astype(np.float32) for shape in inputs]

    out = []
    for precision in ("fp32", "int8"):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([stack.get_concrete_function()], stack)
        if precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        with captured_stderr():
            out.append(bytes(converter.convert()))
    return out[0], out[1]


# ----------------------------------------------------------------------------- ONNX ----
def onnx_matmul_models(config: ViTConfig, workdir: Path, reduce_range: bool = True,
                       bias: bool = True) -> tuple[Path, Path]:
    """(fp32, dynamic int8) MatMul stacks of the ViT's shapes, as the dynamic recipe quantizes them.

    Built like the artifact's own graph, because ONNX Runtime times these details differently:
    one input per multiply (the quantizer quantizes each input tensor once; a shared input
    quantized once for a dozen multiplies and flattered int8), a dynamic batch dimension (with
    a fixed one ONNX Runtime turns MatMul + Add into Gemm, which the model never gets), and a
    bias Add only if the model has them (`bias`; see `has_matmul_bias`): int8 fuses the bias
    for free, fp32 pays a separate Add, so a bias the model lacks flattered int8 too."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ..quiet import captured_stderr

    shapes = matmul_shapes(config)
    nodes, inits, inputs, outputs = [], [], [], []
    for i, ((rows, k, m), (w, b)) in enumerate(zip(shapes, _weights(shapes), strict=True)):
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        if bias:
            inits.append(numpy_helper.from_array(b, f"b{i}"))
            nodes += [helper.make_node("MatMul", [f"x{i}", f"w{i}"], [f"mm{i}"], name=f"matmul{i}"),
                      helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"y{i}"], name=f"add{i}")]
        else:
            nodes.append(helper.make_node("MatMul", [f"x{i}", f"w{i}"], [f"y{i}"], name=f"matmul{i}"))
        inputs.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["batch", rows, k]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["batch", rows, m]))
    graph = helper.make_graph(nodes, "matmuls", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fp32 = workdir / "matmuls_fp32.onnx"
    int8 = workdir / "matmuls_int8.onnx"
    onnx.save(model, str(fp32))
    with captured_stderr():
        quantize_dynamic(str(fp32), str(int8), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                         reduce_range=reduce_range)
    return fp32, int8


def has_matmul_bias(onnx_path) -> bool:
    """Whether most weight MatMuls of an fp32 ONNX artifact are followed by a bias Add (tf2onnx
    drops all-zero biases, as a ViT with random weights has)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    biased = [n for n in matmuls if any(u.op_type == "Add" and set(u.input) & weights
                                        for u in users.get(n.output[0], []))]
    return bool(matmuls) and 2 * len(biased) > len(matmuls)


# --------------------------------------------------------------------------- timing ----
def measure_bound(fmt: str, config: ViTConfig, whole_fp32: str | os.PathLike, threads: int = 2,
                  runs: int = 200, target: str = "x86") -> Bound:
    """The kernel-level bound for `fmt` on the ViT `config`, with its whole fp32 artifact (`runs` each)."""
    from ..bench.timing import time_in_turns
    from ..runtime.raw import raw_runner

    with work_directory("kernels") as work:
        if fmt == "tflite":
            fp32, int8 = (Path(work) / "matmuls_fp32.tflite", Path(work) / "matmuls_int8.tflite")
            for path, content in zip((fp32, int8), tflite_matmul_models(config), strict=True):
                path.write_bytes(content)
        else:
            fp32, int8 = onnx_matmul_models(config, Path(work), reduce_range=target == "x86",
                                            bias=has_matmul_bias(whole_fp32))
        # one process, in turns (the bound is a small difference of two stack times; timed apart,
        # the default model's moved 0.98-1.37x between runs)
        times, turns = time_in_turns([raw_runner(p, threads) for p in (whole_fp32, fp32, int8)], runs=runs)
    return Bound(fmt, *(float(np.median(t)) for t in times), rounds=list(zip(*turns, strict=True)))
