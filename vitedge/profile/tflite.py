"""Where a .tflite file's time goes, per operator, on LiteRT with XNNPACK.

LiteRT's Python interpreter has no op profiler (benchmark_model's --enable_op_profiling is a
C++ tool). So each operator is cut out into a model of its own (its tensors, its constant
buffers, nothing else), loaded with the same delegate and threads, and timed; the empty-model
overhead of one invoke is subtracted. That also says, per op, whether XNNPACK takes it (a
DELEGATE node appears) and in which type it computes (int8 or float). The per-op times miss
what XNNPACK gains by fusing neighbours inside one partition; `coverage` (sum of the op times
over the whole model's time, measured in the same run) says how much is explained.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

import numpy as np

from ..errors import VitedgeError

_INT_TYPES = {9: "int8", 3: "uint8", 7: "int16", 2: "int32", 4: "int64"}  # TensorType codes
_FLOAT_TYPES = {0: "float32", 1: "float16"}


@dataclass
class OpTiming:
    index: int
    op_type: str
    name: str  # first output tensor
    compute: str  # int8 / float32 / ... (the first input's type; QUANTIZE shows its input's)
    delegated: bool
    ms: float


def _flatbuffer_utils():
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        raise VitedgeError("per-op TFLite profiling needs ai-edge-litert (pip install ai-edge-litert)") from None
    return flatbuffer_utils, schema


def _op_name(model, schema, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.customCode or b"CUSTOM").decode() if isinstance(code.customCode, bytes) else str(code.customCode)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(builtin, str(builtin))


def single_op_models(flatbuffer: bytes):
    """Yield (index, op type, output name, compute type, model bytes) for every op of subgraph 0."""
    fbu, schema = _flatbuffer_utils()
    model = fbu.read_model_from_bytearray(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    for index, op in enumerate(graph.operators):
        used = [t for t in list(op.inputs) + list(op.outputs) if t >= 0]
        remap = {t: i for i, t in enumerate(dict.fromkeys(used))}
        buffers = [schema.BufferT()]
        tensors = []
        for t in remap:
            tensor = copy.copy(graph.tensors[t])
            buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            if buf is not None and buf.data is not None and len(buf.data):
                tensor.buffer = len(buffers)
                buffers.append(buf)
            else:
                tensor.buffer = 0
            tensors.append(tensor)
        sub = schema.SubGraphT()
        sub.tensors = tensors
        single = copy.copy(op)
        single.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
        single.outputs = [remap[t] for t in op.outputs]
        single.intermediates = []
        sub.operators = [single]
        sub.inputs = [remap[t] for t in op.inputs if t >= 0 and tensors[remap[t]].buffer == 0]
        sub.outputs = list(single.outputs)
        sub.name = b"op"
        one = schema.ModelT()
        one.version = model.version
        one.operatorCodes = model.operatorCodes
        one.subgraphs = [sub]
        one.buffers = buffers
        one.description = b"vitedge single-op profile"
        op_type = _op_name(model, schema, op)
        out_name = graph.tensors[op.outputs[0]].name
        out_name = out_name.decode() if isinstance(out_name, bytes) else str(out_name)
        kind = _compute_type(op_type, [graph.tensors[t].type for t in op.inputs if t >= 0],
                             graph.tensors[op.outputs[0]].type)
        yield index, op_type, out_name, kind, bytes(fbu.convert_object_to_bytearray(one))


def _compute_type(op_type: str, input_types: list[int], output_type: int) -> str:
    """int8 (integer kernel), int8-dynamic (float activations, int8 weights: quantized per call),
    convert (QUANTIZE/DEQUANTIZE), or the float type."""
    if op_type in ("QUANTIZE", "DEQUANTIZE"):
        return "convert"
    # int32 inputs are shapes, axes or indices (SPLIT's axis comes first), not the data
    first = next((t for t in input_types if t != 2), input_types[0] if input_types else output_type)
    if first in _INT_TYPES and first != 2:
        return _INT_TYPES[first]
    if first in _FLOAT_TYPES and any(t == 9 for t in input_types[1:]):
        return "int8-dynamic"
    return _FLOAT_TYPES.get(first, _INT_TYPES.get(first, str(first)))


def _interpreter(content: bytes, threads: int, provider: str):
    """An interpreter of `content` with random inputs set, ready to invoke."""
    from ..runtime.litert import fill_random_inputs, new_interpreter

    interpreter = new_interpreter(model_content=content, threads=threads, provider=provider)
    fill_random_inputs(interpreter)
    return interpreter


def _median_invoke_ms(interpreter, runs: int) -> float:
    for _ in range(3):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def profile(path: str | os.PathLike, threads: int = 2, runs: int = 50, provider: str = "xnnpack",
            progress=None) -> dict:
    """Per-op timings of a .tflite file and the whole model's time, measured in one pass."""
    from ..runtime.litert import _native_stderr, op_list

    flatbuffer = open(path, "rb").read()
    noise: list[str] = []
    with _native_stderr(noise):
        whole = _interpreter(flatbuffer, threads, provider)
        partitions = sum(op["op_name"] == "DELEGATE" for op in op_list(whole))
        whole_ms = _median_invoke_ms(whole, runs)
        ops: list[OpTiming] = []
        overhead = None
        items = list(single_op_models(flatbuffer))
        for index, op_type, name, kind, content in (progress(items) if progress else items):
            try:
                interpreter = _interpreter(content, threads, provider)
            except Exception as exc:  # an op that cannot stand alone: reported, not fatal
                ops.append(OpTiming(index, op_type, name, kind, False, float("nan")))
                noise.append(f"op {index} {op_type}: {exc}")
                continue
            delegated = any(op["op_name"] == "DELEGATE" for op in op_list(interpreter))
            if overhead is None:
                overhead = _invoke_overhead(threads, provider, content)
            ms = max(0.0, _median_invoke_ms(interpreter, runs) - overhead)
            ops.append(OpTiming(index, op_type, name, kind, delegated, ms))
        whole_ms = min(whole_ms, _median_invoke_ms(whole, runs))  # again, after: the load may have moved
    total = float(np.nansum([o.ms for o in ops]))
    return {"path": str(path), "runtime": "litert", "provider": provider, "threads": threads,
            "whole_ms": whole_ms, "ops_ms": total, "coverage": total / whole_ms if whole_ms else None,
            "xnnpack_partitions": int(partitions), "invoke_overhead_ms": overhead or 0.0, "ops": ops}


def _invoke_overhead(threads: int, provider: str, sample: bytes) -> float:
    """One invoke of a model that does (almost) nothing: a RESHAPE of a tiny tensor."""
    fbu, schema = _flatbuffer_utils()
    model = schema.ModelT()
    model.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RESHAPE
    model.operatorCodes = [code]
    shape = schema.BufferT()
    shape.data = np.array([4], np.int32).tobytes()
    model.buffers = [schema.BufferT(), shape]
    tensors = []
    for name, dims, buf, ttype in ((b"x", [1, 4], 0, 0), (b"shape", [1], 1, 2), (b"y", [4], 0, 0)):
        t = schema.TensorT()
        t.name, t.shape, t.buffer, t.type = name, dims, buf, ttype
        tensors.append(t)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    sub = schema.SubGraphT()
    sub.tensors, sub.operators, sub.inputs, sub.outputs = tensors, [op], [0], [2]
    model.subgraphs = [sub]
    try:
        interpreter = _interpreter(bytes(fbu.convert_object_to_bytearray(model)), threads, provider)
        return _median_invoke_ms(interpreter, 200)
    except Exception:
        return 0.0
