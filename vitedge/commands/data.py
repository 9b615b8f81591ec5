"""`vitedge data`: prepare real data sets on disk (Fashion-MNIST from Debian's package or a verified download)."""

import contextlib
import json
import time

import click

from ..data import fashion_mnist as fm
from ..data import fmnist_files
from ..errors import UsageError


@click.group()
def data():
    """Prepare data sets as ImageFolder trees (DIR/train/<class>/*.png, DIR/test/<class>/*.png).

    \b
    Example:
      vitedge data fashion-mnist --out data/fashion-mnist
    """


@contextlib.contextmanager
def _download_bar(label: str, total: int | None, already: int):
    """A progress bar on stderr for one file; yields the per-chunk callback.

    Only on a terminal: elsewhere click would print the label alone, a stray line before an error."""
    stream = click.get_text_stream("stderr")
    if not stream.isatty():
        yield lambda n: None
        return
    with click.progressbar(length=total, label=f"downloading {label}", file=stream,
                           show_pos=total is None) as bar:
        bar.update(already)
        yield bar.update


@data.command("fashion-mnist")
@click.option("--out", "-o", type=click.Path(file_okay=False),
              help="Output folder (gets train/ and test/). Required unless --download-only.")
@click.option("--source", type=click.Path(file_okay=False), default=None,
              help="Folder with the four IDX files (gzip or raw) to read as they are. Default: Debian's "
                   f"{fmnist_files.DEBIAN_DIR} if installed, else the cache, else a download.")
@click.option("--url", default=None, metavar="URL",
              help="Download the IDX .gz files from this base URL (a mirror), even where Debian's files exist. "
                   f"Default when downloading: {fmnist_files.DEFAULT_URL}")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Cache for downloads. Default: $XDG_CACHE_HOME/vitedge (~/.cache/vitedge).")
@click.option("--download-only", is_flag=True,
              help="Only make sure the verified IDX files are on disk (Debian's or the cache); write no PNGs.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Keep only the first N images of each split (quick trials).")
@click.option("--per-class", type=click.IntRange(min=1), default=None,
              help="Keep only the first N images of each class (e.g. a calibration set).")
@click.option("--split", "split", type=click.Choice(["both", "train", "test"]), default="both", show_default=True,
              help="Which split to write; a single split puts the class folders straight into --out.")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (counts per split and class).")
def fashion_mnist(out, source, url, cache_dir, download_only, limit, per_class, split, force, as_json):
    """Fashion-MNIST (Zalando Research, MIT licence) as PNG files, one folder per class.

    Takes the four IDX files from Debian's package dataset-fashion-mnist when it is installed,
    else downloads them from the data set's published location into the user cache (resumable:
    run the command again after an interruption). Every file is checked against the checksums
    recorded in vitedge before use. Writes 60,000 train and 10,000 test images named
    <split>-<index in the IDX file>.png. The folder appears only when complete.

    \b
    Examples:
      vitedge data fashion-mnist --out data/fashion-mnist
      vitedge data fashion-mnist --download-only
      vitedge data fashion-mnist --out data/fm --url http://my-mirror.example/fashion-mnist/
      vitedge data fashion-mnist --out /tmp/fm-small --limit 500 --force
      vitedge data fashion-mnist --split train --per-class 15 --out calibration
    """
    started = time.perf_counter()

    def progress(items, length):
        with click.progressbar(items, length=length, label="writing PNG files", file=click.get_text_stream("stderr")) as bar:
            yield from bar

    if limit is not None and per_class is not None:
        raise UsageError("--limit and --per-class exclude each other")
    if source is not None and url is not None:
        raise UsageError("--source and --url exclude each other")
    if out is None and not download_only:
        raise UsageError("give --out DIR (or --download-only)")
    splits = ("train", "test") if split == "both" else (split,)
    origin = "given folder"
    if source is None:
        folder, origin = fmnist_files.ensure_files(splits, url=url, cache=cache_dir, progress=_download_bar)
        source = str(folder)
    summary = {"output": out, "source": source, "origin": origin, "classes": list(fm.FOLDER_NAMES)}
    if download_only:
        summary["files"] = [f.name for f in fmnist_files.files_for(splits)]
        if as_json:
            click.echo(json.dumps(summary, indent=2))
        else:
            click.echo(f"Fashion-MNIST IDX files verified in {source} ({origin})")
        return
    counts = fm.write_image_folder(out, source=source, force=force, limit=limit, per_class=per_class,
                                   splits=splits, progress=progress)
    summary.update({"images": {split: sum(c.values()) for split, c in counts.items()}, "per_class": counts,
                    "seconds": round(time.perf_counter() - started, 1)})
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        n = " and ".join(f"{count:,} {name}" for name, count in summary["images"].items())
        click.echo(f"wrote {out}: {n} images in {len(fm.FOLDER_NAMES)} classes ({summary['seconds']} s)")
