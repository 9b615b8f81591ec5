"""Plan a benchmark, run one worker process per artifact, and turn what they return into rows.

  plan     read each file's metadata (labels, precision, input size, preprocessing); no model loaded
  data     find the images, check their classes against the labels, preprocess them once per input policy
  measure  `python -m vitedge.bench.worker` per artifact, one after another (a timeout or a crash fails that row)
  figures  accuracy from the data set's classes; agreement with the reference; latency statistics
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import numpy as np

from .. import formats
from ..errors import UsageError, VitedgeError
from ..fileio import work_directory
from ..preprocess import Preprocessing
from ..runtime.base import default_threads  # noqa: F401 - the bench command's default
from ..scores import looks_like_probabilities
from . import stats
from .dataset import RANDOM_IMAGES, BenchData, limit_data, prepare_inputs, random_data, scan_data
from .keras_model import NEEDS_TF, keras_metadata, tensorflow_available

WORKER_COMMAND = [sys.executable, "-m", "vitedge.bench.worker"]
# --interleave: each artifact's turn (the machine's speed drifts over seconds), its first part
# untimed (ONNX Runtime's threads spin on for a while after the previous session's run).
TURN_MS, SETTLE_MS = 200.0, 20.0


def bench_suffixes() -> tuple[str, ...]:
    """Every registered artifact suffix, and .keras (the float reference)."""
    return (*formats.suffixes(), ".keras")


def runtime_of_format(name: str) -> str | None:
    if name == "keras":
        return "keras"
    try:
        return formats.get(name).runtime_name
    except VitedgeError:
        return None


@dataclass
class Settings:
    threads: int
    batch: int = 1
    warmup: int = 10
    runs: int = 100
    min_time: float = 0.0  # seconds of timed runs at least, per artifact and round
    interleave: float = 0.0  # seconds: time each reference group together in one process (worker.measure_together)
    rounds: int = 1  # latency rounds; rounds after the first alternate the artifacts' order
    limit: int | None = None
    provider: str | None = None
    timeout: float = 900.0
    progress: bool = True
    threads_auto: bool = False  # --threads not given: a remote device uses its own cores


@dataclass
class Row:
    """One artifact: what the plan knows, then what its worker measured."""

    path: Path
    name: str
    kind: str = "runtime"  # or "keras"
    format: str | None = None
    metadata: dict | None = None
    input_size: tuple[int, int] | None = None
    preprocessing: Preprocessing | None = None
    error: str | None = None  # "stage: message" once the row has failed
    measured: dict = field(default_factory=dict)
    scores: np.ndarray | None = None
    reference: Row | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def precision(self) -> str | None:
        return (self.metadata or {}).get("precision")

    @property
    def labels(self) -> list[str] | None:
        labels = (self.metadata or {}).get("labels")
        return [str(x) for x in labels] if labels else None

    def fail(self, stage: str, message: str) -> None:
        prefix = f"{self.path}: "  # the row already names the file
        self.error = f"{stage}: {message[len(prefix):] if message.startswith(prefix) else message}"


# --------------------------------------------------------------------------------- plan ---
def expand_paths(paths: list[str]) -> list[Path]:
    """Files as given (a folder stands for the artifacts inside it), each once."""
    out, seen = [], set()
    for raw in paths:
        p = Path(raw)
        found = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                       and q.suffix.lower() in bench_suffixes()) if p.is_dir() else [p]
        if p.is_dir() and not found:
            raise VitedgeError(f"{p}: no artifacts inside (expected {', '.join(bench_suffixes())} files)")
        for q in found:
            key = os.path.realpath(q)
            if key not in seen:
                seen.add(key)
                out.append(q)
    return out


def plan_row(path: Path) -> Row:
    row = Row(path, path.name)
    if path.suffix.lower() == ".keras" and not tensorflow_available():
        raise VitedgeError(NEEDS_TF)  # asked for a Keras reference on a device install: say so up front
    try:
        if path.suffix.lower() == ".keras":
            row.kind, row.format, row.metadata = "keras", "keras", keras_metadata(path)
        else:
            row.format = formats.for_path(path).name
            row.metadata = formats.read_metadata(path)
        if row.metadata is not None:
            shape = (row.metadata.get("input") or {}).get("shape") or []
            if len(shape) == 4 and isinstance(shape[1], int) and isinstance(shape[2], int):
                row.input_size = (shape[1], shape[2])
            row.preprocessing = Preprocessing.from_dict(row.metadata.get("preprocessing"))
        else:
            row.preprocessing = Preprocessing()
            row.notes.append("no vitedge metadata: default preprocessing, no labels")
    except (VitedgeError, TypeError, ValueError) as exc:
        row.fail("read", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return row


def unique_names(rows: list[Row]) -> None:
    names = [r.path.name for r in rows]
    for r in rows:
        r.name = r.path.name if names.count(r.path.name) == 1 else str(r.path)


def choose_references(rows: list[Row], reference: Row | None) -> None:
    """--reference, else a .keras model, else each format's own fp32 artifact (or any fp32 one).

    Comparing an int8 file with the fp32 file of the same format isolates what quantization
    cost from what the converter changed.
    """
    usable = [r for r in rows if r.error is None]
    if reference is None:
        reference = next((r for r in usable if r.kind == "keras"), None)
    for r in rows:
        if reference is not None:
            r.reference = reference
            continue
        fp32 = [q for q in usable if q.precision == "fp32"]
        twins = [q for q in fp32 if q.format == r.format]
        siblings = [q for q in twins if source_of(q) == source_of(r)]  # of the same model, if several
        r.reference = (siblings or twins or fp32 or [None])[0]


def source_of(row: Row) -> tuple | None:
    """Which model an artifact was exported from (its metadata), None if it does not say."""
    src = (row.metadata or {}).get("source") or {}
    key = (src.get("model_sha256"), src.get("random_weights_seed"), src.get("variant"))
    return None if key == (None, None, None) else key


# --------------------------------------------------------------------------------- data ---
def _norm(name: str) -> str:
    """Folder names cannot hold '/' and often avoid spaces: "T-shirt/top" matches "T-shirt_top"."""
    return name.replace("/", "_").replace("\\", "_").replace(" ", "_")


def class_targets(classes: list[str], labels: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """For each data class, its index in `labels`; or the classes the labels lack."""
    exact = {name: i for i, name in enumerate(labels)}
    loose = {_norm(name): i for i, name in enumerate(labels)}
    index, missing = [], []
    for c in classes:
        i = exact.get(c, loose.get(_norm(c)))
        (missing.append(c) if i is None else index.append(i))
    return (None, missing) if missing else (np.asarray(index, np.int64), [])


def _names(items: list[str], most: int = 12) -> str:
    shown = ", ".join(items[:most])
    return shown + (f", ... ({len(items)} in all)" if len(items) > most else "")


def check_classes(data: BenchData, rows: list[Row]) -> None:
    """A labelled folder must match the labels of at least one artifact (a clear error otherwise)."""
    labelled = [r for r in rows if r.error is None and r.labels]
    if not data.labelled:
        return
    mismatched = []
    for r in labelled:
        _, missing = class_targets(data.classes, r.labels)
        if missing:
            mismatched.append((r, missing))
            r.notes.append(f"no accuracy: data classes not among its labels: {_names(missing, 6)}")
    if labelled and len(mismatched) == len(labelled):
        r, missing = mismatched[0]
        raise VitedgeError(
            f"{data.source}: class folders do not match the labels of {r.name}: folders not among its labels: "
            f"{_names(missing)}; its labels: {_names(r.labels)}"
        )


# ------------------------------------------------------------------------------ workers ---
def worker_env() -> dict:
    """The environment of a worker process (this vitedge first on its path)."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _last_stderr_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    lines = [ln for ln in lines if not ln.startswith(("INFO:", "WARNING: All log", "I0000", "W0000"))]
    return lines[-1][:200] if lines else ""


