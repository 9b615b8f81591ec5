"""`export_artifacts`: one .keras model (or a variant with random weights) -> verified artifacts.

Four steps, cheapest checks first:
  plan     options, (format, precision) pairs, output names (no overwrite without force), the
           model's spec and labels: no TensorFlow, no images yet;
  convert  calibration images (one pass for every precision), Keras reference logits, then each
           format's converter (`vitedge.formats` plug-ins) makes each precision;
  verify   each file is written to a temporary name, run in its runtime against Keras and
           stamped with the figures;
  commit   every file is renamed into place only when ALL artifacts of the call have passed,
           so a failure leaves no partial file and overwrites nothing.
The formats, their precisions, suffixes, default scores and companion files come from the
format registry (`vitedge/formats/`); this module names no format.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import formats as format_registry
from ..calibration import DEFAULT_SEED, CalibrationSet, load_calibration
from ..errors import UsageError, VitedgeError
from ..fileio import atomic_output, check_writable, sha256_file, work_directory
from ..formats import ArtifactFormat, Converted, ExportContext
from ..modelfile import ModelSpec, default_labels, read_labels_file, read_spec
from ..preprocess import Preprocessing
from ..quant.recipes import CALIB_METHODS
from . import isolate
from .metadata import artifact_metadata
from .tflite import DEFAULT_BATCH as DEFAULT_TFLITE_BATCH

SCORES = ("logits", "probabilities")


def all_precisions() -> tuple[str, ...]:
    """Every precision some format has, in the formats' own order."""
    return tuple(dict.fromkeys(p for f in format_registry.all_formats() for p in f.precisions))


