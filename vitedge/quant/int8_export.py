"""What `vitedge export` calls for the int8 precision: recipe, accuracy control, selection.

The export pipeline owns conversion to fp32, calibration images, metadata and writing; this
module turns its fp32 starting point (ONNX: the fused fp32 graph; TFLite: the SavedModel)
into the int8 file, by the recipe asked for (`--int8 RECIPE`), the target's default, or the
fastest one within the bound on this machine (`--int8 auto`), with `--max-drop` applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from . import control
from .recipes import check_target, parse_int8_option, recipe_names, resolve, slower_than_fp32
from .validation import Validation

DEFAULT_AUTO_MAX_DROP = 0.5  # `--int8 auto` with labelled calibration images and no --max-drop


@dataclass
class Int8Options:
    """The int8 part of an export call."""

    int8: str | None = None  # --int8 value: None/"default", "auto", "RECIPE" or "FORMAT:RECIPE,..."
    target: str = "x86"
    max_drop: float | None = None
    validation: Validation | None = None  # held out by the pipeline when max_drop is set
    threads: int | None = None
    say: Callable[[str], None] | None = None

    def __post_init__(self):
        self.target = check_target(self.target)
        self.choice = parse_int8_option(self.int8)
        if self.max_drop is not None and not self.max_drop >= 0:
            raise UsageError(f"--max-drop must be a number of top-1 points >= 0, got {self.max_drop}")

    @property
    def auto(self) -> bool:
        return bool(self.choice.get("auto"))

    @property
    def controlled(self) -> bool:
        return self.max_drop is not None

    def recipes_for(self, fmt: str) -> list[str]:
        if self.auto and fmt not in self.choice:
            return recipe_names(fmt)
        return [resolve(fmt, self.choice.get(fmt), self.target).name]


class OnnxBuilder:
    fmt, suffix = "onnx", ".onnx"

    def __init__(self, fp32_path: Path, calibration: np.ndarray, workdir: Path, target: str,
                 calib_method: str = "minmax"):
        self.fp32_path, self.calibration, self.workdir, self.target = fp32_path, calibration, workdir, target
        self.calib_method = calib_method
        self.cache = workdir / "onnx_activation_ranges.json"

    def build(self, recipe: str, exclude: list[str], path: Path) -> dict:
        from .onnx_quant import quantize

        return quantize(self.fp32_path, path, recipe, self.target, self.calibration, exclude, cache=self.cache,
                        method=self.calib_method)


class TfliteBuilder:
    fmt, suffix = "tflite", ".tflite"

    def __init__(self, saved_model: Path, calibration: np.ndarray, workdir: Path, target: str, batch: int | None):
        self.saved_model, self.calibration, self.workdir = saved_model, calibration, workdir
        self.target, self.batch = target, batch
        self._calibrated: bytes | None = None
        self._fp32_path: Path | None = None

    @property
    def fp32_path(self) -> Path:
        """A plain fp32 conversion (no metadata) to compare and time the int8 files against."""
        if self._fp32_path is None:
            from ..export import tflite as tflite_export

            flatbuffer, _ = tflite_export.convert(self.saved_model, "fp32", batch=self.batch)
            self._fp32_path = self.workdir / "int8_reference_fp32.tflite"
            self._fp32_path.write_bytes(flatbuffer)
        return self._fp32_path

    def build(self, recipe: str, exclude: list[str], path: Path) -> dict:
        from . import tflite_quant

        if recipe == "dynamic":
            flatbuffer, record = tflite_quant.dynamic(self.saved_model)
        else:
            if self._calibrated is None:
                self._calibrated = tflite_quant.calibrate(self.saved_model, self.calibration, self.batch)
            flatbuffer, record = tflite_quant.quantize_calibrated(self._calibrated, recipe, exclude,
                                                                   target=self.target)
            record["representative_images"] = int(len(self.calibration))
        path.write_bytes(flatbuffer)
        return {**record, "target": self.target}


def int8_artifact(builder, options: Int8Options) -> tuple[Path, dict, bool]:
    """(path of the chosen int8 file in the work folder, its recipe record, bound met?)."""
    say = options.say or (lambda _m: None)
    names = options.recipes_for(builder.fmt)
    validation = options.validation
    max_drop = options.max_drop
    if options.auto and max_drop is None and validation is not None:
        max_drop = DEFAULT_AUTO_MAX_DROP
    outcomes = []
    if max_drop is not None and validation is not None:
        reference = control.top1(builder.fp32_path, validation, options.threads)
        for name in names:
            outcomes.append(control.accuracy_control(builder, name, validation, reference, max_drop,
                                                     builder.calibration, options.threads, say))
    else:
        for name in names:
            path = builder.workdir / f"{builder.fmt}_{name}{builder.suffix}"
            outcomes.append(control.Outcome(name, path, builder.build(name, [], path)))
    if options.auto:
        best, selection = control.select(outcomes, builder.fp32_path, threads=options.threads or 2, fmt=builder.fmt,
                                         say=say)
    else:
        best = outcomes[0]
        selection = {"mode": "named" if options.choice.get(builder.fmt) else "default", "target": options.target}
        slower = slower_than_fp32(options.target, builder.fmt, best.recipe)
        if slower:
            say(f"note: {builder.fmt} int8 recipe {best.recipe}: {slower}")
    record = {**best.record, "selection": selection}
    if max_drop is not None and validation is not None:
        record["accuracy_control"] = {
            "max_drop": max_drop, "met": best.met, "validation": validation.to_metadata(),
            "fp32_top1": round(best.top1 + best.drop, 3), "int8_top1": round(best.top1, 3),
            "drop": round(best.drop, 3), "float_layers": best.exclude,
            "steps": best.steps, "max_float_fraction": control.MAX_FLOAT_FRACTION}
    return best.path, record, best.met


def bound_message(fmt: str, record: dict, kept: Path) -> str:
    ac = record.get("accuracy_control") or {}
    return (f"no {fmt} int8 recipe keeps top-1 within --max-drop {ac.get('max_drop')} points on "
            f"{(ac.get('validation') or {}).get('images')} validation images: the best reached is "
            f"{record.get('recipe')} with {len(ac.get('float_layers') or [])} layer(s) in float, drop "
            f"{ac.get('drop')} points; kept as {kept}")


def check_options(options: Int8Options, formats: list[str], int8_io: bool) -> None:
    if int8_io and (options.auto or options.choice.get("tflite") not in (None, "full")):
        raise UsageError("--int8-io needs the full int8 recipe (every op int8); drop --int8 auto/RECIPE")
    named = [f for f in options.choice if f != "auto"]
    if named and not any(f in formats for f in named):
        raise UsageError(f"--int8 {options.int8} is a {' and '.join(named)} recipe; this export writes "
                         f"{', '.join(formats)}")
    for fmt in formats:
        options.recipes_for(fmt)  # unknown names fail here, before any work
