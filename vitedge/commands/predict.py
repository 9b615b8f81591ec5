"""`vitedge predict`: top-k classes of image files with an exported artifact (LiteRT / ONNX Runtime).

Start-up time counts on a Pi: this module imports only Click at load time; the runtime of the
artifact's format (and nothing of TensorFlow) is imported when the command runs.
"""

import json
import sys

import click

from .. import limits


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(), metavar="IMAGE_OR_DIR...")
@click.option("--model", "-m", "model", type=click.Path(dir_okay=False), default=None,
              help="Exported artifact (.tflite, .onnx or .ort). Default: out/fmnist-vit_int8.tflite.")
@click.option("--top-k", "-k", "k", type=click.IntRange(1, limits.MAX_TOP_K), default=5, show_default=True,
              help="Classes to show per image.")
@click.option("--threads", "-t", type=click.IntRange(1, limits.MAX_THREADS), default=None,
              help="CPU threads for the runtime. Default: every core this process may use.")
@click.option("--batch", "-b", type=click.IntRange(1, limits.MAX_BATCH), default=1, show_default=True,
              help="Images per runtime call (a fixed-batch model runs them in chunks of its size).")
@click.option("--provider", default=None, metavar="NAME",
              help="ONNX Runtime execution provider (cpu, cuda, ...), or for .tflite: "
                   "xnnpack (default), builtin, reference.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image, one per line.")
def predict(images, model, k, threads, batch, provider, as_json):
    """Classify IMAGE files (or every image in a folder) with an exported model.

    Prints a table of the top-k labels with probabilities (softmax of the model's logits,
    unless the artifact says it outputs probabilities). An image that cannot be read gets one
    line on stderr; the others are still predicted, and the exit code is 1 if any failed.
    The model runs in a child process: if the runtime crashes on it, that is one line and
    exit 1 (VITEDGE_IN_PROCESS=1 runs it in this process).

    \b
    Examples:
      vitedge predict shirt.jpg
      vitedge predict photos/ --top-k 3 --json
      vitedge predict a.png b.png --model out/fmnist-vit_fp32.onnx --threads 2 --batch 8
    """
    from ..isolate import run_isolated
    from ..predict import default_model_path

    path = model or default_model_path()
    # The runtime lives in a forked child: a segfault in LiteRT/ONNX Runtime becomes one line.
    return run_isolated(lambda: _predict(path, images, k, threads, batch, provider, as_json), str(path))


def _predict(model, images, k, threads, batch, provider, as_json) -> int:
    from ..predict import expand_inputs, predict_images
    from ..runtime import load_runtime

    runtime = load_runtime(model, threads=threads, provider=provider)
    if runtime.info.warning:
        click.echo(f"vitedge: warning: {runtime.info.warning}", err=True)
    paths = expand_inputs(images)
    rows, failed = [], 0
    show_progress = not as_json and len(paths) > 20 and sys.stderr.isatty()
    with click.progressbar(length=len(paths), label="predicting", file=sys.stderr) if show_progress else _NoBar() as bar:
        for result in predict_images(runtime, paths, k=k, batch=batch):
            bar.update(1)
            if not result.ok:
                failed += 1
                click.echo(f"vitedge: error: {result.error}", err=True)
            if as_json:
                click.echo(json.dumps(result.to_dict()))
            elif result.ok:
                rows.extend([result.image if rank == 1 else "", rank, label, f"{prob:.4f}"]
                            for rank, (_, label, prob) in enumerate(result.top, 1))
    if rows:
        from ..table import format_table

        click.echo(format_table(["image", "rank", "label", "probability"], rows, right=(1, 3)))
    return 1 if failed else 0


class _NoBar:
    """Stands in for click.progressbar when there is nothing worth a bar (or no terminal)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass
