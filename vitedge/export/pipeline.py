"""`export_artifacts`: one .keras model (or a variant with random weights) -> verified artifacts.

Order of work, cheapest checks first: options, output names (no overwrite without force),
the model's spec, the calibration images (one pass for every precision), then TensorFlow.
Every artifact is written to a temporary name, verified in its runtime, stamped with its
figures, and renamed into place only when ALL artifacts of the call have passed, so a
failure leaves no partial file and overwrites nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..artifact import set_onnx_metadata
from ..calibration import DEFAULT_SEED, CalibrationSet, load_calibration
from ..errors import UsageError, VitedgeError
from ..fileio import atomic_output, check_writable, sha256_file
from ..modelfile import ModelSpec, default_labels, read_labels_file, read_spec
from ..preprocess import Preprocessing
from . import onnx as onnx_export
from . import ort as ort_export
from . import tflite as tflite_export
from .metadata import STATIC_PRECISIONS, artifact_metadata
from .verify import verify_artifact

FORMATS = {"tflite": tflite_export.PRECISIONS, "onnx": onnx_export.PRECISIONS, "ort": ort_export.PRECISIONS}
SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "ort": ".ort"}
ALL_FORMATS = ("tflite", "onnx", "ort")  # what --format all means (each with the precisions it has)
ALL_PRECISIONS = tflite_export.PRECISIONS  # the widest list; ONNX has all but int16x8, ORT fp32, dynamic and int8
CALIB_METHODS = onnx_export.CALIB_METHODS
SCORES = ("logits", "probabilities")
# Formats meant for phones and boards: their platform APIs (MediaPipe, ONNX Runtime Mobile apps)
# report the model's output as is, so by default it ends in a softmax (--scores).
DEVICE_FORMATS = ("tflite", "ort")


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


# ------------------------------------------------------------------- option parsing ----
def _split(value: str | Iterable[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in (str(i).strip().lower() for i in items):
        if item and item not in out:
            out.append(item)
    return out


def parse_formats(value: str | Iterable[str]) -> list[str]:
    """'tflite', 'onnx', 'ort', 'all' (= all three) or a comma list -> ordered list of formats."""
    items = _split(value)
    if not items:
        raise UsageError("--format needs a value: tflite, onnx, ort or all")
    unknown = [i for i in items if i not in FORMATS and i != "all"]
    if unknown:
        raise UsageError(f"unknown format {unknown[0]!r}; choose tflite, onnx, ort or all")
    out: list[str] = []
    for item in items:
        for fmt in (ALL_FORMATS if item == "all" else (item,)):
            if fmt not in out:
                out.append(fmt)
    return out


def scores_for(fmt: str, scores: str | None) -> str:
    """What an artifact of `fmt` outputs: `scores` if given, else probabilities on device formats."""
    if scores is None:
        return "probabilities" if fmt in DEVICE_FORMATS else "logits"
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
    if not items:
        raise UsageError(f"--precision needs a value: {', '.join(ALL_PRECISIONS)} or all")
    if "all" in items:
        return ["all"]
    unknown = [i for i in items if i not in ALL_PRECISIONS]
    if unknown:
        raise UsageError(f"unknown precision {unknown[0]!r}; choose from {', '.join(ALL_PRECISIONS)} or all")
    return items


def plan_exports(formats: list[str], precisions: list[str], named: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(format, precision) pairs to produce. A precision a format lacks is a usage error for a
    format in `named` (default: all of them); formats that came from `--format all` skip it."""
    named = set(formats if named is None else named)
    pairs = []
    for fmt in formats:
        wanted = FORMATS[fmt] if precisions == ["all"] else precisions
        for precision in wanted:
            if precision not in FORMATS[fmt] and fmt not in named:
                continue
            if precision not in FORMATS[fmt]:
                raise UsageError(f"{precision} is not available for {fmt} (it has {', '.join(FORMATS[fmt])});"
                                 f" use --format tflite for {precision}")
            pairs.append((fmt, precision))
    return pairs


