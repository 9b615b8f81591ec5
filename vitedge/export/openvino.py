"""The fused fp32 ONNX graph -> OpenVINO IR (fp32, or int8 by NNCF post-training quantization).

Conversion starts from the same fused fp32 ONNX graph the ONNX format exports (shared within
one export call through `ctx.converter("onnx")`), so both formats run the same graph:
  fp32  `openvino.convert_model` of that ONNX, saved with fp32 weights (compress_to_fp16=False;
        OpenVINO's default would store them as fp16).
  int8  NNCF post-training quantization of the fp32 model on the export's calibration images,
        with OpenVINO's transformer preset (ModelType.TRANSFORMER: mixed preset, SmoothQuant,
        the parts of attention and normalization the preset keeps float stay float).
`--scores probabilities` ends the ONNX graph with a Softmax before either step.
Needs the optional extra: `pip install "vitedge[openvino]"`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import weakref
from pathlib import Path

from ..errors import VitedgeError
from ..formats.base import Converted, Converter, ExportContext
from ..formats.openvino import (
    METADATA_KEY,
    WEIGHTS_KEY,
    import_openvino,
    openvino_reason,
    openvino_version,
    weights_path,
    weights_record,
)
from .onnx import PROBABILITIES_NAME, append_softmax


def _remove_files(paths: set[Path]) -> None:
    for path in list(paths):
        path.unlink(missing_ok=True)
    paths.clear()


class OpenVinoConverter(Converter):
    """ONNX (the ONNX converter's fused fp32 graph) -> OpenVINO models, one per scores kind."""

    def __init__(self, ctx: ExportContext):
        super().__init__(ctx)
        self._fp32: dict[str, object] = {}  # scores -> ov.Model (fp32)
        self._onnx_recipe: dict = {}
        # Weights written beside a temporary .xml for verification, before export renames the
        # artifact; removed once copied to the final .bin, or when the export call is over.
        self._stray: set[Path] = set()
        weakref.finalize(self, _remove_files, self._stray)

    def _fp32_model(self, scores: str):
        if scores not in self._fp32:
            import onnx

            ov = import_openvino()
            proto, recipe, _ = self.ctx.converter("onnx").proto("fp32")
            if scores == "probabilities":
                append_softmax(proto)
            source = self.ctx.workdir / f"openvino-{scores}.onnx"
            onnx.save(proto, str(source))
            try:
                self._fp32[scores] = ov.convert_model(str(source))
            except Exception as exc:
                raise VitedgeError(f"OpenVINO could not convert the ONNX model: {openvino_reason(exc)}") from None
            self._onnx_recipe = recipe
        return self._fp32[scores]

    def _quantize(self, model):
        """NNCF int8 of `model` (an fp32 ov.Model) on the calibration images."""
        try:
            import nncf
        except ImportError:
            raise VitedgeError('int8 OpenVINO IR needs NNCF: pip install "vitedge[openvino]" (or: pip install nncf)') from None
        images = self.ctx.calibration.images
        items = [images[i:i + 1] for i in range(len(images))]
        nncf.set_log_level(logging.WARNING)
        settings = {"model_type": nncf.ModelType.TRANSFORMER, "preset": nncf.QuantizationPreset.MIXED,
                    "target_device": nncf.TargetDevice.CPU, "subset_size": len(items)}
        # NNCF draws progress bars on stdout; stdout is for results (--json), so they go to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                quantized = nncf.quantize(model.clone(), nncf.Dataset(items), **settings)
            except Exception as exc:
                raise VitedgeError(f"NNCF could not quantize the OpenVINO model: {openvino_reason(exc)}") from None
        recipe = {"quantizer": f"nncf {nncf.__version__} quantize (post-training)", "model_type": "transformer",
                  "preset": "mixed", "target_device": "CPU", "calibration_images": len(items),
                  "activations": "int8 per-tensor (asymmetric)", "weights": "int8 per-channel (symmetric)"}
        return quantized, recipe

    def convert(self, precision: str, scores: str) -> Converted:
        if precision not in ("fp32", "int8"):  # pragma: no cover - the plan rejects it
            raise VitedgeError(f"{precision} is not available for openvino")
        ov = import_openvino()
        model = self._fp32_model(scores)
        recipe = {"converter": f"openvino {openvino_version()} convert_model",
                  "source": {"onnx": self._onnx_recipe.get("converter"), "opset": self._onnx_recipe.get("opset"),
                             "graph": "vitedge.export.onnx_graph.simplify (the ONNX format's fp32 graph)"},
                  "weights": "fp32 (compress_to_fp16=False)", "batch": None, "device": "CPU"}
        if scores == "probabilities":
            recipe["softmax"] = {"op": "Softmax(axis=-1)", "output": PROBABILITIES_NAME}
        if precision == "int8":
            model, extra = self._quantize(model)
            recipe.update(extra)
        else:
            model = model.clone()
        h, w = self.ctx.calibration.images.shape[1:3]
        io = {"input": {"name": model.inputs[0].get_any_name(), "shape": [None, int(h), int(w), 3],
                        "dtype": "float32"},
              "output": {"name": model.outputs[0].get_any_name(), "dtype": "float32"}}
        stray = self._stray
        written: dict[str, Path] = {}

        def write(path: Path, meta: dict) -> None:
            # The .bin does not depend on rt_info: save, measure the weights, save again with
            # their size and hash in the metadata (so a runtime tells a swapped .bin from its own).
            written["bin"] = weights_path(path)
            stray.add(written["bin"])
            ov.save_model(model, str(path), compress_to_fp16=False)  # path.xml + path.bin
            weights = weights_record(written["bin"])
            model.set_rt_info(json.dumps({**meta, WEIGHTS_KEY: weights}, sort_keys=True), [METADATA_KEY])
            ov.save_model(model, str(path), compress_to_fp16=False)
            if weights_record(written["bin"]) != weights:
                raise VitedgeError("OpenVINO wrote different weights on a second save; nothing written")

        def companions(final: Path) -> list[bytes]:
            data = written["bin"].read_bytes()
            stray.discard(written["bin"])
            written["bin"].unlink(missing_ok=True)
            return [data]

        return Converted(recipe, io, write, companions)