def run_worker(job: dict, timeout: float, stderr_path: Path, on_progress=None) -> dict:
    """Run one job in a fresh interpreter on this machine; always returns a result or an error event."""
    return stream_worker(WORKER_COMMAND, worker_env(), job, timeout, stderr_path, on_progress)


def stream_worker(command: list[str], env: dict | None, job: dict, timeout: float, stderr_path: Path,
                  on_progress=None, on_timeout=None, crashed: str = "worker crashed") -> dict:
    """Start `command` (the worker, here or through ssh), send it the job, follow its JSON lines.

    Always returns the worker's result or an error event: a timeout kills the process (and calls
    `on_timeout`, which stops a remote worker too); an exit without a result is a "crash".
    """
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the worker died at once; its exit status says why below
    deadline = time.monotonic() + timeout
    final = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            proc.kill()
            proc.wait()
            if on_timeout is not None:
                on_timeout()
            return {"event": "error", "stage": "timeout", "message": f"no result after {timeout:g} s (killed)"}
        try:
            line = lines.get(timeout=min(remaining, 0.5))
        except queue.Empty:
            continue
        if line is None:
            break
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("event") == "progress":
            if on_progress:
                on_progress(msg["done"])
        else:
            final = msg
    proc.wait()
    if final is not None:
        return final
    code = proc.returncode
    how = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exit code {code}"
    last = _last_stderr_line(stderr_path)
    return {"event": "error", "stage": "crash", "message": f"{crashed} ({how})" + (f": {last}" if last else "")}