def output_path(out_dir: str | os.PathLike, stem: str, fmt: str, precision: str) -> Path:
    """<out>/<stem>_<precision>.<tflite|onnx|ort>, e.g. out/fmnist-vit_int8.tflite."""
    return Path(out_dir) / f"{stem}_{precision}{SUFFIX[fmt]}"


def companion_paths(fmt: str, path: Path) -> list[Path]:
    """Files written beside an artifact: an .ort file's required-operators config."""
    return [ort_export.config_path(path)] if fmt == "ort" else []


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


# ------------------------------------------------------------------------- export ----
def export_artifacts(
    model: str | os.PathLike | None = None,
    *,
    variant: str | None = None,
    formats: str | Iterable[str] = "tflite",
    precisions: str | Iterable[str] = "fp32",
    out_dir: str | os.PathLike = "out",
    calib_dir: str | os.PathLike = "calibration",
    calib_size: int | None = None,
    calib_seed: int = DEFAULT_SEED,
    calib_method: str = "minmax",
    int8_io: bool = False,
    force: bool = False,
    seed: int = 0,
    threads: int | None = None,
    tflite_batch: int | None = tflite_export.DEFAULT_BATCH,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
    int8: str | None = None,
    target: str = "x86",
    max_drop: float | None = None,
    say: Callable[[str], None] | None = None,
    scores: str | None = None,
    labels: str | os.PathLike | list[str] | None = None,
) -> list[ExportResult]:
    """Export `model` (a vitedge .keras path) or `variant` (random weights, `seed`) to every
    (format, precision) asked for, verify each in its runtime, and return the results.

    `calib_size=None` takes up to DEFAULT_CALIB_SIZE images from `calib_dir`; a number asks
    for exactly that many (a warning through `warn` if the folder has fewer).

    int8 precision (vitedge.quant): `int8` picks the recipe ("auto", a recipe name, None for
    the `target`'s default); `max_drop` (top-1 points) turns on accuracy control on validation
    images held out of the calibration set; `say` gets its progress and auto's reasons.

    `scores`: "probabilities" (a softmax ends the model) or "logits"; None = probabilities for
    the device formats (tflite, ort), logits for onnx. `labels`: a labels file (one per line)
    or list replacing the model's own; either way they are checked against the head."""
    fmts = parse_formats(formats)
    if scores is not None and scores not in SCORES:
        raise UsageError(f"unknown scores {scores!r}; choose logits or probabilities")
    named = [f for f in _split(formats) if f != "all"]
    pairs = plan_exports(fmts, parse_precisions(precisions), named)
    if not pairs:
        raise UsageError(f"no format has {precisions}")
    from ..quant.int8_export import Int8Options, check_options

    int8_options = Int8Options(int8=int8, target=target, max_drop=max_drop, threads=threads, say=say or warn)
    wants_int8 = any(p == "int8" for _, p in pairs)
    if (int8 is not None or max_drop is not None) and not wants_int8:
        raise UsageError("--int8 RECIPE/auto and --max-drop apply to the int8 precision (--int8 or --precision int8)")
    # ORT files are converted from the ONNX ones: same int8 recipes.
    check_options(int8_options, list(dict.fromkeys("onnx" if f == "ort" else f for f, p in pairs if p == "int8")),
                  int8_io)
    if int8_io:
        if "onnx" in fmts or "ort" in fmts:
            raise UsageError("--int8-io is for TFLite only (ONNX and ORT artifacts keep float input and output)")
        if not any(p == "int8" for _, p in pairs):
            raise UsageError("--int8-io needs the int8 precision (--int8 or --precision int8)")
    if calib_method not in CALIB_METHODS:
        raise UsageError(f"unknown calibration method {calib_method!r}; choose from {', '.join(CALIB_METHODS)}")
    if calib_size is not None and calib_size < 1:
        raise UsageError(f"--calib-size must be at least 1, got {calib_size}")
    if tflite_batch is not None and tflite_batch < 1:
        raise UsageError(f"TFLite batch must be at least 1 or dynamic, got {tflite_batch}")

    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise VitedgeError(f"--out {out_dir} is a file, not a folder")
    source = _resolve_source(model, variant, seed)
    targets = {pair: output_path(out_dir, source.stem, *pair) for pair in pairs}
    for (fmt, _), path in targets.items():
        for each in (path, *companion_paths(fmt, path)):
            check_writable(each, force)
    if source.spec.config.channels != 3:
        raise VitedgeError(f"the model takes {source.spec.config.channels}-channel input; export handles RGB (3) models")
    chosen_labels = resolve_labels(source.spec, labels)
    from .tflite_metadata import check_metadata_size, normalization

    check_metadata_size(chosen_labels)
    if "tflite" in fmts and warn is not None and len(normalization(source.spec.preprocessing.to_dict())[0]) > 1:
        warn("this model normalizes each channel differently; the TFLite metadata records it, which the "
             "TFLite Task Library applies, but MediaPipe's ImageClassifier accepts one mean/std for all channels")

    calibration = load_calibration(calib_dir, calib_size, source.spec.config.image_size, source.spec.preprocessing,
                                   seed=calib_seed, progress=progress, warn=warn)
    if wants_int8 and (max_drop is not None or int8_options.auto):
        calibration = _hold_out_validation(calibration, source.spec, int8_options, warn)
    keras_model = source.load()
    source.spec = ModelSpec(source.spec.config, chosen_labels, source.spec.preprocessing, source.spec.info)
    reference = reference_logits(keras_model, calibration.images)
    source_info = dict(source.info)

    results: list[ExportResult] = []
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vitedge-export-") as work, contextlib.ExitStack() as commit:
        workdir = Path(work)
        steps = _progress(pairs, progress)
        state: dict = {}
        for fmt, precision in steps:
            started = time.perf_counter()
            kind = scores_for(fmt, scores)
            convert = {"tflite": _convert_tflite, "onnx": _convert_onnx, "ort": _convert_ort}[fmt]
            writer = convert(keras_model, precision, calibration, workdir, state, int8_options=int8_options,
                             int8_io=int8_io, calib_method=calib_method, tflite_batch=tflite_batch, scores=kind,
                             target=target)
            if getattr(writer, "bound_missed", False):  # kept under a name that says so (issue 7)
                targets[(fmt, precision)] = closest = output_path(out_dir, source.stem, fmt, "int8_closest")
                for each in (closest, *companion_paths(fmt, closest)):
                    check_writable(each, force)
                missed.append(_bound_message(fmt, writer.recipe, closest))
            tmp = commit.enter_context(atomic_output(targets[(fmt, precision)], force=force))
            extras = [commit.enter_context(atomic_output(p, force=force))
                      for p in companion_paths(fmt, targets[(fmt, precision)])]
            meta = artifact_metadata(model_format=fmt, precision=precision, recipe=writer.recipe,
                                     spec=source.spec, io=writer.io, source=source_info, calibration=calibration,
                                     scores=kind)
            writer.write(tmp, meta)
            label = f"{targets[(fmt, precision)].name}"
            figures = verify_artifact(tmp, precision, calibration.images, reference, threads=threads, label=label,
                                      scores=kind)
            figures["images_fingerprint"] = calibration.fingerprint
            meta["verification"] = figures
            writer.write(tmp, meta)
            for extra, data in zip(extras, writer.companions(targets[(fmt, precision)]), strict=True):
                extra.write_bytes(data)
            results.append(ExportResult(path=targets[(fmt, precision)], format=fmt, precision=precision,
                                        size_bytes=tmp.stat().st_size, verification=figures,
                                        recipe=writer.recipe, seconds=round(time.perf_counter() - started, 2)))
        # Leaving the ExitStack renames every temporary file into place (all passed).
    if missed:
        raise VitedgeError("; ".join(missed))
    return results


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


