"""ONNX -> ORT format (ONNX Runtime Mobile) with ONNX Runtime's own conversion tool.

`python -m onnxruntime.tools.convert_onnx_models_to_ort` through its Python API: the model is
loaded into an InferenceSession at the "all" optimization level and saved in the ORT
flatbuffer format ("Fixed" optimization style: the optimized graph is what the file holds),
plus `<name>.required_operators.config`, the operator list a reduced ONNX Runtime build
(`--include_ops_by_config`) needs. The tool leaves out the x86-only NCHWc layout transform
unless the target is amd64, so a file made on x86 runs on ARM phones and boards.

The ORT format keeps the model's metadata_props, so vitedge's metadata travels inside as for
.onnx files (read with `InferenceSession(...).get_modelmeta().custom_metadata_map`).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from ..errors import VitedgeError
from ..formats.base import Converted, Converter
from ..formats.ort import CONFIG_SUFFIX
from ..quiet import captured_stderr, last_error_line

OPTIMIZATION_STYLE = "Fixed"


def target_platform(target: str) -> str | None:
    """vitedge's --target -> the tool's --target_platform ('arm' allows int8 QDQ kernels on ARM;
    None keeps the file portable: no NCHWc, QDQ int8 handled the x86-safe way)."""
    return "arm" if target == "arm64" else None


def recipe(target: str) -> dict:
    import onnxruntime

    return {"ort_format": f"onnxruntime {onnxruntime.__version__} tools.convert_onnx_models_to_ort",
            "optimization_style": OPTIMIZATION_STYLE, "optimization_level": "all",
            "target_platform": target_platform(target) or "any (NCHWc left out)"}


def convert(onnx_path: Path, out_dir: Path, target: str = "x86") -> tuple[Path, Path]:
    """Convert one .onnx file; returns (the .ort file, its required-operators config)."""
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), captured_stderr() as log:
        try:
            convert_onnx_models_to_ort(onnx_path, output_dir=out_dir,
                                       optimization_styles=[OptimizationStyle[OPTIMIZATION_STYLE]],
                                       target_platform=target_platform(target))
        except Exception as exc:
            detail = last_error_line(str(exc)) or last_error_line(chatter.getvalue() + (log[0] if log else ""))
            raise VitedgeError(f"ORT format conversion failed: {detail}") from None
    ort_file = out_dir / (onnx_path.stem + ".ort")
    config = out_dir / (onnx_path.stem + CONFIG_SUFFIX)
    if not ort_file.is_file() or not config.is_file():
        raise VitedgeError(f"ORT format conversion wrote no {ort_file.name} / {config.name}: "
                           f"{last_error_line(chatter.getvalue())}")
    return ort_file, config


def config_text(text: str, final: Path) -> str:
    """The tool's config with its '# - <temporary path>' line naming the delivered file."""
    lines = text.splitlines()
    out, in_models = [], False
    for line in lines:
        if line.startswith("# Generated from model/s:"):
            in_models = True
            out.append(line)
            continue
        if in_models and line.startswith("# - "):
            out.append(f"# - {Path(final).name}")
            continue
        in_models = False
        out.append(line)
    return "\n".join(out) + "\n"


class OrtConverter(Converter):
    """ONNX models of the shared ONNX converter -> .ort files, with their operator configs."""

    def convert(self, precision: str, scores: str) -> Converted:
        import onnx

        from ..artifact import set_onnx_metadata
        from . import isolate
        from . import onnx as onnx_export

        ctx = self.ctx
        onnx_converter = ctx.converter("onnx")
        proto, record, met = onnx_converter.proto(precision)
        if scores == "probabilities":
            record["softmax"] = onnx_export.append_softmax(proto)
        record.update(recipe(ctx.target))
        io = onnx_converter.io(proto, record)
        done: dict[str, str] = {}

        def write(path: Path, meta: dict) -> None:
            set_onnx_metadata(proto, meta)  # the ORT format keeps metadata_props (vitedge info reads them)
            folder = ctx.workdir / f"ort-{precision}"
            folder.mkdir(exist_ok=True)
            source = folder / f"model_{precision}.onnx"
            onnx.save(proto, str(source))
            ort_file, config = isolate.call("vitedge.export.ort:convert", source, folder / "converted", ctx.target,
                                            isolate=ctx.isolate, what=f"ORT {precision} conversion")
            path.write_bytes(ort_file.read_bytes())
            done["config"] = config.read_text()

        def companions(final: Path) -> list[bytes]:
            return [config_text(done["config"], final).encode()]

        return Converted(record, io, write, companions, bound_missed=not met)