def _job(row: Row, settings: Settings) -> dict:
    return {"path": str(row.path), "kind": row.kind, "threads": settings.threads, "provider": settings.provider}


def probe_input_sizes(rows: list[Row], settings: Settings, tmp: Path) -> None:
    """Files without metadata: load them once in a worker (on this machine) to learn their input size."""
    for i, r in enumerate(rows):
        if r.error is not None or r.input_size is not None:
            continue
        reply = run_worker({**_job(r, settings), "probe": True}, settings.timeout, tmp / f"probe{i}.err")
        if reply["event"] == "error":
            r.fail(reply["stage"], reply["message"])
            continue
        _, h, w, _ = reply["input_shape"]
        if h is None or w is None:
            r.fail("read", "no vitedge metadata and a dynamic input size: cannot tell what size to feed it")
        else:
            r.input_size = (h, w)


# -------------------------------------------------------------------------------- bench ---
def _progressbar(enabled: bool, length: int, label: str):
    if not enabled:
        return nullcontext(None)
    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True)


def prepare_all_inputs(data: BenchData, rows: list[Row], settings: Settings, tmp: Path) -> dict:
    """One preprocessed file per (input size, preprocessing); the images unreadable in any are dropped."""
    groups: dict = {}
    for r in rows:
        if r.error is None:
            groups.setdefault((r.input_size, r.preprocessing), []).append(r)
    files, failed = {}, {}
    for n, (size, pre) in enumerate(groups):
        label = f"preprocessing {len(data)} images to {size[0]}x{size[1]}"
        with _progressbar(settings.progress, len(data), label) as bar:
            def progress(items, _length, bar=bar):
                for item in items:
                    if bar is not None:
                        bar.update(1)
                    yield item

            files[(size, pre)], bad = prepare_inputs(data, size, pre, tmp / f"inputs{n}.f32", progress, settings.threads)
        failed.update(dict(bad))
    keep = np.ones(len(data), bool)
    keep[list(failed)] = False
    data.unreadable = [(str(data.files[i]), why) for i, why in sorted(failed.items())]
    if groups and not keep.any():
        raise VitedgeError(f"{data.source}: none of its {len(data)} images could be read "
                           f"(first: {data.unreadable[0][1]})")
    images = [i for i in range(len(data)) if keep[i]]
    data.keep(keep)
    return {key: f.job(images) for key, f in files.items()}


