"""OpenVINO backend: an IR (`model.xml` + its weights `model.bin`) compiled for the CPU.

The vitedge metadata lives in the IR's own `rt_info` (key "vitedge", a JSON string), so the
device needs only the `openvino` package (`pip install "vitedge[openvino]"`) to read it.
Files from strangers are checked before OpenVINO parses them: the .xml must look like an IR
and stay under a size bound, its .bin must be there, and the metadata string is bounded
before it is decoded. OpenVINO itself refuses weights offsets outside the .bin.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import VitedgeError
from .base import Runtime

METADATA_KEY = "vitedge"  # rt_info entry holding the metadata JSON
WEIGHTS_KEY = "openvino_weights"  # in that metadata: {"bytes", "sha256"} of the .bin exported with it
MAX_XML_BYTES = 256 * 1024 * 1024  # an IR's topology; weights are in the .bin
MAX_METADATA_CHARS = 6_000_000  # the metadata (<= 1 MB of JSON at export) as OpenVINO returns it
_IR_MARK = b"<net "  # the root element of every IR version
_HEAD_BYTES = 4096
_MAX_COMPILED = 4  # batch sizes kept compiled at once
INSTALL_HINT = 'OpenVINO is not installed: pip install "vitedge[openvino]" (or: pip install openvino)'


def weights_path(xml_path: str | os.PathLike) -> Path:
    """model.xml -> model.bin (OpenVINO's own rule for finding the weights)."""
    return Path(xml_path).with_suffix(".bin")


def weights_record(path: str | os.PathLike) -> dict:
    """{"bytes", "sha256"} of a weights file, as export records it in the metadata."""
    from ..fileio import sha256_file

    return {"bytes": Path(path).stat().st_size, "sha256": sha256_file(path)}


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise VitedgeError(INSTALL_HINT) from None
    return openvino


def openvino_version() -> str:
    """The package's release, e.g. '2026.4.1' (openvino.__version__ adds the build)."""
    try:
        from importlib.metadata import version

        return version("openvino")
    except Exception:
        return import_openvino().__version__.split("-")[0]


def openvino_reason(exc: BaseException) -> str:
    """The line of an OpenVINO exception that says what is wrong (its first lines say where)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text[:200]


def check_ir_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """(xml, bin) of an IR after the cheap checks; one clear VitedgeError line otherwise."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_XML_BYTES:
        raise VitedgeError(f"{path}: {size:,} bytes of IR topology is more than vitedge reads "
                           f"({MAX_XML_BYTES:,}); not an image classifier's IR")
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if _IR_MARK not in head:
        raise VitedgeError(f"{path}: not an OpenVINO IR (no <net> element at its start)")
    weights = weights_path(path)
    if not weights.is_file():
        raise VitedgeError(f"{path}: its weights file {weights.name} is missing; "
                           "an OpenVINO IR is the .xml and its .bin, kept side by side")
    if weights.stat().st_size == 0:
        raise VitedgeError(f"{path}: its weights file {weights.name} is empty (0 bytes)")
    return path, weights


def read_ir_model(core, path: str | os.PathLike):
    """An ov.Model of the IR at `path` (not compiled); one clear line if OpenVINO refuses it."""
    xml, weights = check_ir_files(path)
    try:
        return core.read_model(str(xml), str(weights))
    except Exception as exc:
        raise VitedgeError(f"{xml}: OpenVINO cannot read this IR ({openvino_reason(exc)}); "
                           f"is {weights.name} the weights file exported with it?") from None


def metadata_of(model, path: str | os.PathLike) -> dict | None:
    """The vitedge metadata in an ov.Model's rt_info, or None (a foreign IR)."""
    if not model.has_rt_info([METADATA_KEY]):
        return None
    raw = model.get_rt_info([METADATA_KEY])
    try:
        raw = raw.astype(str)
    except Exception:
        raise VitedgeError(f"{path}: its vitedge metadata is not a string") from None
    if len(raw) > MAX_METADATA_CHARS:
        raise VitedgeError(f"{path}: its vitedge metadata is {len(raw):,} characters, more than vitedge reads")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise VitedgeError(f"{path}: its vitedge metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise VitedgeError(f"{path}: its vitedge metadata is not a JSON object")
    return meta


def read_openvino_metadata(path: str | os.PathLike) -> dict | None:
    """The vitedge metadata inside an IR (device side: openvino only, nothing compiled)."""
    ov = import_openvino()
    return metadata_of(read_ir_model(ov.Core(), path), path)


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
