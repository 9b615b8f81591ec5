"""`vitedge doctor`: what this device would run vitedge with (the logic is vitedge/doctor.py)."""

import json

import click

from .. import limits


@click.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--threads", "-t", type=click.IntRange(1, limits.MAX_THREADS), default=None,
              help="Threads for the trial load of MODEL (default: the runtime's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def doctor(model, threads, as_json):
    """Python, vitedge, the runtimes found (LiteRT, tflite_runtime, tf.lite, ONNX Runtime and its
    execution providers, OpenVINO) with versions and XNNPACK, the CPU (model, cores, usable
    cores, int8/fp16 instruction sets), memory, and which int8 recipe suits this CPU.

    With MODEL (a .tflite, .onnx or .ort artifact): its precision and recipe, whether that
    recipe suits this CPU, and a real load in its runtime. TensorFlow is never imported.

    \b
    Examples:
      vitedge doctor
      vitedge doctor out/fmnist-vit_int8.tflite
      vitedge doctor out/fmnist-vit_int8.onnx --json
    """
    from ..doctor import render, report

    rep = report(model, threads)
    if as_json:
        click.echo(json.dumps(rep, indent=2, sort_keys=False))
    else:
        click.echo(render(rep))
