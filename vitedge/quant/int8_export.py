"""What `vitedge export` calls for the int8 precision: recipe choice, accuracy control, selection.

The format's converter owns conversion to fp32, metadata and writing, and hands over a
*builder* (ONNX: `vitedge.export.onnx.OnnxBuilder`, from the fused fp32 graph; TFLite:
`vitedge.export.tflite.TfliteBuilder`, from the SavedModel) that makes one int8 file from a
recipe's settings. This module picks the recipe asked for (`--int8 RECIPE`), the target's
default, or the fastest one within the bound on this machine (`--int8 auto`), with
`--max-drop` applied. A builder has: fmt (the recipe family), suffix, workdir, calibration
(images), fp32_path (the float file to compare and time against) and
build(recipe_name, exclude, path) -> record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    device: object | None = None  # --device: a bench.remote.SshDevice that times the auto candidates

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
                                         say=say, device=options.device)
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
