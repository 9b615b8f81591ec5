"""Train a vitedge ViT on an ImageFolder tree. Needs TensorFlow/Keras (the export extra).

The pixels are decoded once, through the runtime's own preprocessing (`load_pixels`), and kept
in memory as uint8; tf.data normalizes them with the model's `Preprocessing` exactly like
`preprocess_image` does (a test checks equality), so the model trains on what it will see.
Augmentation (numpy, per epoch) only moves pixels (flip, shift), so it cannot change that.

Determinism: one seed fixes the validation split, weight initialisation, shuffling and
augmentation; every random draw of epoch e is derived from (seed, e), so a run resumed from
the checkpoint after epoch e continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .data.imagefolder import ImageFolder, load_images, scan_image_folder
from .errors import VitedgeError
from .fileio import atomic_output
from .modelfile import ModelSpec
from .preprocess import Preprocessing, normalize_pixels
from .variants import ViTConfig

AUGMENTATIONS = ("flip-shift", "shift", "flip", "none")
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainSettings:
    """Everything besides the architecture and the data that fixes a training run."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3  # peak learning rate, reached after the warm-up
    warmup_epochs: float = 0.5
    min_lr_ratio: float = 0.01  # the cosine decays to lr * this
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    val_split: float = 0.1
    augment: str = "flip-shift"
    max_shift: float = 0.04  # random translation, as a fraction of the image side (1 px at 28)
    seed: int = 0
    steps_per_epoch: int | None = None  # None: one pass over the training images

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise VitedgeError("--epochs must be at least 1")
        if self.batch_size < 1:
            raise VitedgeError("--batch-size must be at least 1")
        if not self.lr > 0:
            raise VitedgeError("--lr must be positive")
        if not 0.0 <= self.val_split < 1.0:
            raise VitedgeError("--val-split must be in [0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise VitedgeError("--label-smoothing must be in [0, 1)")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise VitedgeError("--weight-decay and --warmup-epochs must not be negative")
        if self.augment not in AUGMENTATIONS:
            raise VitedgeError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}")
        if not 0.0 <= self.max_shift < 0.5:
            raise VitedgeError("--max-shift must be in [0, 0.5)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# data


def split_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split: (train indices, validation indices), both sorted.

    Each class gives round(n * fraction) images to validation (at least one when fraction > 0,
    and never all of them).
    """
    rng = np.random.default_rng([seed, 0x5EED])
    train, val = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = 0 if fraction == 0 else min(len(members) - 1, max(1, round(len(members) * fraction)))
        picked = rng.permutation(members)
        val.extend(picked[:k])
        train.extend(picked[k:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))


def tf_normalize(pixels, pre: Preprocessing):
    """uint8 RGB -> float32, the same operations in the same order as `normalize_pixels`."""
    import tensorflow as tf

    x = tf.cast(pixels, tf.float32) * tf.constant(1.0 / 255.0, tf.float32)
    return (x - tf.constant(pre.mean, tf.float32)) / tf.constant(pre.std, tf.float32)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The random stream of one epoch: depends on (seed, epoch) only, so a resumed run draws the same."""
    return np.random.default_rng([seed, epoch, 0xE90C])


def augment(pixels: np.ndarray, rng: np.random.Generator, settings: TrainSettings,
            fill: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Random horizontal flip and/or shift of uint8 images (N, H, W, 3), vectorized over the batch.

    Both only move pixels: the shifted-in border is the preprocessing's background colour, as
    the runtime's "pad" resize would fill it, so the normalization stays exactly the runtime's.
    """
    n, h, w, _ = pixels.shape
    out = pixels
    if settings.augment in ("flip-shift", "flip"):
        flip = rng.random(n) < 0.5
        out = out.copy()
        out[flip] = out[flip, :, ::-1]
    if settings.augment in ("flip-shift", "shift"):
        dy, dx = round(h * settings.max_shift), round(w * settings.max_shift)
        if dy or dx:
            padded = np.empty((n, h + 2 * dy, w + 2 * dx, 3), dtype=np.uint8)
            padded[...] = np.asarray(fill, dtype=np.uint8)
            padded[:, dy:dy + h, dx:dx + w] = out
            top = rng.integers(0, 2 * dy + 1, n)
            left = rng.integers(0, 2 * dx + 1, n)
            rows = (top[:, None] + np.arange(h))[:, :, None]
            cols = (left[:, None] + np.arange(w))[:, None, :]
            out = padded[np.arange(n)[:, None, None], rows, cols]
    return out


def make_dataset(pixels: np.ndarray, labels: np.ndarray, num_classes: int, pre: Preprocessing,
                 batch_size: int, settings: TrainSettings | None = None, epoch: int = 0):
    """tf.data pipeline over in-memory uint8 images: batches normalized like `preprocess_image`.

    With `settings` it is epoch `epoch` of training: the images shuffled and augmented in numpy
    (seeded by (seed, epoch); vectorized, so cheap next to the training step) and equal-sized
    batches. Without, an evaluation pipeline: same order, no augmentation. The decoded images
    are the cache (decoding happened once, in `load_images`); batches are prefetched.
    """
    labels = labels.astype(np.int32)
    drop = False
    if settings is not None:
        pixels, labels = epoch_order(pixels, labels, pre, settings, epoch)
        drop = len(pixels) >= batch_size  # equal-sized training steps
    return _batched(pixels, labels, num_classes, pre, batch_size, drop)


def epoch_order(pixels: np.ndarray, labels: np.ndarray, pre: Preprocessing, settings: TrainSettings,
                epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The training images of epoch `epoch` in the order they are fed, augmented: seeded by (seed, epoch)."""
    rng = epoch_rng(settings.seed, epoch)
    order = rng.permutation(len(pixels))
    pixels, labels = pixels[order], labels[order]
    if settings.augment != "none":
        pixels = augment(pixels, rng, settings, pre.background)
    return pixels, labels


def _batched(pixels, labels, num_classes: int, pre: Preprocessing, batch_size: int, drop: bool):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((pixels, labels.astype(np.int32))).batch(batch_size, drop_remainder=drop)
    ds = ds.map(lambda x, y: (tf_normalize(x, pre), tf.one_hot(y, num_classes)), num_parallel_calls=1)
    return ds.prefetch(tf.data.AUTOTUNE)


def shard_rows(steps: int, global_batch: int, worker: int, local_replicas: int, per_replica: int) -> np.ndarray:
    """Row indices (into one epoch's ordered images) that `worker` feeds, in feeding order.

    Global step s uses rows s*B .. s*B+B-1, exactly the batch one process would use; replica g
    (worker w's local replica r is g = w*local_replicas + r) takes its slice g*b .. g*b+b-1. So
    over all workers every row of the epoch is fed once, and none is skipped or read twice.
    """
    first = worker * local_replicas * per_replica
    span = local_replicas * per_replica
    return (np.arange(steps)[:, None] * global_batch + first + np.arange(span)[None, :]).reshape(-1)


def make_distributed_dataset(pixels: np.ndarray, labels: np.ndarray, num_classes: int, pre: Preprocessing,
                             settings: TrainSettings, epoch: int, steps: int, dist):
    """Epoch `epoch` of training for a strategy: this worker's share of each global batch.

    Every worker computes the same seeded order and augmentation (cheap numpy on in-memory
    images) and keeps only its rows (`shard_rows`): sharding by data, decided here rather than by
    tf.data's auto-sharding, so the union of the replicas' batches is the single-process batch.
    """
    b = dist.per_replica_batch(settings.batch_size)
    pixels, labels = epoch_order(pixels, labels.astype(np.int32), pre, settings, epoch)

    def per_worker(context):
        rows = shard_rows(steps, settings.batch_size, context.input_pipeline_id, dist.local_replicas, b)
        return _batched(pixels[rows], labels[rows], num_classes, pre, b, True)

    return dist.strategy.distribute_datasets_from_function(per_worker)


# ---------------------------------------------------------------------------------------------
# model and optimizer


def _decay_excluded(variable) -> bool:
    # No weight decay on biases, LayerNorm scales/offsets, the class token and position embeddings.
    return variable.name in ("bias", "gamma", "beta", "token", "embedding")


def compile_for_training(model, settings: TrainSettings, steps_per_epoch: int):
    """AdamW, linear warm-up then cosine decay, label-smoothed cross-entropy on logits."""
    import keras

    total = max(1, settings.epochs * steps_per_epoch)
    warmup = min(total - 1, round(settings.warmup_epochs * steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else settings.lr, decay_steps=max(1, total - warmup),
        alpha=settings.min_lr_ratio, warmup_target=settings.lr if warmup else None, warmup_steps=warmup,
    )
    # No gradient clipping: with clipnorm=1 the same recipe learned markedly slower on Fashion-MNIST.
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=settings.weight_decay)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if _decay_excluded(v)])
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=settings.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    optimizer.build(model.trainable_variables)
    return schedule


