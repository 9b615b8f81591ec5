"""`vitedge train`: train a ViT on an ImageFolder tree and save the best model (labels inside)."""

import json
import os

import click

from ..errors import UsageError, VitedgeError
from ..fileio import check_writable
from ..variants import DEFAULT_VARIANT, VARIANTS, variant_config


@click.command()
@click.option("--data", "-d", required=True, type=click.Path(file_okay=False),
              help="ImageFolder: DIR/<class>/<images>; the class folder names become the labels.")
@click.option("--variant", "-v", default=None, metavar="NAME",
              help=f"Named variant ({', '.join(VARIANTS)}). Default: {DEFAULT_VARIANT}.")
@click.option("--image-size", default=None, metavar="S|HxW", help="Input size (default: the variant's).")
@click.option("--patch-size", type=int, default=None, help="Patch size P.")
@click.option("--width", type=int, default=None, help="Embedding width D.")
@click.option("--depth", type=int, default=None, help="Encoder blocks L.")
@click.option("--heads", type=int, default=None, help="Attention heads.")
@click.option("--mlp-dim", type=int, default=None, help="MLP hidden width.")
@click.option("--dropout", type=float, default=None, help="Dropout (embeddings, attention output, MLP).")
@click.option("--attention-dropout", type=float, default=None, help="Dropout on attention weights.")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True,
              help="Global batch: split evenly over the replicas of --distribute.")
@click.option("--distribute", type=click.Choice(["auto", "none", "mirrored", "multi-worker", "tpu"]), default="auto",
              show_default=True, help="tf.distribute strategy. auto: multi-worker when TF_CONFIG names a cluster, "
              "mirrored with more than one GPU, else none. See docs/distributed-training.md.")
@click.option("--cluster-timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for every worker (or the TPU) to join, and for a collective step.")
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Peak learning rate (AdamW).")
@click.option("--warmup-epochs", type=float, default=0.5, show_default=True, help="Linear warm-up, then cosine decay.")
@click.option("--weight-decay", type=float, default=0.05, show_default=True)
@click.option("--label-smoothing", type=float, default=0.1, show_default=True)
@click.option("--augment", type=click.Choice(["flip-shift", "shift", "flip", "none"]), default="flip-shift",
              show_default=True, help="Random horizontal flip and/or shift (up to --max-shift of the side).")
@click.option("--max-shift", type=float, default=0.04, show_default=True, help="Largest random shift, fraction of the side.")
@click.option("--val-split", type=float, default=0.1, show_default=True,
              help="Fraction of each class held out to pick the best epoch (0: keep the last epoch).")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None, help="Cap the steps per epoch (quick trials).")
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes split, initialisation, shuffling, augmentation.")
@click.option("--test-data", type=click.Path(file_okay=False), default=None,
              help="After training, report the best model's top-1 on this ImageFolder (every image).")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Where per-epoch checkpoints go (default: OUTPUT without .keras, plus .ckpt).")
@click.option("--keep-checkpoint", is_flag=True, help="Keep the checkpoint folder after a successful run.")
@click.option("--init", "init", type=click.Path(dir_okay=False), default=None,
              help="Start from this vitedge .keras (same architecture and labels) instead of random weights.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint (same options).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Output .keras file (best epoch).")
