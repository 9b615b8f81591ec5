"""The int8 recipes, as data: each `Recipe` carries every quantizer setting its format's builder
applies (vitedge/export/onnx.py, vitedge/export/tflite.py), which one is the default per target,
and the experiments docs/quantization.md measured (scripts/int8_recipes.py builds them all).

Chosen by measurement on an x86-64 AVX2 CPU without VNNI (2 threads, batch 1); the figures
and every recipe tried are in docs/quantization.md. No TensorFlow or ONNX import here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

TARGETS = ("x86", "arm64")
CALIB_METHODS = ("minmax", "entropy", "percentile")  # static activation-range calibration (--calib-method)


WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")  # TFLite's weight-bearing ops


@dataclass(frozen=True)
class Recipe:
    """One int8 recipe: what it is called and every setting its format's builder applies.

    A value that differs by `--target` is a dict {target: value}; `setting(name, target)` reads
    either form. ONNX builders read: graph, mode, quant_format, op_types, const_weight_only,
    per_channel, reduce_range, activation_type, weight_type, calibration_method, per_image.
    TFLite builders read: mode, int8_ops ("all" or op types; other ops stay float with
    QUANTIZE/DEQUANTIZE at their borders), per_channel."""

    format: str  # the recipe family ("onnx" also serves .ort files, converted from them)
    name: str
    summary: str
    calibrated: bool  # needs calibration images (static activation ranges)
    revertible: bool  # accuracy control can keep named layers float
    mode: str = "static"  # "static" (calibrated ranges) | "dynamic" (activations quantized per call)
    offered: bool = True  # a `--int8` choice; False: an experiment kept for docs/quantization.md's tables
    # ONNX Runtime quantizer settings
    graph: str = "fused"  # "fused" (vitedge.export.onnx_graph) | "tf2onnx" (the converter's graph as is)
    quant_format: str = "QDQ"  # "QDQ" | "QOperator" (static only)
    op_types: tuple[str, ...] | None = ("MatMul",)  # None: every op type the quantizer knows
    const_weight_only: bool = True  # only multiplies whose second input is a weight (MatMulConstBOnly)
    per_channel: bool | dict = True
    reduce_range: bool | dict = False  # 7-bit weights
    activation_type: str = "uint8"
    weight_type: str = "int8"
    calibration_method: str = "minmax"  # export's --calib-method replaces it
    per_image: bool = False  # dynamic batch as a Scan over batch-1 graphs: one activation scale per image
    # TFLite (MLIR quantizer) settings
    int8_ops: str | tuple[str, ...] | dict = "all"

    def setting(self, name: str, target: str = "x86"):
        """A setting for `target` (per-target values are dicts keyed by target)."""
        value = getattr(self, name)
        return value[check_target(target)] if isinstance(value, dict) else value


# x86 without VNNI: ONNX Runtime's u8*s8 kernels sum pairs with VPMADDUBSW, which saturates int16
# on full-range weights, so x86 weights are 7-bit (reduce_range); ARM does not need it.
_REDUCE_RANGE = {"x86": True, "arm64": False}
# XNNPACK's int8 CONV_2D with the patch embedding's PxP stride-P kernel was 1.5x (28x28) to 2.7x
# (ViT-Ti) slower than its float one on x86 (`vitedge profile`), so the patch embedding stays
# float there; arm64 keeps it int8 (not measured on a device; its dot-product int8 kernels are
# the reason to quantize at all).
_FC_OPS = {"x86": ("FULLY_CONNECTED",), "arm64": WEIGHT_OPS}
_ONNX_ALL = ("MatMul", "Conv", "Gemm")

_ALL = [
    Recipe("onnx", "dynamic",
           "graph fused (LayerNorm, Gelu, MultiHeadAttention), MatMuls with int8 weights, activations "
           "quantized per call (DynamicQuantizeMatMul); attention, LayerNorm, GELU float", False, True,
           mode="dynamic", per_channel=False, reduce_range=_REDUCE_RANGE, per_image=True),
    Recipe("onnx", "qdq",
           "graph fused, static QDQ on weight-bearing MatMuls only (uint8 calibrated activations, int8 "
           "per-channel weights); attention, LayerNorm, GELU float", True, True,
           per_channel=True, reduce_range=_REDUCE_RANGE),
    Recipe("tflite", "dynamic",
           "dynamic-range int8: int8 weights, XNNPACK quantizes activations per call (QD8 kernels)", False, False,
           mode="dynamic", per_channel=True),
    Recipe("tflite", "fc",
           "selective full int8: FULLY_CONNECTED int8 (and CONV_2D on arm64; calibrated activations, per-tensor "
           "weights); patch-embedding CONV_2D on x86, LayerNorm, GELU, Softmax, "
           "attention BATCH_MATMULs and residual ADDs float", True, True,
           int8_ops=_FC_OPS, per_channel=False),
    Recipe("tflite", "full",
           "every op int8 (the textbook recipe; int8 input/output possible with --int8-io)", True, True,
           int8_ops="all", per_channel=True),
    # Experiments measured for docs/quantization.md (scripts/int8_recipes.py), not offered by --int8.
    Recipe("onnx", "tf2onnx_qdq_all_ops", "tf2onnx's graph, static QDQ on every op type, s8s8", True, False,
           offered=False, graph="tf2onnx", op_types=None, const_weight_only=False, activation_type="int8"),
    Recipe("onnx", "tf2onnx_qdq_matmul_rr", "tf2onnx's graph, static QDQ on weight multiplies, s8s8, 7-bit", True,
           False, offered=False, graph="tf2onnx", op_types=_ONNX_ALL, activation_type="int8", reduce_range=True),
    Recipe("onnx", "tf2onnx_dynamic_rr", "tf2onnx's graph, dynamic int8 on weight multiplies, 7-bit", False, False,
           offered=False, graph="tf2onnx", mode="dynamic", op_types=_ONNX_ALL, per_channel=False,
           reduce_range=True),
    Recipe("onnx", "dynamic_no_rr", "the dynamic recipe with 8-bit weights (its arm64 form)", False, False,
           offered=False, mode="dynamic", per_channel=False, reduce_range=False, per_image=True),
    Recipe("onnx", "dynamic_per_channel", "dynamic int8, per-channel 7-bit weights, batch shared", False, False,
           offered=False, mode="dynamic", op_types=_ONNX_ALL, per_channel=True, reduce_range=True),
    Recipe("onnx", "qdq_s8s8", "static QDQ, int8 activations and per-channel weights", True, False,
           offered=False, op_types=_ONNX_ALL, activation_type="int8"),
    Recipe("onnx", "qdq_s8s8_per_tensor", "static QDQ, int8 activations, per-tensor weights", True, False,
           offered=False, op_types=_ONNX_ALL, activation_type="int8", per_channel=False),
    Recipe("onnx", "qoperator_u8s8_rr", "static QOperator (QLinearMatMul), uint8 activations, 7-bit", True, False,
           offered=False, quant_format="QOperator", op_types=_ONNX_ALL, per_channel=False, reduce_range=True),
    Recipe("onnx", "qoperator_s8s8", "static QOperator, int8 activations, per-tensor weights", True, False,
           offered=False, quant_format="QOperator", op_types=_ONNX_ALL, activation_type="int8", per_channel=False),
    Recipe("tflite", "fc_per_channel", "the fc recipe with per-channel weights", True, False,
           offered=False, int8_ops=_FC_OPS, per_channel=True),
    Recipe("tflite", "fc_gelu", "fc, GELU int8 too", True, False, offered=False,
           int8_ops=("FULLY_CONNECTED", "CONV_2D", "GELU"), per_channel=False),
    Recipe("tflite", "fc_gelu_add", "fc, GELU and residual ADDs int8 too", True, False, offered=False,
           int8_ops=("FULLY_CONNECTED", "CONV_2D", "GELU", "ADD"), per_channel=False),
    Recipe("tflite", "fc_attention", "fc, attention int8 too", True, False, offered=False,
           int8_ops=("FULLY_CONNECTED", "CONV_2D", "BATCH_MATMUL", "SOFTMAX", "RESHAPE", "TRANSPOSE", "SPLIT"),
           per_channel=False),
]
RECIPES: dict[tuple[str, str], Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add a recipe (a new one is one `Recipe(...)` entry above, or a call to this)."""
    RECIPES[(recipe.format, recipe.name)] = recipe
    return recipe


