"""The artifact-format plug-in interface: everything vitedge knows about one file format.

A format (TFLite, ONNX, ORT, ...) is one module in `vitedge/formats/` that defines a subclass
of `ArtifactFormat` and one instance of it named `FORMAT`. The registry
(`vitedge/formats/__init__.py`) finds it; export, info, verify, predict and bench ask the
registry (`get`, `for_path`, `all_formats`) instead of keeping their own suffix tables.

Members of `ArtifactFormat` (class attributes unless marked as methods):

  name             "tflite": the `--format` value and the metadata's `model_format`.
  title            "TFLite": the name in messages.
  suffixes         (".tflite",): file suffixes (lower case); export writes the first.
  precisions       ("fp32", "fp16", ...): what `--precision` may ask of this format, in order.
  default_scores   "probabilities" (device formats: phone/board APIs report the output as is)
                   or "logits": what the artifact outputs when `--scores` is not given.
  runtime_name     "litert" / "onnxruntime": the backend, as reports name it.
  int8_recipes     the recipe family `--int8 RECIPE` chooses from (`vitedge.quant.recipes`);
                   None when int8 has no recipes here. ORT uses "onnx" (it converts those files).
  int8_io          True if `--int8-io` (int8 input/output tensors) is possible.
  in_all           True if `--format all` includes it.
  extra            the pip extra a workstation needs to convert to it ("export"), for messages.
  convert_memory   peak bytes of its heaviest conversion step per byte of fp32 weights, and
  convert_disk     temporary bytes it writes per weight byte: export's up-front memory and
                   disk checks (`vitedge.export.resources`); formats sharing a converter
                   (ORT uses ONNX's) name it in `converter_family`.
  max_file_bytes   the largest file the format can hold (a FlatBuffer's or a protobuf's 2 GiB),
                   or None: export refuses up front an artifact estimated past it.

  read_metadata(path)         method: the vitedge metadata dict inside the file, or None for a
                              foreign file; a VitedgeError if the file is not of this format.
                              Device side: no TensorFlow.
  companion_paths(path)       method: files written beside the artifact (ORT: its
                              .required_operators.config); export checks and renames them too.
  runtime_backend  "vitedge.runtime.litert:LiteRTRuntime": the `vitedge.runtime.Runtime`
                   subclass that opens the file, as "module:attribute" (imported when used).
  converter_class  "vitedge.export.tflite:TfliteConverter": its `Converter`, the same way
                   ("" for a format vitedge reads but does not write).

  open_runtime(path, threads, provider)
                              method: a `vitedge.runtime.Runtime` for the file; by default
                              `runtime_backend(path, threads=..., provider=...)`.
  info_fields(path, meta)     method: extra fields `vitedge info` shows for this format.
  info_rows(info)             method: extra (label, text) rows of `vitedge info`'s text view.
  export_warnings(spec)       method: warnings for exporting a model (`vitedge.modelfile.ModelSpec`)
                              to this format, e.g. a preprocessing its platform APIs cannot apply.
  converter(ctx)              method (workstation): a `Converter` for one export call; by
                              default `converter_class(ctx)`. Converters import TensorFlow,
                              tf2onnx, ... inside their methods, never at module level.

The two references are strings so that this package (which `vitedge.runtime.load_runtime` and
the export pipeline consult) imports neither runtimes nor converters: the format registry
sits below both in the package layering, and loading it stays cheap on a device.

A `Converter` lives for one export call, so it can keep what several precisions share (a
SavedModel, the fused fp32 ONNX graph) in its own typed attributes. `convert(precision,
scores)` returns a `Converted`: the recipe record, the tensors' names/shapes/dtypes, and
`write(path, metadata)`, which writes the model WITH the metadata inside (the format's
metadata writer); export calls it twice (before and after verification). Another format's
converter is reachable as `ctx.converter("onnx")` (ORT reuses the ONNX models).

Adding a format: a new module here with its `FORMAT` object, and its module name in
`BUILTIN_MODULES` of `vitedge/formats/__init__.py` (or, from another package, an entry point
in the group "vitedge.formats" naming the object); its converter (e.g. a module in
`vitedge/export/`) and its runtime backend (a `Runtime` subclass, e.g. in `vitedge/runtime/`)
are new modules its references name. Nothing else: the commands and the export pipeline read
every member above from the registry.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the name only
    from ..calibration import CalibrationSet

SCORES = ("logits", "probabilities")


def resolve_reference(ref: str):
    """The object a "package.module:attribute" string names (imported now)."""
    module, _, attribute = ref.partition(":")
    value = importlib.import_module(module)
    for part in attribute.split(".") if attribute else ():
        value = getattr(value, part)
    return value


@dataclass
class Converted:
    """One precision of one format, converted and ready to be written."""

    recipe: dict  # how it was made (converter, options, quantizer), stored in the metadata
    io: dict  # {"input": {name, shape, dtype}, "output": {name, dtype}}
    write: Callable[[Path, dict], None]  # write(path, metadata): the file with metadata inside
    companions: Callable[[Path], list[bytes]] | None = None  # contents of companion_paths(final path)
    bound_missed: bool = False  # int8 accuracy control could not meet --max-drop (kept as *_int8_closest)

    def companion_bytes(self, final: Path) -> list[bytes]:
        """Contents of the files written beside the artifact, for its final path."""
        return self.companions(final) if self.companions else []


@dataclass
class ExportContext:
    """What every converter of one export call shares (built by `vitedge.export.pipeline`).

    keras_model: the Keras model (logits out), or None when only child processes load it (from
    `model_file()`, with `isolate`); calibration: the calibration images
    (`calibration.images`, float32 NHWC, preprocessed); workdir: a temporary folder for
    intermediate files; int8: the `vitedge.quant.int8_export.Int8Options` of the call;
    isolate: run heavy steps in child processes (`vitedge.export.isolate`), which then read the
    model from `model_file()`; say: progress lines (or None)."""

    keras_model: Any
    calibration: CalibrationSet
    workdir: Path
    int8: Any = None
    target: str = "x86"
    int8_io: bool = False
    calib_method: str = "minmax"
    tflite_batch: int | None = 1
    threads: int | None = None
    isolate: bool = False
    say: Callable[[str], None] | None = None
    _converters: dict[str, Converter] = field(default_factory=dict, repr=False)
    model_path: Path | None = None  # the Keras model as a .keras file, if saved already

    def model_file(self) -> Path:
        """The Keras model as a .keras file (saved in `workdir` once), for child processes."""
        if self.model_path is None:
            path = self.workdir / "model.keras"
            self.keras_model.save(str(path))
            self.model_path = path
        return self.model_path

    def progress(self, message: str) -> None:
        if self.say is not None:
            self.say(message)

    def converter(self, name: str) -> Converter:
        """The converter of format `name` for this call (made once, then shared)."""
        if name not in self._converters:
            from . import get

            self._converters[name] = get(name).converter(self)
        return self._converters[name]


class Converter:
    """Converts the context's Keras model to one format, precision by precision."""

    def __init__(self, ctx: ExportContext):
        self.ctx = ctx

    def convert(self, precision: str, scores: str) -> Converted:  # pragma: no cover - interface
        raise NotImplementedError