def measure_rows(rows: list[Row], inputs: dict, settings: Settings, tmp: Path, count: int, run=None) -> None:
    """Every row's worker, through `run` (`run_worker` here, or a remote device's `run_worker`)."""
    run = run or run_worker
    # Each reference is timed next to the rows compared with it, in every round: this machine's
    # speed drifts within seconds, and a ratio is only fair when both sides ran close together.
    todo = reference_groups([r for r in rows if r.error is None])
    timing_steps = 1 + settings.warmup + settings.runs
    steps = timing_steps + -(-count // settings.batch)  # the first round also scores every image

    def timed_job(r: Row) -> dict:
        return {**_job(r, settings), "inputs": inputs[(r.input_size, r.preprocessing)], "batch": settings.batch,
                "warmup": settings.warmup, "runs": settings.runs, "min_time_s": settings.min_time}
    label = f"benchmarking {todo[0].name}" if todo else "benchmarking"
    total = (steps + (settings.rounds - 1) * timing_steps) * len(todo)
    with _progressbar(settings.progress, total, label) as bar:
        for i, r in enumerate(todo):
            if bar is not None and i:
                bar.label = f"benchmarking {r.name}"
            seen = 0

            def on_progress(done, bar=bar):
                nonlocal seen
                if bar is not None and done > seen:
                    bar.update(done - seen)
                    seen = done

            job = {**timed_job(r), "scores": str(tmp / f"scores{i}.npy")}
            reply = run(job, settings.timeout, tmp / f"worker{i}.err", on_progress)
            if bar is not None:
                bar.update(steps - seen)
            if reply["event"] == "error":
                r.fail(reply["stage"], reply["message"])
                continue
            r.measured = {k: v for k, v in reply.items() if k != "event"}
            r.measured["round_p50_ms"] = [stats.median(reply["times_ms"])]
            r.scores = np.load(job["scores"])
        if settings.interleave:
            time_together(todo, inputs, settings, tmp, bar, run)
            return
        # --rounds: more timed runs of every artifact, each in a fresh process, in alternating
        # order (B A, A B, ...), so a burst of other work on a shared machine spreads over all
        # rows instead of landing on one; the latency figures pool every round, the speed-up
        # is the median of per-round ratios (stats.paired_speedup).
        for rnd in range(1, settings.rounds):
            order = [r for r in (todo[::-1] if rnd % 2 else todo) if r.error is None]
            for r in order:
                if bar is not None:
                    bar.label = f"timing round {rnd + 1}/{settings.rounds}: {r.name}"
                reply = run({**timed_job(r), "timing_only": True}, settings.timeout, tmp / f"round{rnd}.err")
                if bar is not None:
                    bar.update(timing_steps)
                if reply["event"] == "error":
                    r.fail(reply["stage"], reply["message"])
                    continue
                r.measured["times_ms"] = r.measured["times_ms"] + reply["times_ms"]
                r.measured["round_p50_ms"].append(stats.median(reply["times_ms"]))


def reference_group_lists(rows: list[Row]) -> list[list[Row]]:
    """Each reference with the rows compared with it (reference first), in order of appearance."""
    listed = {id(r) for r in rows}

    def leader(r: Row) -> Row:
        return r.reference if r.reference is not None and id(r.reference) in listed else r

    groups, seen = [], set()
    for r in rows:
        lead = leader(r)
        group = []
        for q in [lead, *(q for q in rows if leader(q) is lead)]:
            if id(q) not in seen:  # by identity: rows hold arrays, == would compare them
                seen.add(id(q))
                group.append(q)
        if group:
            groups.append(group)
    return groups


def reference_groups(rows: list[Row]) -> list[Row]:
    """The rows in timing order: each reference first, then the rows compared with it."""
    return [r for group in reference_group_lists(rows) for r in group]


def time_together(rows: list[Row], inputs: dict, settings: Settings, tmp: Path, bar, run=None) -> None:
    """--interleave: each reference group timed in one worker process, in turns (worker.measure_together).

    The p50s and speed-ups then come from those turns; a group that fails keeps its figures from
    the first pass, with a note.
    """
    for g, group in enumerate(reference_group_lists([r for r in rows if r.error is None and r.kind == "runtime"])):
        if len(group) < 2:
            continue
        if bar is not None:
            bar.label = f"timing together: {', '.join(r.name for r in group)}"
        job = {"together": [{**_job(r, settings), "inputs": inputs[(r.input_size, r.preprocessing)],
                             "batch": settings.batch} for r in group],
               "seconds": settings.interleave, "block_ms": TURN_MS, "settle_ms": SETTLE_MS}
        reply = (run or run_worker)(job, settings.timeout, tmp / f"together{g}.err")
        if reply["event"] == "error":
            for r in group:
                r.notes.append(f"not timed together ({reply['stage']}: {reply['message']}); its latency is its own pass's")
            continue
        for r, got in zip(group, reply["rows"], strict=True):
            r.measured.update(times_ms=got["times_ms"], round_p50_ms=got["turn_p50_ms"], interleaved=True)


def score_kind(row: Row) -> str:
    kind = row.measured.get("output_kind") or "logits"
    if kind not in ("logits", "probabilities"):  # a file that does not say: look at the numbers
        kind = "probabilities" if looks_like_probabilities(row.scores) else "logits"
    return kind


def _deployed_bytes(row: Row) -> int | None:
    """The file plus the weights files beside it (OpenVINO's .bin); None for a Keras folder."""
    if not row.path.is_file():
        return None
    try:
        return formats.get(row.format).deployed_bytes(row.path)
    except (KeyError, VitedgeError):  # keras rows have no artifact format
        return row.path.stat().st_size


def figures(row: Row, data: BenchData, settings: Settings) -> dict:
    """Everything about one row, flat (JSON and CSV alike)."""
    out = {
        "artifact": row.name, "path": str(row.path), "format": row.format,
        "runtime": row.measured.get("runtime") or runtime_of_format(row.format),
        "runtime_version": row.measured.get("runtime_version"), "precision": row.precision,
        "size_bytes": _deployed_bytes(row),
        "input_shape": row.measured.get("input_shape"), "output_kind": row.measured.get("output_kind"),
        "images": len(data) if row.scores is not None else None, "correct": None, "top1": None, "top5": None,
        "reference": row.reference.name if row.reference is not None else None, "delta_top1": None,
        "agreement_top1": None, "mean_abs_diff": None, "max_abs_diff": None, "diff_space": None,
        "load_ms": row.measured.get("load_ms"), "first_inference_ms": row.measured.get("first_inference_ms"),
        "threads": settings.threads, "batch": settings.batch, "model_batch": row.measured.get("model_batch"),
        "warmup": settings.warmup, "runs": settings.runs, "min_time_s": settings.min_time, "rounds": settings.rounds,
        "timed_runs": len(row.measured.get("times_ms", [])),
        "round_p50_ms": row.measured.get("round_p50_ms"), "interleaved": bool(row.measured.get("interleaved")),
        "speedup": None, "speedup_iqr": None,
    }
    out["size_mb"] = out["size_bytes"] / 1e6 if out["size_bytes"] is not None else None
    out.update({k: None for k in ("mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p99_ms", "images_per_s")})
    out.update(stats.latency_summary(row.measured.get("times_ms", []), settings.batch))
    out.update(eval_images_per_s=row.measured.get("eval_images_per_s"), peak_rss_mb=row.measured.get("peak_rss_mb"),
               rss_before_load_mb=row.measured.get("rss_before_load_mb"),
               status="failed" if row.error else "ok", error=row.error, notes=list(row.notes))
    if row.scores is not None and data.labelled and row.labels:
        targets, missing = class_targets(data.classes, row.labels)
        if targets is not None:
            out.update(stats.accuracy(row.scores, targets[data.targets]))
    return out


def add_comparisons(rows: list[Row], records: list[dict]) -> None:
    """Agreement and Δ top-1 against each row's reference."""
    by_row = dict(zip(map(id, rows), records, strict=True))
    for r, rec in zip(rows, records, strict=True):
        ref = r.reference
        if r.scores is None or ref is None:
            continue
        rec.update(stats.paired_speedup(by_row[id(ref)]["round_p50_ms"], rec["round_p50_ms"]))
        if ref.scores is None:
            rec["notes"].append(f"no agreement: the reference {ref.name} failed")
            continue
        if r.labels and ref.labels and r.labels != ref.labels:
            rec["notes"].append(f"no agreement: its labels differ from the reference's ({ref.name})")
            continue
        if r.scores.shape != ref.scores.shape:
            rec["notes"].append(f"no agreement: {r.scores.shape[1]} classes, the reference has {ref.scores.shape[1]}")
            continue
        rec.update(stats.agreement(r.scores, score_kind(r), ref.scores, score_kind(ref)))
        ref_top1 = by_row[id(ref)]["top1"]
        if rec["top1"] is not None and ref_top1 is not None:
            rec["delta_top1"] = rec["top1"] - ref_top1


class LocalDevice:
    """This machine: the worker as a child process (`bench.remote` has the SSH device)."""

    name = "local"
    threads = None  # --threads or every core this process may use

    def start(self, settings: Settings) -> None:
        pass

    def run_worker(self, job: dict, timeout: float, stderr_path: Path, on_progress=None) -> dict:
        return run_worker(job, timeout, stderr_path, on_progress)

    def close(self) -> list[str]:
        return []

    def describe(self) -> dict:
        from .report import machine_info

        return {"device": self.name, **machine_info()}


def clone_rows(rows: list[Row]) -> list[Row]:
    """The planned rows again, for another device (references point into the copy)."""
    copies = [Row(r.path, r.name, r.kind, r.format, r.metadata, r.input_size, r.preprocessing, r.error,
                  notes=list(r.notes)) for r in rows]
    index = {id(r): i for i, r in enumerate(rows)}
    for r, c in zip(rows, copies, strict=True):
        c.reference = copies[index[id(r.reference)]] if r.reference is not None and id(r.reference) in index else None
    return copies


def measure_on_devices(rows: list[Row], devices: list, data: BenchData, inputs: dict, settings: Settings,
                       tmp: Path) -> list[dict]:
    """Every planned row on every device (`bench.remote`): records with a "device" field.

    A device that cannot start (unreachable, no Python, no vitedge) fails its own rows; when no
    device could start at all, that is one error. Each device's work folder is removed after its rows.
    """
    records, started, first_error = [], 0, None
    for n, device in enumerate(devices):
        dev_rows = rows if len(devices) == 1 else clone_rows(rows)
        dev_settings = settings
        work = tmp / f"device{n}"
        work.mkdir()
        try:
            device.start(settings)
            started += 1
            if device.threads is not None:
                dev_settings = replace(settings, threads=device.threads)
            measure_rows(dev_rows, inputs, dev_settings, work, len(data), device.run_worker)
        except VitedgeError as exc:
            first_error = first_error or f"{device.name}: {exc}"
            for r in dev_rows:
                if r.error is None:
                    r.fail("device", str(exc))
        finally:
            for note in device.close():
                click.echo(f"warning: {device.name}: {note}", err=True)
        dev_records = [figures(r, data, dev_settings) for r in dev_rows]
        add_comparisons(dev_rows, dev_records)
        for rec in dev_records:
            rec["device"] = device.name
        records += dev_records
    if not started and first_error is not None:
        raise VitedgeError(first_error)
    return records


def run_bench(paths: list[str], data_dir: str | None, settings: Settings, reference: str | None = None,
              devices: list | None = None) -> dict:
    """Benchmark every artifact on every device (default: this machine); returns {"data", "rows", "devices"}
    (see report.py for the rest)."""
    devices = devices or [LocalDevice()]
    files = expand_paths(paths)
    ref_path = None
    if reference is not None:
        ref_path = Path(reference)
        if not ref_path.is_file():
            raise UsageError(f"--reference {reference}: no such file")
        match = [p for p in files if os.path.realpath(p) == os.path.realpath(ref_path)]
        if match:
            ref_path = match[0]
        else:
            files.append(ref_path)  # benched too: its own row shows what the others are compared with
    rows = [plan_row(p) for p in files]
    unique_names(rows)
    ref_row = next((r for r in rows if r.path == ref_path), None)
    if ref_row is not None and ref_row.error:
        raise VitedgeError(f"--reference {ref_row.name}: {ref_row.error}")
    choose_references(rows, ref_row)

    data = limit_data(scan_data(data_dir), settings.limit) if data_dir else random_data(settings.limit or RANDOM_IMAGES)
    check_classes(data, rows)
    with work_directory("bench") as tmp_name:
        tmp = Path(tmp_name)
        probe_input_sizes(rows, settings, tmp)
        inputs = prepare_all_inputs(data, rows, settings, tmp)
        records = measure_on_devices(rows, devices, data, inputs, settings, tmp)
    return {"data": data, "rows": records, "devices": [d.describe() for d in devices]}
