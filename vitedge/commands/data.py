"""`vitedge data`: prepare real data sets on disk (Fashion-MNIST from Debian's package)."""

import json
import time

import click

from ..data import fashion_mnist as fm
from ..errors import UsageError


@click.group()
def data():
    """Prepare data sets as ImageFolder trees (DIR/train/<class>/*.png, DIR/test/<class>/*.png).

    \b
    Example:
      vitedge data fashion-mnist --out data/fashion-mnist
    """


@data.command("fashion-mnist")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder (gets train/ and test/).")
@click.option("--source", type=click.Path(file_okay=False), default=str(fm.DEBIAN_DIR), show_default=True,
              help="Folder with the four IDX files (gzip or raw), as Debian's dataset-fashion-mnist installs them.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Keep only the first N images of each split (quick trials).")
@click.option("--per-class", type=click.IntRange(min=1), default=None,
              help="Keep only the first N images of each class (e.g. a calibration set).")
@click.option("--split", "split", type=click.Choice(["both", "train", "test"]), default="both", show_default=True,
              help="Which split to write; a single split puts the class folders straight into --out.")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (counts per split and class).")
def fashion_mnist(out, source, limit, per_class, split, force, as_json):
    """Fashion-MNIST (Zalando Research, MIT licence) as PNG files, one folder per class.

    Reads the IDX files of Debian's package dataset-fashion-mnist (install it with
    `sudo apt-get install dataset-fashion-mnist`) and writes 60,000 train and 10,000 test
    images named <split>-<index in the IDX file>.png. The folder appears only when complete.

    \b
    Examples:
      vitedge data fashion-mnist --out data/fashion-mnist
      vitedge data fashion-mnist --out /tmp/fm-small --limit 500 --force
      vitedge data fashion-mnist --split train --per-class 15 --out calibration
    """
    started = time.perf_counter()

    def progress(items, length):
        with click.progressbar(items, length=length, label="writing PNG files", file=click.get_text_stream("stderr")) as bar:
            yield from bar

    if limit is not None and per_class is not None:
        raise UsageError("--limit and --per-class exclude each other")
    splits = ("train", "test") if split == "both" else (split,)
    counts = fm.write_image_folder(out, source=source, force=force, limit=limit, per_class=per_class,
                                   splits=splits, progress=progress)
    summary = {"output": out, "source": source, "classes": list(fm.FOLDER_NAMES),
               "images": {split: sum(c.values()) for split, c in counts.items()}, "per_class": counts,
               "seconds": round(time.perf_counter() - started, 1)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        n = " and ".join(f"{count:,} {name}" for name, count in summary["images"].items())
        click.echo(f"wrote {out}: {n} images in {len(fm.FOLDER_NAMES)} classes ({summary['seconds']} s)")