@dataclass
class ExportResult:
    """One verified artifact on disk."""

    path: Path
    format: str
    precision: str
    size_bytes: int
    verification: dict
    recipe: dict
    seconds: float

    def to_dict(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


@dataclass
class ExportOptions:
    """Everything one export call was asked for (the keyword arguments of `export_artifacts`)."""

    model: str | os.PathLike | None = None
    variant: str | None = None
    formats: str | Iterable[str] = "tflite"
    precisions: str | Iterable[str] = "fp32"
    out_dir: str | os.PathLike = "out"
    calib_dir: str | os.PathLike = "calibration"
    calib_size: int | None = None
    calib_seed: int = DEFAULT_SEED
    calib_method: str = "minmax"
    int8_io: bool = False
    force: bool = False
    seed: int = 0
    threads: int | None = None
    tflite_batch: int | None = DEFAULT_TFLITE_BATCH
    progress: bool = False
    warn: Callable[[str], None] | None = None
    int8: str | None = None
    target: str = "x86"
    max_drop: float | None = None
    say: Callable[[str], None] | None = None
    scores: str | None = None
    labels: str | os.PathLike | list[str] | None = None
    device: object | None = None  # --int8 auto --device: where the candidates are timed (bench.remote)


# ------------------------------------------------------------------- option parsing ----
def _split(value: str | Iterable[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in (str(i).strip().lower() for i in items):
        if item and item not in out:
            out.append(item)
    return out


def _choices() -> str:
    return ", ".join(format_registry.names()) + " or all"


def parse_formats(value: str | Iterable[str]) -> list[str]:
    """Format names, 'all' (every format registered for it) or a comma list -> ordered list."""
    items = _split(value)
    if not items:
        raise UsageError(f"--format needs a value: {_choices()}")
    known = format_registry.names()
    unknown = [i for i in items if i not in known and i != "all"]
    if unknown:
        raise UsageError(f"unknown format {unknown[0]!r}; choose {_choices()}")
    everything = [f.name for f in format_registry.all_formats() if f.in_all]
    out: list[str] = []
    for item in items:
        for fmt in (everything if item == "all" else (item,)):
            if fmt not in out:
                out.append(fmt)
    return out


def scores_for(fmt: str, scores: str | None) -> str:
    """What an artifact of `fmt` outputs: `scores` if given, else the format's default
    (probabilities on device formats, whose platform APIs report the output as is)."""
    if scores is None:
        return format_registry.get(fmt).default_scores
    return scores


def resolve_labels(spec: ModelSpec, labels: str | os.PathLike | list[str] | None) -> list[str]:
    """The labels the artifacts carry: the model's, or `labels` (a file, one per line, or a list),
    checked against the head (count, one line each, non-empty, unique)."""
    from .tflite_metadata import check_labels

    if labels is None:
        return check_labels(list(spec.labels), spec.config.num_classes, "the model's labels")
    if isinstance(labels, (str, os.PathLike)):
        names = read_labels_file(labels)
        if not names:
            raise VitedgeError(f"--labels {labels}: no labels in the file; the head has {spec.config.num_classes} classes")
        return check_labels(names, spec.config.num_classes, f"--labels {labels}")
    return check_labels([str(x) for x in labels], spec.config.num_classes, "labels")


def parse_precisions(value: str | Iterable[str]) -> list[str]:
    """'fp32,int8', 'all', ... -> ordered list (each format keeps the ones it has for 'all')."""
    items = _split(value)
    every = all_precisions()
    if not items:
        raise UsageError(f"--precision needs a value: {', '.join(every)} or all")
    if "all" in items:
        return ["all"]
    unknown = [i for i in items if i not in every]
    if unknown:
        raise UsageError(f"unknown precision {unknown[0]!r}; choose from {', '.join(every)} or all")
    return items


def plan_exports(formats: list[str], precisions: list[str], named: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(format, precision) pairs to produce. A precision a format lacks is a usage error for a
    format in `named` (default: all of them); formats that came from `--format all` skip it."""
    named = set(formats if named is None else named)
    pairs = []
    for fmt in formats:
        has = format_registry.get(fmt).precisions
        wanted = has if precisions == ["all"] else precisions
        for precision in wanted:
            if precision not in has and fmt not in named:
                continue
            if precision not in has:
                other = next(f.name for f in format_registry.all_formats() if precision in f.precisions)
                raise UsageError(f"{precision} is not available for {fmt} (it has {', '.join(has)});"
                                 f" use --format {other} for {precision}")
            pairs.append((fmt, precision))
    return pairs


def output_path(out_dir: str | os.PathLike, stem: str, fmt: str, precision: str) -> Path:
    """<out>/<stem>_<precision><the format's suffix>, e.g. out/fmnist-vit_int8.tflite."""
    return Path(out_dir) / f"{stem}_{precision}{format_registry.get(fmt).suffix}"


def companion_paths(fmt: str, path: Path) -> list[Path]:
    """Files written beside an artifact (an .ort file's required-operators config)."""
    return format_registry.get(fmt).companion_paths(path)


# ------------------------------------------------------------------------- sources ----
@dataclass
class _Source:
    stem: str
    spec: ModelSpec
    info: dict  # the metadata's `source` block, less variant/config
    path: Path | None = None
    variant: str | None = None
    seed: int = 0

    def load(self):
        """The Keras model (TensorFlow is imported here, not before)."""
        if self.path is not None:
            from ..modelfile import load_model

            model, spec = load_model(self.path)
            self.spec = spec
            return model
        from ..vit import build_vit

        return build_vit(self.spec.config, seed=self.seed)


def _resolve_source(model: str | os.PathLike | None, variant: str | None, seed: int) -> _Source:
    if model is not None and variant is not None:
        raise UsageError("give --model or --variant, not both")
    if variant is not None:
        from ..variants import variant_config

        config = variant_config(variant)
        spec = ModelSpec(config, default_labels(config.num_classes), Preprocessing(), {"seed": seed})
        return _Source(stem=config.variant, spec=spec, variant=config.variant, seed=seed,
                       info={"model_file": None, "model_sha256": None, "random_weights_seed": seed})
    if model is None:
        raise UsageError("give --model FILE.keras or --variant NAME")
    path = Path(model)
    if path.suffix.lower() != ".keras":
        if not path.exists():
            raise VitedgeError(f"{path}: no such file")
        raise VitedgeError(f"{path}: not a .keras model file")
    try:
        spec = read_spec(path)
    except VitedgeError as exc:
        if "not one saved by vitedge" not in str(exc):
            raise
        # A foreign .keras: loading it says which of a vitedge ViT's layers it lacks.
        from ..modelfile import load_model

        _, spec = load_model(path)
    return _Source(stem=path.stem, spec=spec, path=path,
                   info={"model_file": path.name, "model_sha256": sha256_file(path)})


# ---------------------------------------------------------------------------- plan ----
@dataclass
class PlannedArtifact:
    """One file to make: its format, precision, output path and what it outputs."""

    format: ArtifactFormat
    precision: str
    path: Path
    scores: str

    @property
    def label(self) -> str:
        return f"{self.format.name} {self.precision}"


@dataclass
class ExportPlan:
    """What an export call will do, decided before any image is read or TensorFlow imported."""

    options: ExportOptions
    source: _Source
    labels: list[str]
    int8: object  # vitedge.quant.int8_export.Int8Options
    artifacts: list[PlannedArtifact] = field(default_factory=list)

    @property
    def wants_int8(self) -> bool:
        return any(a.precision == "int8" for a in self.artifacts)


def plan(options: ExportOptions) -> ExportPlan:
    """Check every option and name every output; a UsageError / VitedgeError before any work."""
    fmts = parse_formats(options.formats)
    if options.scores is not None and options.scores not in SCORES:
        raise UsageError(f"unknown scores {options.scores!r}; choose logits or probabilities")
    named = [f for f in _split(options.formats) if f != "all"]
    pairs = plan_exports(fmts, parse_precisions(options.precisions), named)
    if not pairs:
        raise UsageError(f"no format has {options.precisions}")
    from ..quant.int8_export import Int8Options, check_options

    int8_options = Int8Options(int8=options.int8, target=options.target, max_drop=options.max_drop,
                               threads=options.threads, say=options.say or options.warn, device=options.device)
    wants_int8 = any(p == "int8" for _, p in pairs)
    if (options.int8 is not None or options.max_drop is not None) and not wants_int8:
        raise UsageError("--int8 RECIPE/auto and --max-drop apply to the int8 precision (--int8 or --precision int8)")
    if options.device is not None and not int8_options.auto:
        raise UsageError("--device times the --int8 auto candidates on that device; add --int8 auto")
    # Each format names the recipe family its int8 uses (ORT: the ONNX recipes it converts).
    families = [format_registry.get(f).int8_recipes for f, p in pairs if p == "int8"]
    check_options(int8_options, list(dict.fromkeys(f for f in families if f)), options.int8_io)
    if options.int8_io:
        without = [format_registry.get(f) for f in fmts if not format_registry.get(f).int8_io]
        if without:
            able = [f.title for f in format_registry.all_formats() if f.int8_io]
            raise UsageError(f"--int8-io is for {' and '.join(able)} only ({' and '.join(f.title for f in without)} "
                             "artifacts keep float input and output)")
        if not wants_int8:
            raise UsageError("--int8-io needs the int8 precision (--int8 or --precision int8)")
    if options.calib_method not in CALIB_METHODS:
        raise UsageError(f"unknown calibration method {options.calib_method!r}; choose from {', '.join(CALIB_METHODS)}")
    if options.calib_size is not None and options.calib_size < 1:
        raise UsageError(f"--calib-size must be at least 1, got {options.calib_size}")
    if options.tflite_batch is not None and options.tflite_batch < 1:
        raise UsageError(f"TFLite batch must be at least 1 or dynamic, got {options.tflite_batch}")

    out_dir = options.out_dir
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise VitedgeError(f"--out {out_dir} is a file, not a folder")
    source = _resolve_source(options.model, options.variant, options.seed)
    artifacts = [PlannedArtifact(format_registry.get(f), p, output_path(out_dir, source.stem, f, p),
                                 scores_for(f, options.scores)) for f, p in pairs]
    for item in artifacts:
        for each in (item.path, *item.format.companion_paths(item.path)):
            check_writable(each, options.force)
    if source.spec.config.channels != 3:
        raise VitedgeError(f"the model takes {source.spec.config.channels}-channel input; export handles RGB (3) models")
    chosen_labels = resolve_labels(source.spec, options.labels)
    from .tflite_metadata import check_metadata_size

    check_metadata_size(chosen_labels)
    if options.warn is not None:
        for fmt in fmts:
            for message in format_registry.get(fmt).export_warnings(source.spec):
                options.warn(message)
    from .resources import check, check_file_sizes

    # Before any image is read or TensorFlow imported: refuse what memory or disk cannot hold.
    weights = weight_bytes(source.spec)
    check_file_sizes(weights, [(a.format, a.precision) for a in artifacts], source.stem)
    check(weights, [(a.format, a.precision) for a in artifacts], isolate.wanted(weights), Path(out_dir),
          what=f"exporting {source.stem} ({weights / 1e6:.0f} MB of weights) to {len(artifacts)} artifact(s)")
    return ExportPlan(options, source, chosen_labels, int8_options, artifacts)


# ------------------------------------------------------------------------- convert ----
@dataclass
class Reference:
    """The images every artifact is verified on, and Keras' logits for them."""

    calibration: CalibrationSet
    logits: np.ndarray
    keras_model: object  # None when only a child process holds it (then model_file)
    model_file: Path | None = None


def prepare(export: ExportPlan, say: Callable[[str], None] = lambda message: None,
            workdir: Path | None = None) -> Reference:
    """Calibration images (validation held out for accuracy control), the Keras model, its logits.

    With isolation (large models, `vitedge.export.isolate`) the Keras model lives only in a
    child process, which saves it to `workdir` for the later steps: this process never loads
    TensorFlow or the weights (`Reference.keras_model` is None, `model_file` names the file)."""
    options, source = export.options, export.source
    calibration = load_calibration(options.calib_dir, options.calib_size, source.spec.config.image_size,
                                   source.spec.preprocessing, seed=options.calib_seed, progress=options.progress,
                                   warn=options.warn)
    if export.wants_int8 and (options.max_drop is not None or export.int8.auto):
        calibration = _hold_out_validation(calibration, source.spec, export.int8, options.warn)
    isolated = isolate.wanted(weight_bytes(source.spec)) and workdir is not None
    say(f"{len(calibration.images)} calibration images; Keras model and its reference scores"
        + (" (own process)" if isolated else ""))
    if isolated:
        model_file = workdir / "model.keras"
        logits, spec = isolate.call("vitedge.export.pipeline:keras_reference", source, calibration.images,
                                    model_file, isolate=True, what="loading the Keras model")
        source.spec, keras_model = spec, None
    else:
        model_file, keras_model = None, source.load()
        logits = reference_logits(keras_model, calibration.images)
    source.spec = ModelSpec(source.spec.config, export.labels, source.spec.preprocessing, source.spec.info)
    return Reference(calibration, logits, keras_model, model_file)


def keras_reference(source: _Source, images: np.ndarray, model_file: Path) -> tuple[np.ndarray, ModelSpec]:
    """(Keras logits for `images`, the model's spec) with the model saved to `model_file`."""
    model = source.load()
    model.save(str(model_file))
    return reference_logits(model, images), source.spec


def context(export: ExportPlan, reference: Reference, workdir: Path, say=None) -> ExportContext:
    options = export.options
    return ExportContext(keras_model=reference.keras_model, calibration=reference.calibration, workdir=workdir,
                         int8=export.int8, target=export.int8.target, int8_io=options.int8_io,
                         calib_method=options.calib_method, tflite_batch=options.tflite_batch,
                         threads=options.threads, isolate=isolate.wanted(weight_bytes(export.source.spec)),
                         say=say, model_path=reference.model_file)


def weight_bytes(spec: ModelSpec) -> int:
    """fp32 bytes of the model's weights (what export's costs scale with)."""
    return 4 * spec.config.param_count()


class Progress:
    """Progress lines with the time since the export started ("[  12.3 s] onnx int8: ...")."""

    def __init__(self, say: Callable[[str], None] | None):
        self.say, self.started = say, time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.say is not None:
            self.say(f"[{time.perf_counter() - self.started:7.1f} s] {message}")


# -------------------------------------------------------------------- verify, commit ----
def _stage(item: PlannedArtifact, converted: Converted, export: ExportPlan, reference: Reference,
           commit: contextlib.ExitStack, source_info: dict) -> tuple[Path, dict]:
    """Write the artifact (and its companions) to temporary names that `commit` renames into
    place at the end; verify it in its runtime first. Returns (temporary file, figures)."""
    options = export.options
    tmp = commit.enter_context(atomic_output(item.path, force=options.force))
    extras = [commit.enter_context(atomic_output(p, force=options.force))
              for p in item.format.companion_paths(item.path)]
    meta = artifact_metadata(model_format=item.format.name, precision=item.precision, recipe=converted.recipe,
                             spec=export.source.spec, io=converted.io, source=source_info,
                             calibration=reference.calibration, scores=item.scores)
    converted.write(tmp, meta)
    # In a child for large models: the runtime's copy of the weights goes back when it ends.
    figures = isolate.call("vitedge.export.verify:verify_artifact", tmp, item.precision,
                           reference.calibration.images, reference.logits, threads=options.threads,
                           label=item.path.name, scores=item.scores, runtime=item.format.runtime_name,
                           isolate=isolate.wanted(weight_bytes(export.source.spec)),
                           what=f"verification of {item.label}")
    figures["images_fingerprint"] = reference.calibration.fingerprint
    meta["verification"] = figures
    converted.write(tmp, meta)
    for extra, data in zip(extras, converted.companion_bytes(item.path), strict=True):
        extra.write_bytes(data)
    return tmp, figures


def _closest(item: PlannedArtifact, export: ExportPlan, recipe: dict) -> str:
    """Rename an int8 artifact that missed --max-drop to *_int8_closest; the message to raise."""
    from ..quant.int8_export import bound_message

    options = export.options
    item.path = output_path(options.out_dir, export.source.stem, item.format.name, "int8_closest")
    for each in (item.path, *item.format.companion_paths(item.path)):
        check_writable(each, options.force)
    return bound_message(item.format.name, recipe, item.path)


def run_export(options: ExportOptions) -> list[ExportResult]:
    """plan -> convert -> verify -> commit (see the module docstring)."""
    export = plan(options)
    # Progress lines for a person watching, or for a large model (minutes per step) in a log
    # too; a small export's log keeps to its results and errors.
    wanted = options.progress and (sys.stderr.isatty() or isolate.wanted(weight_bytes(export.source.spec)))
    say = Progress(options.say if wanted else None)
    results: list[ExportResult] = []
    missed: list[str] = []
    total = len(export.artifacts)
    with work_directory("export") as work, contextlib.ExitStack() as commit:
        reference = prepare(export, say, Path(work))
        source_info = dict(export.source.info)
        ctx = context(export, reference, Path(work), say)
        for number, item in enumerate(export.artifacts, 1):
            started = time.perf_counter()
            say(f"{number}/{total} {item.label}: converting")
            converted = ctx.converter(item.format.name).convert(item.precision, item.scores)
            if converted.bound_missed:  # kept under a name that says so
                missed.append(_closest(item, export, converted.recipe))
            say(f"{number}/{total} {item.label}: converted in {time.perf_counter() - started:.1f} s; "
                f"verifying on {len(reference.logits)} images")
            tmp, figures = _stage(item, converted, export, reference, commit, source_info)
            say(f"{number}/{total} {item.label}: verified, top-1 agreement {100 * figures['top1_agreement']:.1f}% "
                f"({time.perf_counter() - started:.1f} s)")
            results.append(ExportResult(path=item.path, format=item.format.name, precision=item.precision,
                                        size_bytes=tmp.stat().st_size, verification=figures,
                                        recipe=converted.recipe, seconds=round(time.perf_counter() - started, 2)))
        # Leaving the ExitStack renames every temporary file into place (all passed).
    for result in results:  # the size a device ships: with weights files (OpenVINO's .bin)
        result.size_bytes = format_registry.get(result.format).deployed_bytes(result.path)
    if missed:
        raise VitedgeError("; ".join(missed))
    return results


def export_artifacts(model: str | os.PathLike | None = None, **kwargs) -> list[ExportResult]:
    """Export `model` (a vitedge .keras path) or `variant` (random weights, `seed`) to every
    (format, precision) asked for, verify each in its runtime, and return the results.

    Keyword arguments: the fields of `ExportOptions` (an unknown one is a TypeError).
    `calib_size=None` takes up to DEFAULT_CALIB_SIZE images from `calib_dir`; a number asks
    for exactly that many (a warning through `warn` if the folder has fewer).

    int8 precision (vitedge.quant): `int8` picks the recipe ("auto", a recipe name, None for
    the `target`'s default); `max_drop` (top-1 points) turns on accuracy control on validation
    images held out of the calibration set; `say` gets its progress and auto's reasons.

    `scores`: "probabilities" (a softmax ends the model) or "logits"; None = each format's
    default (probabilities for the device formats tflite and ort, logits for onnx). `labels`: a
    labels file (one per line) or list replacing the model's own; either way they are checked
    against the head."""
    known = {f.name for f in fields(ExportOptions)} - {"model"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"export_artifacts() got an unexpected keyword argument {unknown[0]!r}")
    return run_export(ExportOptions(model=model, **kwargs))


def _hold_out_validation(calibration: CalibrationSet, spec: ModelSpec, options, warn) -> CalibrationSet:
    """Accuracy control's validation images, taken out of the calibration set (never the test set)."""
    from ..quant.validation import hold_out

    try:
        calibration, options.validation = hold_out(calibration, spec.labels, spec.config.image_size,
                                                   spec.preprocessing)
    except VitedgeError as exc:
        if options.max_drop is not None:
            raise
        if warn is not None:  # --int8 auto without --max-drop: still picks by speed
            warn(f"{exc}; --int8 auto picks by speed alone, accuracy not validated".replace("--max-drop: ", ""))
    return calibration


def reference_logits(keras_model, images: np.ndarray) -> np.ndarray:
    """Keras' own logits for `images` (what every artifact is compared with)."""
    return keras_model.predict(images, batch_size=32, verbose=0)