for _recipe in _ALL:
    register(_recipe)


def all_recipes(fmt: str | None = None, offered: bool | None = True) -> list[Recipe]:
    """Registered recipes of family `fmt` (None: all), the --int8 choices by default
    (offered=None: experiments too)."""
    return [r for r in RECIPES.values() if (fmt is None or r.format == fmt)
            and (offered is None or r.offered == offered)]


def families() -> list[str]:
    return list(dict.fromkeys(r.format for r in all_recipes()))


def help_text() -> str:
    """'onnx: dynamic, qdq; tflite: dynamic, fc, full' for `--int8`'s help."""
    return "; ".join(f"{f}: {', '.join(recipe_names(f))}" for f in families())


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
    """The --int8 choices of recipe family `fmt`."""
    return [r.name for r in all_recipes(fmt)]


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
    if recipe is None or not recipe.offered:
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
        offered = {(r.format, r.name) for r in all_recipes()}
        formats = [fmt] if fmt else [f for f in families() if (f, name) in offered]
        if not formats or any((f, name) not in offered for f in formats):
            known = ", ".join(f"{r.format}:{r.name}" for r in all_recipes())
            raise UsageError(f"unknown int8 recipe {item!r}; choose auto, default or one of {known}")
        for f in formats:
            out[f] = name
    return out