def set_determinism(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# ---------------------------------------------------------------------------------------------
# checkpoints: <dir>/state.json, last.npz (weights + optimizer), best.npz (weights)


def default_checkpoint_dir(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name.removesuffix(".keras") + ".ckpt")


def _save_npz(path: Path, arrays: dict) -> None:
    with atomic_output(path, force=True, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def save_checkpoint(folder: Path, model, state: dict, best_improved: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    if best_improved:
        _save_npz(folder / "best.npz", weights)
    optimizer = {f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)}
    _save_npz(folder / "last.npz", {**weights, **optimizer})
    with atomic_output(folder / "state.json", force=True) as tmp:  # written last: it commits the epoch
        tmp.write_text(json.dumps(state, indent=1))


def _load_npz(path: Path, prefix: str) -> list[np.ndarray]:
    with np.load(path) as z:
        keys = sorted((k for k in z.files if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))
        return [z[k] for k in keys]


def load_checkpoint_state(folder: Path) -> dict:
    path = folder / "state.json"
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise VitedgeError(f"no checkpoint to resume in {folder} (no state.json)") from None
    except (OSError, ValueError) as exc:
        raise VitedgeError(f"{path}: unreadable checkpoint state ({exc})") from None
    if state.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise VitedgeError(f"{path}: checkpoint written by another vitedge version; start over with --force")
    return state


def restore_checkpoint(folder: Path, model) -> None:
    weights = _load_npz(folder / "last.npz", "w")
    slots = _load_npz(folder / "last.npz", "o")
    model.set_weights(weights)
    variables = model.optimizer.variables
    if len(slots) != len(variables):
        raise VitedgeError(f"{folder}: checkpoint optimizer state does not match this model")
    for var, value in zip(variables, slots, strict=True):
        var.assign(value)


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class TrainResult:
    model: object
    spec: ModelSpec
    history: list[dict]
    best_epoch: int
    best_val_accuracy: float | None
    seconds: float
    resumed_from: int = 0


def _resume_key(config: ViTConfig, settings: TrainSettings, folder: ImageFolder, pre: Preprocessing,
                init_sha256: str | None = None) -> dict:
    return {"config": config.to_dict(), "settings": {**settings.to_dict(), "init_sha256": init_sha256},
            "classes": folder.classes, "counts": folder.counts(), "preprocessing": pre.to_dict()}


def check_init(init: str | os.PathLike, config: ViTConfig, classes: list[str], pre: Preprocessing) -> str:
    """`init` (a vitedge .keras) can start this run: same architecture, labels and preprocessing.
    Returns its SHA-256 (part of the run's identity for --resume)."""
    from .fileio import sha256_file
    from .modelfile import read_spec

    spec = read_spec(init)
    theirs, ours = spec.config.to_dict(), config.to_dict()
    diffs = [f"{k} {theirs.get(k)!r} (init) vs {ours.get(k)!r}" for k in sorted(set(ours) | set(theirs))
             if k not in ("variant", "dropout", "attention_dropout") and theirs.get(k) != ours.get(k)]
    if diffs:
        raise VitedgeError(f"--init {init}: another architecture ({'; '.join(diffs[:3])})")
    if spec.labels != list(classes):
        raise VitedgeError(f"--init {init}: its labels differ from the data folder's classes")
    if spec.preprocessing != pre:
        raise VitedgeError(f"--init {init}: it was trained with other preprocessing")
    return sha256_file(init)


def check_resume(state: dict, key: dict) -> None:
    """A checkpoint continues only the run it belongs to: same data, architecture and settings."""
    old = state.get("key", {})
    diffs = []
    for section in ("config", "settings", "preprocessing"):
        a, b = old.get(section, {}), key[section]
        diffs += [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if old.get("classes") != key["classes"] or old.get("counts") != key["counts"]:
        diffs.append("the data folder's classes or image counts")
    if diffs:
        raise VitedgeError(f"the checkpoint belongs to another run ({'; '.join(diffs[:4])}); "
                           "use the same options, or --force to start over")


def train(
    data: str | os.PathLike,
    config: ViTConfig,
    settings: TrainSettings,
    checkpoint_dir: str | os.PathLike,
    pre: Preprocessing | None = None,
    resume: bool = False,
    force: bool = False,
    on_event: Callable[[str, dict], None] | None = None,
    init: str | os.PathLike | None = None,
    distribution=None,
) -> TrainResult:
    """Train `config` on the ImageFolder `data`; returns the best model (on validation) and its spec.

    `init`: a vitedge .keras of the same architecture and labels to start from (fine-tuning,
    e.g. more epochs at a lower learning rate) instead of random weights.

    `config.num_classes` must equal the folder's class count. `on_event(kind, info)` receives
    "distribute", "loading", "epoch_start", "batch", "epoch_end" events for progress display.

    `distribution`: a started `vitedge.distribute.Distribution` (default: no strategy). The
    batch size is global; only the chief writes checkpoints, and with several workers
    `--resume` reads the chief's checkpoint folder, so it must be shared. The other workers
    return `model=None` (the chief's model is the result).
    """
    from .distribute import Distribution

    dist = distribution or Distribution("none", None)
    distributed = dist.strategy is not None and dist.mode != "none"
    pre = pre or Preprocessing()
    emit = on_event or (lambda kind, info: None)
    started = time.perf_counter()
    folder = scan_image_folder(data)
    if config.num_classes != len(folder.classes):
        raise VitedgeError(f"the model has {config.num_classes} classes, {data} has {len(folder.classes)}")
    ckpt = Path(checkpoint_dir)
    init_sha256 = check_init(init, config, folder.classes, pre) if init else None
    key = _resume_key(config, settings, folder, pre, init_sha256)
    state = None
    if resume:
        state = load_checkpoint_state(ckpt)
        check_resume(state, key)
    elif not dist.is_chief:
        pass  # the chief alone owns the checkpoint folder
    elif (ckpt / "state.json").exists() and not force:
        raise VitedgeError(f"{ckpt} holds the checkpoint of an unfinished run; add --resume to continue it, "
                           "or --force to start over")
    elif ckpt.exists() and force:
        shutil.rmtree(ckpt)
    if distributed:
        emit("distribute", {"text": dist.describe(settings.batch_size), "replicas": dist.replicas,
                            "per_replica_batch": dist.per_replica_batch(settings.batch_size)})

    train_idx, val_idx = split_validation(folder.labels, settings.val_split, settings.seed)
    size = config.image_size
    emit("loading", {"images": len(folder)})
    pixels = load_images(folder, size, pre, progress=lambda items, n: _counting(items, n, emit))
    x_train, y_train = pixels[train_idx], folder.labels[train_idx]
    x_val, y_val = pixels[val_idx], folder.labels[val_idx]
    del pixels

    if distributed and len(x_train) < settings.batch_size:
        raise VitedgeError(f"{len(x_train)} training images are fewer than the global --batch-size "
                           f"{settings.batch_size}; a distributed run needs at least one full batch")
    set_determinism(settings.seed)
    from .vit import build_vit

    init_weights = None
    if init:
        from .modelfile import load_model

        init_weights = load_model(init)[0].get_weights()
    full_steps = len(x_train) // settings.batch_size if len(x_train) >= settings.batch_size else 1
    steps = min(full_steps, settings.steps_per_epoch) if settings.steps_per_epoch else full_steps
    # Variables (model, optimizer slots, metrics) live where the strategy puts them: create
    # them in its scope. Steps are global, so the LR schedule counts global steps as before.
    import keras

    with _scope(dist):
        model = build_vit(config, seed=settings.seed)
        if init_weights is not None:
            model.set_weights(init_weights)
        compile_for_training(model, settings, steps)
        history: list[dict] = []
        best_epoch, best_val = 0, None
        first_epoch = 0
        if dist.mode == "multi-worker":
            # Keras 3.15's first fit reduces a data batch to learn shapes (`_maybe_symbolic_build`),
            # which MultiWorkerMirrored refuses for a per-replica batch. Without a strategy of its
            # own the model takes the one in scope (fit runs inside it) and builds when traced.
            model._distribute_strategy = None
            # It also reduces each step's scalar metrics with `reduce("MEAN", axis=0)`, which
            # needs an axis: hand them over as shape (1,) (the mean over replicas is the same).
            step = model.train_step
            model.train_step = lambda data: {k: keras.ops.reshape(v, (1,)) for k, v in step(data).items()}
        if state is not None:
            restore_checkpoint(ckpt, model)
            history = state["history"]
            best_epoch, best_val = state["best_epoch"], state["best_val_accuracy"]
            first_epoch = state["epochs_done"]
    val_ds = None
    if len(x_val) and not distributed:
        val_ds = make_dataset(x_val, y_val, config.num_classes, pre, 256).cache()

    class _Batches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            emit("batch", {"step": batch + 1, "steps": steps, "loss": float((logs or {}).get("loss", math.nan))})

    for epoch in range(first_epoch, settings.epochs):
        t0 = time.perf_counter()
        emit("epoch_start", {"epoch": epoch + 1, "epochs": settings.epochs, "steps": steps})
        if distributed:
            train_ds = make_distributed_dataset(x_train, y_train, config.num_classes, pre, settings, epoch, steps, dist)
            fit = _fit_in_cluster(dist, epoch, model, train_ds, epochs=epoch + 1, initial_epoch=epoch,
                                  steps_per_epoch=steps, verbose=0, callbacks=[_Batches()])
        else:
            train_ds = make_dataset(x_train, y_train, config.num_classes, pre, settings.batch_size, settings, epoch)
            fit = model.fit(train_ds.take(steps), epochs=epoch + 1, initial_epoch=epoch, verbose=0,
                            callbacks=[_Batches()])
        row = {"epoch": epoch + 1, "loss": float(fit.history["loss"][-1]), "accuracy": float(fit.history["accuracy"][-1]),
               "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))}
        if val_ds is not None:
            val = model.evaluate(val_ds, verbose=0, return_dict=True)
            row.update(val_loss=float(val["loss"]), val_accuracy=float(val["accuracy"]))
        elif len(x_val):  # every worker validates on all of it, locally: the same weights give the same choice
            row.update(local_validation(model, x_val, y_val, config.num_classes, pre, settings))
        improved = not len(x_val) or best_val is None or row["val_accuracy"] > best_val
        if improved:
            best_epoch, best_val = epoch + 1, row.get("val_accuracy")
        row.update(seconds=round(time.perf_counter() - t0, 1), best=improved)
        history.append(row)
        state = {"checkpoint_version": CHECKPOINT_VERSION, "key": key, "epochs_done": epoch + 1,
                 "history": history, "best_epoch": best_epoch, "best_val_accuracy": best_val}
        if dist.is_chief:
            save_checkpoint(ckpt, model, state, improved)
        emit("epoch_end", row)

    if not dist.is_chief:
        return TrainResult(None, None, history, best_epoch, best_val, time.perf_counter() - started, first_epoch)
    # The shipped model: the best epoch's weights in a fresh model (no optimizer state inside,
    # no strategy: the same kind of file whatever trained it).
    best = build_vit(config)
    best.set_weights(_load_npz(ckpt / "best.npz", "w"))
    spec = ModelSpec(config, folder.classes, pre, {"training": {
        "data": str(Path(data)), "images": {"train": len(x_train), "val": len(x_val)},
        "best_epoch": best_epoch, "val_accuracy": best_val, "settings": settings.to_dict(),
        "init": None if init is None else {"file": Path(init).name, "sha256": init_sha256},
        "vitedge_version": __version__}})
    return TrainResult(best, spec, history, best_epoch, best_val, time.perf_counter() - started, first_epoch)


def _scope(dist):
    import contextlib

    return dist.strategy.scope() if dist.strategy is not None else contextlib.nullcontext()


def _fit_in_cluster(dist, epoch: int, model, dataset, **fit_args):
    """Run one epoch's fit in the strategy's scope; a lost worker becomes one clear error (the
    checkpoint is intact)."""
    import tensorflow as tf

    try:
        with dist.strategy.scope():
            return model.fit(dataset, **fit_args)
    except tf.errors.OpError as exc:
        if dist.num_workers < 2:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VitedgeError(f"lost the cluster during epoch {epoch + 1} ({type(exc).__name__}: {first[:160]}); "
                           "the checkpoint keeps every finished epoch: restart every worker with --resume") from None


def local_validation(model, pixels: np.ndarray, labels: np.ndarray, num_classes: int, pre: Preprocessing,
                     settings: TrainSettings, batch_size: int = 256) -> dict:
    """Validation loss (the training loss: label-smoothed) and top-1, computed in this process alone."""
    import keras

    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=settings.label_smoothing,
                                                reduction="sum")
    total, correct = 0.0, 0
    for start in range(0, len(pixels), batch_size):
        x = normalize_pixels(pixels[start:start + batch_size], pre)
        y = labels[start:start + batch_size]
        logits = np.asarray(model(x, training=False))
        total += float(loss(np.eye(num_classes, dtype=np.float32)[y], logits))
        correct += int((logits.argmax(-1) == y).sum())
    return {"val_loss": total / len(pixels), "val_accuracy": correct / len(pixels)}


def _counting(items, total, emit):
    for i, item in enumerate(items, 1):
        if i % 256 == 0 or i == total:
            emit("loaded", {"done": i, "images": total})
        yield item


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate(model, spec: ModelSpec, data: str | os.PathLike, limit: int | None = None,
             batch_size: int = 256, progress: Callable | None = None) -> dict:
    """Top-1 accuracy of a Keras model on an ImageFolder, through `preprocess_image`'s exact path.

    The folder's class names must be among the model's labels. `limit` keeps the first N images
    in order of file name across all classes (a fixed subset; for `vitedge data fashion-mnist`
    folders, the first N images of the IDX file).
    """
    folder = scan_image_folder(data, min_classes=1)
    unknown = [c for c in folder.classes if c not in spec.labels]
    if unknown:
        raise VitedgeError(f"{data}: classes not among the model's labels: {', '.join(unknown[:5])}")
    if limit is not None:
        folder = folder.subset(first_by_name(folder, limit))
    target = np.asarray([spec.labels.index(folder.classes[i]) for i in folder.labels])
    pixels = load_images(folder, spec.config.image_size, spec.preprocessing, progress=progress)
    predictions = predict_top1(model, pixels, spec.preprocessing, batch_size)
    correct = int((predictions == target).sum())
    return {"images": len(target), "correct": correct, "top1": correct / max(1, len(target))}


def predict_top1(model, pixels: np.ndarray, pre: Preprocessing, batch_size: int = 256) -> np.ndarray:
    """Arg-max class of uint8 images, normalized by numpy's `normalize_pixels` (the runtime's)."""
    out = []
    for start in range(0, len(pixels), batch_size):
        x = normalize_pixels(pixels[start:start + batch_size], pre)
        out.append(np.argmax(np.asarray(model(x, training=False)), axis=-1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def first_by_name(folder: ImageFolder, n: int) -> np.ndarray:
    """Indices of the first n images by file name (ties by path), in that order."""
    order = sorted(range(len(folder)), key=lambda i: (folder.files[i].name, str(folder.files[i])))
    return np.asarray(order[:n], dtype=np.int64)