class ArtifactFormat:
    """One artifact format; see the module docstring for each member."""

    name: str = ""
    title: str = ""
    suffixes: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    default_scores: str = "logits"
    runtime_name: str = ""
    int8_recipes: str | None = None
    int8_io: bool = False
    in_all: bool = True
    extra: str = "export"
    convert_memory: float = 8.0
    convert_disk: float = 1.5
    converter_family: str = ""  # "" = its own name
    max_file_bytes: int | None = None
    runtime_backend: str = ""
    converter_class: str = ""

    @property
    def suffix(self) -> str:
        """The suffix export writes."""
        return self.suffixes[0]

    def read_metadata(self, path: str | os.PathLike) -> dict | None:  # pragma: no cover - interface
        raise NotImplementedError

    def companion_paths(self, path: Path) -> list[Path]:
        return []

    def weights_paths(self, path: Path) -> list[Path]:
        """Files beside the artifact that hold part of the model and ship with it (OpenVINO's .bin)."""
        return []

    def deployed_bytes(self, path: str | os.PathLike) -> int:
        """Bytes a device needs for this model: the file plus its weights files (not configs)."""
        path = Path(path)
        return path.stat().st_size + sum(p.stat().st_size for p in self.weights_paths(path) if p.is_file())

    def open_runtime(self, path: str | os.PathLike, threads: int | None = None,
                     provider: str | None = None) -> Any:  # a vitedge.runtime.Runtime
        if not self.runtime_backend:  # pragma: no cover - a plug-in without a backend
            from ..errors import VitedgeError

            raise VitedgeError(f"{path}: vitedge has no runtime for {self.name} files")
        return resolve_reference(self.runtime_backend)(path, threads=threads, provider=provider)

    def info_fields(self, path: Path, meta: dict | None) -> dict:
        return {}

    def info_rows(self, info: dict) -> list[tuple[str, str]]:
        return []

    def export_warnings(self, spec) -> list[str]:
        return []

    def converter(self, ctx: ExportContext) -> Converter:
        if not self.converter_class:  # pragma: no cover - a read-only plug-in
            from ..errors import UsageError

            raise UsageError(f"vitedge cannot convert to {self.name}")
        return resolve_reference(self.converter_class)(ctx)

    def __repr__(self) -> str:
        return f"<format {self.name} {'/'.join(self.suffixes)}>"