def _bound_message(fmt: str, recipe: dict, kept: Path) -> str:
    from ..quant.int8_export import bound_message

    return bound_message(fmt, recipe, kept)


def _progress(pairs, enabled):
    if not enabled or not sys.stderr.isatty():
        yield from pairs
        return
    import click

    with click.progressbar(pairs, label="exporting", file=click.get_text_stream("stderr"),
                           item_show_func=lambda p: f"{p[0]} {p[1]}" if p else None) as bar:
        yield from bar


class _Writer:
    """Converted model bytes plus how to write them with metadata."""

    def __init__(self, recipe: dict, io: dict, write: Callable[[Path, dict], None],
                 companions: Callable[[Path], list[bytes]] | None = None):
        self.recipe, self.io, self._write = recipe, io, write
        self._companions = companions

    def write(self, path: Path, meta: dict) -> None:
        self._write(path, meta)

    def companions(self, final: Path) -> list[bytes]:
        """Contents of `companion_paths` for the artifact's final path (after the last write)."""
        return self._companions(final) if self._companions else []


def _convert_tflite(keras_model, precision: str, calibration: CalibrationSet, workdir: Path, state: dict,
                    *, int8_io: bool, tflite_batch: int | None, int8_options, scores: str, **_) -> _Writer:
    from .tflite_metadata import with_tflite_metadata

    if "saved_model" not in state:
        # --scores probabilities: the softmax is part of the graph every precision converts.
        traced = tflite_export.with_softmax(keras_model) if scores == "probabilities" else keras_model
        state["saved_model"] = tflite_export.export_saved_model(traced, workdir / "saved_model", tflite_batch)
    images = calibration.images if precision in STATIC_PRECISIONS else None
    met = True
    if precision == "int8" and not int8_io:  # the measured recipes (vitedge.quant, docs/quantization.md)
        from ..quant.int8_export import TfliteBuilder, int8_artifact

        builder = TfliteBuilder(state["saved_model"], calibration.images, workdir, int8_options.target, tflite_batch)
        path, recipe, met = int8_artifact(builder, int8_options)
        flatbuffer = path.read_bytes()
        import tensorflow as tf

        recipe = {"converter": f"tensorflow {tf.__version__} TFLiteConverter.from_saved_model", "batch": tflite_batch,
                  "layernorm": tflite_export.LAYERNORM_FORM, **recipe, "io": "float32"}
    else:
        flatbuffer, recipe = tflite_export.convert(state["saved_model"], precision, images,
                                                   int8_io=int8_io and precision == "int8", batch=tflite_batch)
    io = tflite_export.io_details(flatbuffer)

    def write(path: Path, meta: dict) -> None:  # official TFLite Metadata + labels.txt + vitedge.json
        path.write_bytes(with_tflite_metadata(flatbuffer, meta))

    writer = _Writer(recipe, io, write)
    writer.bound_missed = not met
    return writer


def _onnx_proto(precision: str, calibration: CalibrationSet, workdir: Path, state: dict, keras_model,
                calib_method: str, int8_options):
    """(ModelProto, recipe, bound met) of one ONNX precision, logits out; made once per call
    (ONNX and ORT share it)."""
    import onnx

    key = ("onnx", precision)
    if key in state:
        proto, recipe, met = state[key]
        return _copy_proto(proto), dict(recipe), met
    if "onnx_fp32" not in state:
        from ..quant.onnx_graph import simplify

        state["onnx_fp32_tf2onnx"] = proto = onnx_export.convert_fp32(keras_model)
        # Fused graph (LayerNorm, Gelu, attention, Dense): same math, ~2-5x fewer nodes; fp32 and
        # int8 both start from it, so int8's speed-up is quantization's (docs/quantization.md).
        state["onnx_fp32"], state["onnx_graph"] = simplify(proto)
        state["onnx_fp32_path"] = workdir / "fp32.onnx"
        onnx.save(state["onnx_fp32"], str(state["onnx_fp32_path"]))
    recipe = onnx_export.recipe_fp32()
    graph = {k: v for k, v in state["onnx_graph"].items() if k != "op_types"}
    if precision != "fp16":
        recipe["graph"] = {"rewrite": "vitedge.quant.onnx_graph.simplify", **graph}
    met = True
    if precision == "fp32":
        proto = state["onnx_fp32"]
    elif precision == "fp16":  # from tf2onnx's graph: the fused ONNX Runtime ops have no fp16 CPU kernels
        proto, extra = onnx_export.to_fp16(state["onnx_fp32_tf2onnx"])
        recipe.update(extra)
    elif precision == "dynamic":
        # ONNX Runtime's per-call int8 on the weight MatMuls, one image at a time (quant/onnx_quant.py)
        from ..quant.onnx_quant import quantize

        out = workdir / "dynamic.onnx"
        recipe.update(quantize(state["onnx_fp32_path"], out, "dynamic", int8_options.target))
        proto = onnx.load(str(out))
    elif precision == "int8":  # the measured recipes (vitedge.quant, docs/quantization.md)
        from ..quant.int8_export import OnnxBuilder, int8_artifact

        builder = OnnxBuilder(state["onnx_fp32_path"], calibration.images, workdir, int8_options.target,
                              calib_method)
        out, extra, met = int8_artifact(builder, int8_options)
        recipe.update(extra)
        proto = onnx.load(str(out))
    else:  # pragma: no cover - plan_exports rejects it
        raise VitedgeError(f"{precision} is not available for onnx")
    state[key] = (proto, recipe, met)
    return _copy_proto(proto), dict(recipe), met


