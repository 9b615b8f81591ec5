"""`vitedge export`: a .keras ViT -> TFLite / ONNX artifacts (fp32 ... int8), each verified."""

import json
from pathlib import Path

import click

from .. import limits
from ..calibration import DEFAULT_CALIB_SIZE, DEFAULT_SEED
from ..errors import UsageError, VitedgeError
from ..formats import all_formats
from ..quant.recipes import CALIB_METHODS
from ..quant.recipes import help_text as recipe_help
from ..table import format_table

DEFAULT_MODEL = Path("models/fmnist-vit.keras")
DEFAULT_CALIB = Path("calibration")
PRECISION_CHOICES = ", ".join(dict.fromkeys(p for f in all_formats() for p in f.precisions))
FORMAT_NAMES = "|".join(f.name for f in all_formats())
FORMAT_PRECISIONS = "; ".join(f"{f.name}: {', '.join(f.precisions)}" for f in all_formats())
IN_ALL = ", ".join(f.name for f in all_formats() if f.in_all)


def _warn(message: str) -> None:
    click.echo(f"vitedge: warning: {message}", err=True)


def _say(message: str) -> None:
    click.echo(f"vitedge: {message}", err=True)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def render_results(results) -> str:
    headers = ["artifact", "format", "precision", "size", "top-1 agree", "max |diff|", "mean |diff|", "images"]
    rows = []
    for r in results:
        v = r.verification
        rows.append([str(r.path), r.format, r.precision, _size(r.size_bytes), f"{100 * v['top1_agreement']:.1f}%",
                     f"{v['max_abs_diff']:.2e}", f"{v['mean_abs_diff']:.2e}", v["images"]])
    return format_table(headers, rows, right=range(3, 8))


@click.command()
@click.option("--model", "-m", type=click.Path(dir_okay=False), default=None,
              help=f"vitedge .keras model to export. Default: {DEFAULT_MODEL}.")
@click.option("--variant", default=None, metavar="NAME",
              help="Export a named variant with random weights instead (for speed/size checks).")
@click.option("--format", "-f", "fmt", default="tflite", show_default=True, metavar=f"{FORMAT_NAMES}|all",
              help="Artifact format(s); a comma list also works. ort: ONNX Runtime Mobile, with its "
                   f"required-operators config. all: {IN_ALL}, each with the precisions it has. "
                   f"Precisions per format: {FORMAT_PRECISIONS}.")
@click.option("--precision", "-p", default=None, metavar="LIST",
              help=f"Comma list of {PRECISION_CHOICES}, or all (each format's own: see --format). Default: fp32.")
@click.option("--int8", "int8", is_flag=False, flag_value="default", default=None, metavar="[RECIPE|auto]",
              help="int8 (= --precision int8) with the measured fast recipe for --target; or a recipe by name "
                   f"({recipe_help()}); or auto: the fastest on this machine "
                   "within --max-drop. See docs/quantization.md.")
@click.option("--max-drop", type=float, default=None, metavar="POINTS",
              help="Accuracy control: keep int8 top-1 within POINTS of fp32 on validation images held out of "
                   "--calib (class sub-folders needed), reverting the most harmful layers to float.")
@click.option("--target", type=click.Choice(["x86", "arm64"]), default="x86", show_default=True,
              help="CPU the int8 recipe is chosen for (x86: 7-bit weights against AVX2 saturation).")
@click.option("--int8-io", is_flag=True, help="TFLite int8 with int8 input and output tensors (NNAPI, microcontrollers).")
@click.option("--calib", type=click.Path(), default=None,
              help=f"Folder of calibration images, searched recursively. Default: {DEFAULT_CALIB}/.")
@click.option("--calib-size", type=click.IntRange(1, limits.MAX_CALIB_SIZE), default=None, metavar="N",
              help=f"Images picked (seeded) from --calib; also the images every artifact is verified on. "
                   f"Default: up to {DEFAULT_CALIB_SIZE}.")
@click.option("--calib-seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed of that choice.")
@click.option("--calib-method", type=click.Choice(list(CALIB_METHODS)), default="minmax",
              show_default=True, help="ONNX static int8 range calibration.")
@click.option("--scores", type=click.Choice(["probabilities", "logits"]), default=None,
              help="What the artifact outputs: probabilities (a softmax ends the model) or logits. "
                   "Default: probabilities for tflite and ort (what phone APIs such as MediaPipe report), "
                   "logits for onnx. Recorded in the metadata; predict and bench handle both.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Labels file (one per line) replacing the model's labels in the artifacts; checked against "
                   "the head: same count, non-empty, one line each, unique.")