@click.option("--force", is_flag=True, help="Overwrite the output and discard an old checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (history, best epoch, accuracy).")
def train(data, variant, image_size, patch_size, width, depth, heads, mlp_dim, dropout, attention_dropout,
          epochs, batch_size, lr, warmup_epochs, weight_decay, label_smoothing, augment, max_shift, val_split,
          steps_per_epoch, seed, test_data, checkpoint_dir, keep_checkpoint, init, resume, output, force, as_json,
          distribute, cluster_timeout):
    """Train a ViT on a folder of labelled images; save the epoch best on validation.

    Images are decoded and normalized exactly as `predict` will do it (the model's
    preprocessing). AdamW with linear warm-up and cosine decay, label smoothing, a seeded
    stratified validation split. A checkpoint is written after every epoch; if the run stops,
    the same command with --resume continues it. Same seed, same model.

    \b
    Examples:
      vitedge data fashion-mnist --out data/fashion-mnist
      vitedge train --data data/fashion-mnist/train -o fmnist.keras
      vitedge train --data data/fashion-mnist/train --patch-size 4 --width 96 --depth 4 --mlp-dim 192 \\
          --epochs 12 --augment flip --test-data data/fashion-mnist/test -o fmnist-p4.keras
      vitedge train --data data/fashion-mnist/train -o fmnist.keras --resume
      vitedge train --data data/fashion-mnist/train --init fmnist.keras --epochs 5 --lr 3e-4 -o fmnist-ft.keras
      TF_CONFIG='{"cluster": {"worker": ["h1:2222", "h2:2222"]}, "task": {"type": "worker", "index": 0}}' \\
          vitedge train --data /shared/fmnist/train --checkpoint-dir /shared/run.ckpt -o fmnist.keras
    """
    from ..data.imagefolder import scan_image_folder
    from ..train import TrainSettings, default_checkpoint_dir

    if not output.endswith(".keras"):
        raise UsageError(f"--output {output}: must end in .keras")
    check_writable(output, force)
    if resume and force:
        raise UsageError("--resume continues a run and --force discards it; give one of them")
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=warmup_epochs,
                             weight_decay=weight_decay, label_smoothing=label_smoothing, val_split=val_split,
                             augment=augment, max_shift=max_shift, seed=seed, steps_per_epoch=steps_per_epoch)
    folder = scan_image_folder(data)  # bad folders fail here, before anything heavy
    if mlp_dim is None and width is not None and variant is None:
        mlp_dim = 4 * width  # as `vitedge build` does for custom widths
    config = variant_config(
        variant or DEFAULT_VARIANT, image_size=image_size, num_classes=len(folder.classes), patch_size=patch_size,
        width=width, depth=depth, heads=heads, mlp_dim=mlp_dim, dropout=dropout, attention_dropout=attention_dropout,
    )
    if test_data:
        scan_image_folder(test_data, min_classes=1)
    ckpt = checkpoint_dir or default_checkpoint_dir(output)

    from ..distribute import parse_tf_config, start_strategy
    from ..modelfile import save_model
    from ..train import evaluate
    from ..train import train as run_training

    if distribute in ("auto", "multi-worker"):
        parse_tf_config(os.environ.get("TF_CONFIG"))  # a malformed one fails before TensorFlow starts
    dist = start_strategy(distribute, cluster_timeout)
    dist.per_replica_batch(batch_size)  # the global batch must split evenly: fail before loading images
    display = _Display(quiet=False)
    try:
        result = run_training(data, config, settings, ckpt, resume=resume, force=force, on_event=display, init=init,
                              distribution=dist)
    except KeyboardInterrupt:
        display.close()
        raise VitedgeError(f"interrupted; the checkpoint in {ckpt} keeps every finished epoch: "
                           "run the same command with --resume to continue") from None
    display.close()
    if not dist.is_chief:  # the chief writes the model and owns the checkpoint
        summary = {"worker": dist.worker_index, "chief": False, "epochs": settings.epochs,
                   "best_epoch": result.best_epoch, "val_top1": result.best_val_accuracy, "history": result.history}
        click.echo(json.dumps(summary, indent=2) if as_json else
                   f"worker {dist.worker_index} done; the chief writes {output}")
        return
    save_model(result.model, result.spec, output, force=force)
    summary = {"output": output, "variant": config.variant, "params": int(result.model.count_params()),
               "classes": result.spec.labels, "epochs": settings.epochs, "best_epoch": result.best_epoch,
               "val_top1": result.best_val_accuracy, "seconds": round(result.seconds, 1),
               "resumed_from_epoch": result.resumed_from, "history": result.history,
               "distribute": {"mode": dist.mode, "replicas": dist.replicas, "workers": dist.num_workers,
                              "per_replica_batch": dist.per_replica_batch(batch_size)}}
    if test_data:
        test = evaluate(result.model, result.spec, test_data, progress=_bar("evaluating on test data"))
        summary["test"] = {"data": test_data, **test}
    if not keep_checkpoint:
        import shutil

        shutil.rmtree(ckpt, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    val = "" if result.best_val_accuracy is None else f", validation top-1 {100 * result.best_val_accuracy:.2f}%"
    click.echo(f"wrote {output}: {config.variant}, {summary['params']:,} parameters, best epoch "
               f"{result.best_epoch}/{settings.epochs}{val}, {summary['seconds']:.0f} s")
    if test_data:
        t = summary["test"]
        click.echo(f"test top-1 on {test_data}: {100 * t['top1']:.2f}% ({t['correct']}/{t['images']})")


def _bar(label):
    def progress(items, length):
        with click.progressbar(items, length=length, label=label, file=click.get_text_stream("stderr")) as bar:
            yield from bar

    return progress


class _Display:
    """Progress on stderr: a bar while images load and during each epoch, then one line per epoch."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None
        self.done = 0
        # Click draws no bar when stderr is not a terminal (a log file): write a line per 10% instead.
        self.tty = click.get_text_stream("stderr").isatty()
        self.length = 0
        self.label = ""

    def _open(self, length, label):
        self.close()
        self.done, self.length, self.label = 0, length, label
        if self.tty:
            self.bar = click.progressbar(length=length, label=label, file=click.get_text_stream("stderr"))
            self.bar.__enter__()

    def _advance(self, to, note=""):
        if to <= self.done:
            return
        if self.bar is not None:
            self.bar.update(to - self.done)
        elif not self.tty and self.length and (10 * to) // self.length > (10 * self.done) // self.length:
            click.echo(f"  {self.label}: {to}/{self.length}{note}", err=True)
        self.done = to

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __call__(self, kind, info):
        if self.quiet:
            return
        if kind == "loading":
            self._open(info["images"], "decoding images")
        elif kind == "loaded":
            self._advance(info["done"])
        elif kind == "distribute":
            click.echo(info["text"], err=True)
        elif kind == "epoch_start":
            self._open(info["steps"], f"epoch {info['epoch']}/{info['epochs']}")
        elif kind == "batch":
            self._advance(info["step"], f"  loss {info['loss']:.4f}")
        elif kind == "epoch_end":
            self.close()
            val = f"  val loss {info['val_loss']:.4f}  val top-1 {100 * info['val_accuracy']:.2f}%" if "val_loss" in info else ""
            click.echo(f"epoch {info['epoch']}: loss {info['loss']:.4f}  top-1 {100 * info['accuracy']:.2f}%{val}  "
                       f"lr {info['lr']:.2e}  {info['seconds']:.0f} s{'  *best*' if info['best'] else ''}", err=True)