def _copy_proto(proto):
    copy = type(proto)()
    copy.CopyFrom(proto)
    return copy


def _onnx_io(proto, recipe: dict, calibration: CalibrationSet) -> dict:
    h, w = calibration.images.shape[1:3]
    return {"input": {"name": onnx_export.INPUT_NAME, "shape": [recipe.get("batch"), int(h), int(w), 3],
                      "dtype": "float32"},
            "output": {"name": proto.graph.output[0].name, "dtype": "float32"}}


def _convert_onnx(keras_model, precision: str, calibration: CalibrationSet, workdir: Path, state: dict,
                  *, calib_method: str, int8_options, scores: str, **_) -> _Writer:
    import onnx

    proto, recipe, met = _onnx_proto(precision, calibration, workdir, state, keras_model, calib_method, int8_options)
    if scores == "probabilities":
        recipe["softmax"] = onnx_export.append_softmax(proto)
    io = _onnx_io(proto, recipe, calibration)

    def write(path: Path, meta: dict) -> None:
        set_onnx_metadata(proto, meta)
        onnx.save(proto, str(path))

    writer = _Writer(recipe, io, write)
    writer.bound_missed = not met
    return writer


def _convert_ort(keras_model, precision: str, calibration: CalibrationSet, workdir: Path, state: dict,
                 *, calib_method: str, int8_options, scores: str, target: str, **_) -> _Writer:
    """ONNX Runtime Mobile: the ONNX artifact of the same precision, converted by ONNX Runtime's
    own tool to the ORT format, with its required-operators config."""
    import onnx

    proto, recipe, met = _onnx_proto(precision, calibration, workdir, state, keras_model, calib_method, int8_options)
    if scores == "probabilities":
        recipe["softmax"] = onnx_export.append_softmax(proto)
    recipe.update(ort_export.recipe(target))
    io = _onnx_io(proto, recipe, calibration)
    done: dict = {}

    def write(path: Path, meta: dict) -> None:
        set_onnx_metadata(proto, meta)  # the ORT format keeps metadata_props (vitedge info reads them)
        folder = workdir / f"ort-{precision}"
        folder.mkdir(exist_ok=True)
        source = folder / f"model_{precision}.onnx"
        onnx.save(proto, str(source))
        ort_file, config = ort_export.convert(source, folder / "converted", target)
        path.write_bytes(ort_file.read_bytes())
        done["config"] = config.read_text()

    def companions(final: Path) -> list[bytes]:
        return [ort_export.config_text(done["config"], final).encode()]

    writer = _Writer(recipe, io, write, companions)
    writer.bound_missed = not met
    return writer


def reference_logits(keras_model, images: np.ndarray) -> np.ndarray:
    """Keras' own logits for `images` (what every artifact is compared with)."""
    return keras_model.predict(images, batch_size=32, verbose=0)
