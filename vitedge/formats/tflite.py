"""TFLite (LiteRT) flatbuffers: `.tflite`, run by the LiteRT interpreter (XNNPACK).

Metadata: vitedge.json in a stored zip appended to the flatbuffer, beside the official TFLite
Metadata (`labels.txt` and the TFLITE_METADATA buffer) that MediaPipe and the Task Library read
(`vitedge/artifact.py` reads, `vitedge/export/tflite_metadata.py` writes). Conversion:
Keras -> SavedModel (fixed batch, `--scores probabilities` adds the softmax) -> TFLiteConverter
(`vitedge/export/tflite.py`); int8 by the measured recipes (`vitedge/quant`).
"""

from __future__ import annotations

from pathlib import Path

from .base import ArtifactFormat, Converted, Converter, ExportContext

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
STATIC_PRECISIONS = ("int8", "int16x8")  # ranges from the calibration images


class TfliteConverter(Converter):
    """One SavedModel per export call (logits or probabilities out), converted per precision."""

    def __init__(self, ctx: ExportContext):
        super().__init__(ctx)
        self._saved_models: dict[str, Path] = {}

    def saved_model(self, scores: str) -> Path:
        """The SavedModel the converter starts from; `scores="probabilities"` ends it in a softmax."""
        if scores not in self._saved_models:
            from ..export import tflite as tflite_export

            traced = tflite_export.with_softmax(self.ctx.keras_model) if scores == "probabilities" \
                else self.ctx.keras_model
            folder = self.ctx.workdir / ("saved_model" if not self._saved_models else f"saved_model_{scores}")
            self._saved_models[scores] = tflite_export.export_saved_model(traced, folder, self.ctx.tflite_batch)
        return self._saved_models[scores]

    def convert(self, precision: str, scores: str) -> Converted:
        from ..export import tflite as tflite_export
        from ..export.tflite_metadata import with_tflite_metadata

        ctx = self.ctx
        saved_model = self.saved_model(scores)
        met = True
        if precision == "int8" and not ctx.int8_io:  # the measured recipes (vitedge.quant, docs/quantization.md)
            import tensorflow as tf

            from ..quant.int8_export import TfliteBuilder, int8_artifact

            builder = TfliteBuilder(saved_model, ctx.calibration.images, ctx.workdir, ctx.int8.target,
                                    ctx.tflite_batch)
            path, recipe, met = int8_artifact(builder, ctx.int8)
            flatbuffer = path.read_bytes()
            recipe = {"converter": f"tensorflow {tf.__version__} TFLiteConverter.from_saved_model",
                      "batch": ctx.tflite_batch, "layernorm": tflite_export.LAYERNORM_FORM, **recipe, "io": "float32"}
        else:
            images = ctx.calibration.images if precision in STATIC_PRECISIONS else None
            flatbuffer, recipe = tflite_export.convert(saved_model, precision, images,
                                                       int8_io=ctx.int8_io and precision == "int8",
                                                       batch=ctx.tflite_batch)
        io = tflite_export.io_details(flatbuffer)

        def write(path: Path, meta: dict) -> None:  # official TFLite Metadata + labels.txt + vitedge.json
            path.write_bytes(with_tflite_metadata(flatbuffer, meta))

        return Converted(recipe, io, write, bound_missed=not met)


class TfliteFormat(ArtifactFormat):
    name = "tflite"
    suffixes = (".tflite",)
    precisions = PRECISIONS
    default_scores = "probabilities"  # MediaPipe and the Task Library report the output as is
    runtime_name = "litert"
    int8_recipes = "tflite"
    int8_io = True

    def read_metadata(self, path):
        from ..artifact import read_tflite_metadata

        return read_tflite_metadata(path)

    def open_runtime(self, path, threads=None, provider=None):
        from ..runtime.litert import LiteRTRuntime

        return LiteRTRuntime(path, threads=threads, provider=provider)

    def info_fields(self, path: Path, meta: dict | None) -> dict:
        """The official TFLite Metadata too (a foreign file's, a MediaPipe model's say)."""
        from ..artifact import official_summary, read_tflite_official_metadata
        from ..errors import VitedgeError

        out: dict = {}
        try:
            official = read_tflite_official_metadata(path)
        except VitedgeError as exc:
            official, out["tflite_metadata_error"] = None, str(exc)
        if meta is not None or official is not None:
            out["tflite_metadata"] = official_summary(official) if official else None
        return out

    def info_rows(self, info: dict) -> list[tuple[str, str]]:
        from ..artifact import official_rows

        return official_rows(info)

    def converter(self, ctx: ExportContext) -> Converter:
        return TfliteConverter(ctx)


FORMAT = TfliteFormat()
