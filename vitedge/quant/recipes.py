"""The int8 recipes `vitedge export` knows, per format, and which one is the default per target.

Chosen by measurement on an x86-64 AVX2 CPU without VNNI (2 threads, batch 1); the figures
and every recipe tried are in docs/quantization.md. No TensorFlow or ONNX import here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

TARGETS = ("x86", "arm64")
CALIB_METHODS = ("minmax", "entropy", "percentile")  # static activation-range calibration (--calib-method)


@dataclass(frozen=True)
class Recipe:
    format: str
    name: str
    summary: str
    calibrated: bool  # needs calibration images (static activation ranges)
    revertible: bool  # accuracy control can keep named layers float


_ALL = [
    Recipe("onnx", "dynamic",
           "graph fused (LayerNorm, Gelu, MultiHeadAttention), MatMuls with int8 weights, activations "
           "quantized per call (DynamicQuantizeMatMul); attention, LayerNorm, GELU float", False, True),
    Recipe("onnx", "qdq",
           "graph fused, static QDQ on weight-bearing MatMuls only (uint8 calibrated activations, int8 "
           "per-channel weights); attention, LayerNorm, GELU float", True, True),
    Recipe("tflite", "dynamic",
           "dynamic-range int8: int8 weights, XNNPACK quantizes activations per call (QD8 kernels)", False, False),
    Recipe("tflite", "fc",
           "selective full int8: FULLY_CONNECTED int8 (and CONV_2D on arm64; calibrated activations, per-tensor "
           "weights); patch-embedding CONV_2D on x86, LayerNorm, GELU, Softmax, "
           "attention BATCH_MATMULs and residual ADDs float", True, True),
    Recipe("tflite", "full",
           "every op int8 (the textbook recipe; int8 input/output possible with --int8-io)", True, True),
]
RECIPES: dict[tuple[str, str], Recipe] = {(r.format, r.name): r for r in _ALL}

# target -> format -> default recipe of `--int8` / `--precision int8` (docs/quantization.md has the
# measurements). `--int8` is static int8 calibrated on the calibration images, for both formats;
# ONNX Runtime's faster per-call ("dynamic") int8 is `--precision dynamic`, or `--int8 dynamic`.
DEFAULTS = {
    "x86": {"onnx": "qdq", "tflite": "fc"},
    "arm64": {"onnx": "qdq", "tflite": "fc"},
}


# Recipes measured SLOWER than fp32 on a target (docs/quantization.md, `make bench-int8` and
# `make demo`): export says so when it writes one, with the fast alternative. Static QDQ on x86
# without VNNI: the QuantizeLinear/DequantizeLinear pairs around every MatMul and the uint8
# kernels cost more than the int8 multiplies save.
SLOWER_THAN_FP32 = {
    ("x86", "onnx", "qdq"): "static QDQ int8 ONNX ran at 0.49-0.92x of fp32's speed on an x86 CPU without VNNI "
                            "(docs/quantization.md); for speed use --int8 dynamic, or --int8 auto to time the recipes here",
}


def slower_than_fp32(target: str, fmt: str, name: str) -> str | None:
    """What export says when it writes a recipe measured slower than fp32 on `target`, else None."""
    return SLOWER_THAN_FP32.get((check_target(target), fmt, name))


def recipe_names(fmt: str) -> list[str]:
    return [r.name for r in _ALL if r.format == fmt]


def check_target(target: str) -> str:
    value = (target or "x86").lower()
    aliases = {"x86_64": "x86", "amd64": "x86", "aarch64": "arm64", "arm": "arm64"}
    value = aliases.get(value, value)
    if value not in TARGETS:
        raise UsageError(f"unknown target {target!r}; choose x86 or arm64")
    return value


def resolve(fmt: str, name: str | None, target: str = "x86") -> Recipe:
    """The recipe called `name` for `fmt` (None or "default": the target's default)."""
    if name in (None, "", "default"):
        name = DEFAULTS[check_target(target)][fmt]
    recipe = RECIPES.get((fmt, name))
    if recipe is None:
        raise UsageError(f"no int8 recipe {name!r} for {fmt}; choose from {', '.join(recipe_names(fmt))}, "
                         "default or auto")
    return recipe


def parse_int8_option(value: str | None) -> dict:
    """`--int8 [auto|default|RECIPE|FORMAT:RECIPE,...]` -> {"auto": bool, "onnx": name, "tflite": name}."""
    out: dict = {"auto": False}
    if value is None:
        return out
    for item in (v.strip().lower() for v in str(value).split(",")):
        if not item or item == "default":
            continue
        if item == "auto":
            out["auto"] = True
            continue
        fmt, _, name = item.rpartition(":")
        formats = [fmt] if fmt else [f for f in ("onnx", "tflite") if (f, name) in RECIPES]
        if not formats or any((f, name) not in RECIPES for f in formats):
            known = ", ".join(f"{r.format}:{r.name}" for r in _ALL)
            raise UsageError(f"unknown int8 recipe {item!r}; choose auto, default or one of {known}")
        for f in formats:
            out[f] = name
    return out