@click.option("--seed", type=int, default=0, show_default=True, help="Weight seed with --variant.")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False), default="out", show_default=True,
              help=f"Output folder; files are named <model>_<precision>.<{FORMAT_NAMES}>.")
@click.option("--force", is_flag=True, help="Overwrite existing artifacts.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--device", default=None, metavar="ssh://[USER@]HOST[:PORT]",
              help="With --int8 auto: time the candidate recipes on this device over SSH (its int8 kernels are "
                   "what counts); the choice and the device are recorded in the artifact. docs/bench-on-device.md")
@click.option("--device-python", default="python3", show_default=True, metavar="PATH",
              help="The device's Python with vitedge (see vitedge bench --help).")
@click.option("--install", "device_install", is_flag=True,
              help="Install this vitedge version on the device first if it lacks it (as vitedge bench --install).")
@click.option("--accept-new-host-key", is_flag=True, help="Trust an SSH host seen for the first time.")
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), default=None, metavar="FILE",
              help="ssh/scp configuration file instead of ~/.ssh/config.")
@click.option("--remote-dir", default=None, metavar="DIR", help="Work folder on the device (as vitedge bench).")
def export(model, variant, fmt, precision, int8, max_drop, target, int8_io, calib, calib_size, calib_seed,
           calib_method, scores, labels_file, seed, out_dir, force, as_json, device, device_python, device_install,
           accept_new_host_key, ssh_config, remote_dir):
    """Export a ViT to TFLite, ONNX and/or ORT, quantize it, and verify every file against Keras.

    Each artifact is run in its own runtime (LiteRT, ONNX Runtime) on the calibration images;
    the table shows its top-1 agreement with Keras and its score differences (logits, or
    probabilities for files that end in a softmax: --scores). An fp32 artifact more than 1e-4
    away from Keras fails the export. Labels, preprocessing, precision, recipe
    and these figures travel inside each file (see `vitedge info FILE`). TFLite files also carry
    the official TFLite Metadata (normalization, labels.txt) that MediaPipe's ImageClassifier and
    the TFLite Task Library read.

    \b
    Examples:
      vitedge export --format tflite --int8
      vitedge export --model models/fmnist-vit.keras --format all --precision fp32,int8
      vitedge export --format tflite --int8 --int8-io --calib my-images/ --calib-size 100
      vitedge export --format onnx --int8 --calib-method percentile --out out/onnx
      vitedge export --variant vit-ti16 --format all --precision all --calib photos/ --json
      vitedge export --format all --int8 auto --max-drop 0.5        # fastest int8 within 0.5 points
      vitedge export --format tflite --int8 fc --target arm64
      vitedge export --format tflite --int8 auto --device ssh://pi@raspberrypi.local   # timed on the Pi
      vitedge export --format tflite,ort --precision fp32,int8         # phones: MediaPipe, ORT Mobile
      vitedge export --format onnx --scores probabilities --labels names.txt
    """
    from ..export import export_artifacts

    if int8 and precision is not None and "int8" not in [p.strip().lower() for p in precision.split(",")]:
        raise UsageError("--int8 means --precision int8; add int8 to --precision or drop one of them")
    precisions = precision or ("int8" if int8 else "fp32")
    if model is None and variant is None:
        if not DEFAULT_MODEL.exists():
            raise VitedgeError(f"no model given and the default {DEFAULT_MODEL} does not exist; "
                               "pass --model FILE.keras or --variant NAME")
        model = DEFAULT_MODEL
    results = export_artifacts(
        model, variant=variant, formats=fmt, precisions=precisions, out_dir=out_dir,
        calib_dir=calib if calib is not None else DEFAULT_CALIB, calib_size=calib_size, calib_seed=calib_seed,
        calib_method=calib_method, int8_io=int8_io, force=force, seed=seed, progress=True, warn=_warn,
        int8=None if int8 in (None, "default") else int8, target=target, max_drop=max_drop, say=_say,
        scores=scores, labels=labels_file, device=export_device(device, device_python, device_install,
                                                                accept_new_host_key, ssh_config, remote_dir),
    )
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        click.echo(render_results(results))


def export_device(spec, python, install, accept_new_host_key, ssh_config, remote_dir):
    """--device for --int8 auto: an SSH device (started when the candidates are timed), or None."""
    if spec is None:
        return None
    from ..bench.remote import DEFAULT_REMOTE_DIR, SshDevice, SshOptions, parse_device

    target = parse_device(spec)
    if target is None:  # "local": the default
        return None
    return SshDevice(target, SshOptions(config=ssh_config, accept_new_host_key=accept_new_host_key), python,
                     remote_dir or DEFAULT_REMOTE_DIR, keep=False, install=install)
