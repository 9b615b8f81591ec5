"""OpenVINO IR: `model.xml` (topology, metadata) + `model.bin` (weights), run by OpenVINO.

An optional extra: `pip install "vitedge[openvino]"` (openvino; nncf to make int8). The
converter is `vitedge/export/openvino.py` (fp32 from the fused ONNX graph, int8 by NNCF), the
backend `vitedge/runtime/openvino.py` (CPU, latency hint).

Metadata: the IR's own `rt_info`, key "vitedge" (a JSON string), read here with `openvino`
only. Files from strangers are checked before OpenVINO parses them: the .xml must look like
an IR and stay under a size bound, its .bin must be there and not empty, and the metadata
string is bounded before it is decoded; OpenVINO itself refuses weights offsets outside the
.bin. Export records the .bin's size and sha256 in the metadata ("openvino_weights"): the
runtime refuses a .bin of another size, `vitedge info` compares the hash.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import VitedgeError
from ..limits import load_metadata_json
from .base import ArtifactFormat

PRECISIONS = ("fp32", "int8")
WEIGHTS_SUFFIX = ".bin"
METADATA_KEY = "vitedge"  # rt_info entry holding the metadata JSON
WEIGHTS_KEY = "openvino_weights"  # in that metadata: {"bytes", "sha256"} of the .bin exported with it
MAX_XML_BYTES = 256 * 1024 * 1024  # an IR's topology; the weights are in the .bin
MAX_METADATA_CHARS = 6_000_000  # the metadata (<= 1 MB of JSON at export) as OpenVINO returns it
_IR_MARK = b"<net "  # the root element of every IR version
_HEAD_BYTES = 4096
INSTALL_HINT = 'OpenVINO is not installed: pip install "vitedge[openvino]" (or: pip install openvino)'


def weights_path(xml_path: str | os.PathLike) -> Path:
    """model.xml -> model.bin (OpenVINO's own rule for finding the weights)."""
    return Path(xml_path).with_suffix(WEIGHTS_SUFFIX)


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
    return (useful or lines or [type(exc).__name__])[-1][:200]


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
    try:
        raw = model.get_rt_info([METADATA_KEY]).astype(str)
    except Exception:
        raise VitedgeError(f"{path}: its vitedge metadata is not a string") from None
    if len(raw) > MAX_METADATA_CHARS:
        raise VitedgeError(f"{path}: its vitedge metadata is {len(raw):,} characters, more than vitedge reads")
    return load_metadata_json(raw, str(path))


class OpenVinoFormat(ArtifactFormat):
    name = "openvino"
    title = "OpenVINO IR"
    suffixes = (".xml",)
    precisions = PRECISIONS
    default_scores = "logits"  # as the ONNX file it is made from; OpenVINO apps read raw outputs
    runtime_name = "openvino"
    int8_recipes = None  # NNCF's transformer preset, not one of vitedge's measured recipes
    in_all = False  # an optional extra: `--format all` keeps meaning what the core install makes
    extra = "openvino"
    runtime_backend = "vitedge.runtime.openvino:OpenVinoRuntime"
    converter_class = "vitedge.export.openvino:OpenVinoConverter"

    def read_metadata(self, path):
        """Device side: openvino only, nothing compiled."""
        return metadata_of(read_ir_model(import_openvino().Core(), path), path)

    def companion_paths(self, path: Path) -> list[Path]:
        return [weights_path(path)]

    def weights_paths(self, path: Path) -> list[Path]:
        return [weights_path(path)]

    def info_fields(self, path: Path, meta: dict | None) -> dict:
        """The .bin beside the .xml: its size, and whether it is the one exported with it (sha256)."""
        weights = weights_path(path)
        out = {"weights_file": weights.name, "weights_bytes": None, "weights_match": None}
        if weights.is_file():
            out["weights_bytes"] = weights.stat().st_size
            recorded = (meta or {}).get(WEIGHTS_KEY)
            if isinstance(recorded, dict):
                out["weights_match"] = weights_record(weights) == recorded
        return out

    def info_rows(self, info: dict) -> list[tuple[str, str]]:
        if "weights_file" not in info:
            return []
        size, match = info.get("weights_bytes"), info.get("weights_match")
        if size is None:
            return [("weights", f"{info['weights_file']} is missing")]
        check = {True: "sha256 as exported", False: "NOT the weights exported with this .xml",
                 None: "no recorded hash"}[match]
        return [("weights", f"{info['weights_file']} ({size:,} bytes, {check})")]


FORMAT = OpenVinoFormat()
