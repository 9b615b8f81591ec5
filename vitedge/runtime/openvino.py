"""OpenVINO backend: an IR (`model.xml` + its weights `model.bin`) compiled for the CPU.

The device needs only the `openvino` package. The IR's files are checked and its metadata
read by the format plug-in (`vitedge/formats/openvino.py`); this module compiles and runs it:
one stream, the latency hint, INFERENCE_NUM_THREADS threads, f32 inference precision.
"""

from __future__ import annotations

import numpy as np

from ..errors import VitedgeError
from ..formats.openvino import (
    WEIGHTS_KEY,
    import_openvino,
    metadata_of,
    openvino_reason,
    openvino_version,
    read_ir_model,
    weights_path,
)
from ..limits import check_input_shape
from .base import Runtime

_MAX_COMPILED = 4  # batch sizes kept compiled at once


def _shape(partial_shape) -> tuple:
    """A PartialShape as a tuple, None for every dimension that is not fixed."""
    if partial_shape.rank.is_dynamic:
        return ()
    return tuple(d.get_length() if d.is_static else None for d in partial_shape)


def _type_name(element_type) -> str:
    try:
        return element_type.get_type_name()  # 'f32'
    except AttributeError:
        return str(element_type)


class OpenVinoRuntime(Runtime):
    name = "openvino"

    def __init__(self, path, threads=None, provider=None):
        super().__init__(path, None, threads)
        ov = import_openvino()
        self._ov = ov
        self.device = (provider or "CPU").upper()
        if self.device != "CPU":
            raise VitedgeError(f"OpenVINO device {provider!r}: vitedge runs OpenVINO on the CPU only")
        core = ov.Core()
        model = read_ir_model(core, self.path)
        self.metadata = metadata_of(model, self.path)
        self._check_weights_size()
        if len(model.inputs) != 1 or len(model.outputs) < 1:
            raise VitedgeError(f"{self.path}: {len(model.inputs)} inputs; an image classifier has one")
        self._raw_in = _shape(model.inputs[0].get_partial_shape())
        self._raw_out = _shape(model.outputs[0].get_partial_shape())
        in_type = model.inputs[0].get_element_type().get_type_name()
        if in_type not in ("f32", "f16"):
            raise VitedgeError(f"{self.path}: input is {in_type}; vitedge feeds float tensors")
        self._core, self._model = core, model
        check_input_shape(self._raw_in, str(self.path))  # before compiling allocates for it
        self.info  # noqa: B018 - declared sizes and metadata checked before compiling too
        # The latency hint: one stream, every thread on the one request (what predict and bench time).
        # f32 inference precision: OpenVINO's CPU default is bf16 on AMX/AVX512-bf16 chips and f16
        # on ARM, which would make an "fp32" artifact something else than what export verified.
        self._config = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_PRECISION_HINT": "f32"}
        self._compiled: dict[int | None, tuple] = {}  # batch size -> (compiled model, infer request)
        compiled, _ = self._compile_for(1 if self._raw_in and self._raw_in[0] is None else None)
        self.precision_hint = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))

    def _compile_for(self, n: int | None) -> tuple:
        """The model compiled for batches of `n` (None: as the IR declares them).

        vitedge's IRs keep the batch dimension dynamic, as the ONNX files they come from; compiled
        for one fixed batch size, OpenVINO's CPU plugin plans static kernels and memory and runs
        a batch of 1 about twice as fast (measured in docs/openvino.md). A few sizes are kept."""
        if n not in self._compiled:
            model = self._model
            if n is not None:
                model = model.clone()
                shape = model.inputs[0].get_partial_shape()
                shape[0] = n
                model.reshape({model.inputs[0]: shape})
            try:
                compiled = self._core.compile_model(model, "CPU", self._config)
            except Exception as exc:
                raise VitedgeError(f"{self.path}: OpenVINO cannot compile it for the CPU ({openvino_reason(exc)})") from None
            if len(self._compiled) >= _MAX_COMPILED:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[n] = (compiled, compiled.create_infer_request())
        return self._compiled[n]

    def _check_weights_size(self) -> None:
        """A .bin of another size than the one exported with this .xml is another model's
        (cheap; `vitedge info` compares the sha256 too)."""
        recorded = (self.metadata or {}).get(WEIGHTS_KEY)
        if not isinstance(recorded, dict) or not isinstance(recorded.get("bytes"), int):
            return
        actual = weights_path(self.path).stat().st_size
        if actual != recorded["bytes"]:
            raise VitedgeError(f"{self.path}: {weights_path(self.path).name} has {actual:,} bytes, the weights "
                               f"exported with it {recorded['bytes']:,}; keep each .xml with its own .bin")

    @property
    def raw_input_shape(self):
        return self._raw_in

    @property
    def raw_output_shape(self):
        return self._raw_out

    def describe(self):
        return {**super().describe(), "package": "openvino", "version": openvino_version(),
                "device": self.device, "hint": "LATENCY", "inference_precision": self.precision_hint}

    def version(self):
        return f"openvino {openvino_version()}"

    def _run(self, batch):
        dynamic = self._raw_in and self._raw_in[0] is None
        compiled, request = self._compile_for(len(batch) if dynamic else None)
        result = request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(result[compiled.outputs[0]], dtype=np.float32)
