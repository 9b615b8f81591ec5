"""`vitedge profile`: where an artifact's time goes per operator type, and which layers lose
the most to quantization."""

import json
import math
from dataclasses import asdict
from pathlib import Path

import click

from .. import limits
from ..errors import UsageError, VitedgeError
from ..table import format_table


def _progress(items):
    import sys

    if not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(items, label="timing each op", file=click.get_text_stream("stderr")) as bar:
        yield from bar


def _render_ops(report: dict, rows: list[dict]) -> str:
    tflite = report["runtime"] == "litert"
    headers = ["op type", "computes", "count", "ms", "share"] + (["XNNPACK"] if tflite else [])
    table = []
    for r in rows:
        row = [r["op_type"], r["compute"], r["count"], f"{r['ms']:.4f}", f"{100 * r['share']:.1f}%"]
        if tflite:
            row.append(f"{r['xnnpack']}/{r['count']}")
        table.append(row)
    head = (f"{report['path']}: {report['runtime']} ({report['provider']}), {report['threads']} threads, batch 1; "
            f"whole model p50 {report['whole_ms']:.3f} ms, per-op sum {report['ops_ms']:.3f} ms")
    if tflite:
        head += (f" (each op timed alone, {1e3 * report['invoke_overhead_ms']:.1f} us invoke overhead taken off); "
                 f"XNNPACK partitions in the whole model: {report['xnnpack_partitions']}")
    else:
        head += " (ONNX Runtime profiler, after its graph fusions)"
    return head + "\n" + format_table(headers, table, right=range(2, 6))


def _layer_label(name: str) -> str:
    """TFLite fuses names ("a/norm/mul;b/qkv/Tensordot;b/qkv/BiasAdd"): show the matrix layer's part."""
    parts = name.split(";")
    for key in ("Tensordot/MatMul", "/MatMul", "convolution", "Tensordot"):
        for part in parts:
            if key in part and "ReadVariableOp" not in part:
                return part[-70:]
    return parts[0][-70:]


def _render_errors(err: dict) -> str:
    rows = [[_layer_label(e["name"]), e["op_type"], f"{e['error']:.4f}", f"{e['added']:+.4f}"] for e in err["worst"]]
    head = (f"quantization error vs {err['reference']} on {err['images']} images: {err['int8_layers']} int8 layers, "
            f"{err['float_layers']} float; error = RMS(int8 - fp32) / RMS(fp32) of the layer output, "
            f"added = error minus its input's; worst first:")
    return head + "\n" + format_table(["layer", "op", "error", "added"], rows, right=(2, 3))


@click.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--reference", "reference", type=click.Path(dir_okay=False), default=None,
              help="fp32 artifact of the same model and format for the error report. "
                   "Default: <stem>_fp32.<ext> beside ARTIFACT, if it exists.")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Images for the error report (a folder, searched recursively). Default: seeded noise.")
@click.option("--images", "count", type=click.IntRange(1, limits.MAX_CALIB_SIZE), default=32, show_default=True,
              help="How many images the error report uses.")
@click.option("--top", type=click.IntRange(1), default=5, show_default=True, help="Worst layers listed.")
@click.option("--threads", type=click.IntRange(1, limits.MAX_THREADS), default=2, show_default=True, help="Runtime threads.")
@click.option("--runs", type=click.IntRange(3, limits.MAX_RUNS), default=50, show_default=True, help="Timed runs per op / model.")
@click.option("--no-errors", is_flag=True, help="Timing only (no per-layer error report).")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def profile(artifact, reference, data, count, top, threads, runs, no_errors, as_json):
    """Per-op-type time of a .tflite or .onnx artifact, and its worst-quantized layers.

    Time: LiteRT has no op profiler in Python, so each operator of a .tflite file is cut
    out into a model of its own and timed with XNNPACK (which ops XNNPACK takes, and whether
    each computes int8, int8 with per-call activation quantization, or float, comes with it);
    .onnx files use ONNX Runtime's profiler after its graph fusions. Batch 1.

    Error: with the fp32 artifact of the same model (--reference, or <stem>_fp32.<ext>
    beside it), both run on the same images and every quantized layer's output is compared:
    the layers that add the most error come first (what `export --max-drop` reverts first).

    \b
    Examples:
      vitedge profile out/fmnist-vit_int8.tflite
      vitedge profile out/fmnist-vit_int8.onnx --data calibration/ --top 10
      vitedge profile out/fmnist-vit_fp32.tflite --no-errors --json
    """
    from ..profile import error_report, find_fp32_twin, op_table, profile_images, time_profile
    from ..runtime.base import check_model_path

    path = check_model_path(artifact)
    if path.suffix.lower() not in (".tflite", ".onnx"):
        raise VitedgeError(f"{path}: profile reads .tflite and .onnx files")
    if reference is not None:
        reference = check_model_path(reference)
        if reference.suffix.lower() != path.suffix.lower():
            raise UsageError(f"--reference must be the same format as {path.name} ({path.suffix})")
    report = time_profile(path, threads=threads, runs=runs, progress=None if as_json else _progress)
    rows = op_table(report)
    errors = None
    note = None
    if not no_errors:
        twin = reference or find_fp32_twin(path)
        if twin is None:
            note = (f"no error report: no fp32 twin of {path.name} found (pass --reference FP32_ARTIFACT)")
        elif Path(twin).resolve() == path.resolve():
            note = "no error report: this is the fp32 artifact itself"
        else:
            images = profile_images(path, data, count)
            errors = error_report(path, twin, images, top=top, threads=threads)
    if as_json:
        out = {k: v for k, v in report.items() if k != "ops"}
        out["ops"] = [asdict(o) | {"ms": None if math.isnan(o.ms) else o.ms} for o in report["ops"]]
        out["op_types"] = rows
        out["errors"] = errors
        if note:
            out["note"] = note
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(_render_ops(report, rows))
    if errors is not None:
        click.echo("")
        click.echo(_render_errors(errors))
    elif note:
        click.echo(f"vitedge: {note}", err=True)
