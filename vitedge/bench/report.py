"""What a benchmark prints and saves: the table, the JSON and CSV files, the machine it ran on."""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import io
import json
import os
import platform
from pathlib import Path

from .. import __version__
from ..table import format_table
from .runner import SETTLE_MS, TURN_MS

# The table: (header, key in each JSON row). Every key is in every row of the JSON and CSV too.
COLUMNS = [
    ("artifact", "artifact"), ("runtime", "runtime"), ("precision", "precision"), ("size MB", "size_mb"),
    ("top-1", "top1"), ("Δ top-1 vs fp32", "delta_top1"), ("agreement", "agreement_top1"),
    ("p50 ms", "p50_ms"), ("speed-up", "speedup"), ("p90 ms", "p90_ms"), ("images/s", "images_per_s"), ("peak MB", "peak_rss_mb"),
    ("status", "status"),
]
NUMERIC = {"size_mb", "top1", "delta_top1", "agreement_top1", "p50_ms", "speedup", "p90_ms", "images_per_s", "peak_rss_mb"}
PACKAGES = ("onnxruntime", "ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu", "keras", "numpy", "pillow")
STATUS_WIDTH = 60


def cpu_model() -> str:
    """The CPU's name: /proc/cpuinfo's 'model name' (x86), 'Model' (Raspberry Pi), else platform's guess."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def machine_info(threads_used: int | None = None) -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    memory_mb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = round(int(line.split()[1]) / 1024)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable, "memory_mb": memory_mb,
        "arch": platform.machine(), "os": platform.platform(), "python": platform.python_version(),
        "vitedge": __version__, "packages": versions,
    }


def build_report(result: dict, settings, data_dir: str | None) -> dict:
    data = result["data"]
    return {
        "format": "vitedge-bench", "vitedge_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {"threads": settings.threads, "batch": settings.batch, "warmup": settings.warmup,
                     "runs": settings.runs, "min_time_s": settings.min_time, "rounds": settings.rounds,
                     "interleave_s": settings.interleave, "limit": settings.limit, "provider": settings.provider,
                     "timeout_s": settings.timeout, "data": data_dir},
        "data": {"source": data.source, "labelled": data.labelled, "classes": data.classes,
                 "images": len(data), "found": data.found, "unreadable": len(data.unreadable),
                 "unreadable_files": [{"file": f, "error": e} for f, e in data.unreadable[:100]]},
        "columns": [{"header": h, "key": k} for h, k in table_columns(result["rows"])],
        "devices": result.get("devices") or [],
        "rows": result["rows"],
    }


def remote_rows(rows: list[dict]) -> bool:
    return any(r.get("device", "local") != "local" for r in rows)


def table_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """COLUMNS, with a device column after the artifact when some rows ran on another machine."""
    return [COLUMNS[0], ("device", "device"), *COLUMNS[1:]] if remote_rows(rows) else COLUMNS


def device_summary(device: dict) -> str:
    """CPU, cores, OS, Python and runtime versions of one device, for a footnote."""
    packages = device.get("packages") or {}
    runtimes = ", ".join(f"{k} {packages[k]}" for k in ("onnxruntime", "ai-edge-litert", "tflite-runtime", "openvino")
                         if k in packages)
    parts = [device.get("cpu") or device.get("arch") or "?", f"{device.get('cores') or '?'} cores",
             device.get("os") or "?", f"Python {device.get('python') or '?'}"] + ([runtimes] if runtimes else [])
    return ", ".join(parts)


# ---------------------------------------------------------------------------- the table ---
def _num(value: float, small: str = ".2f", big: str = ".0f", limit: float = 100) -> str:
    return format(value, small if abs(value) < limit else big)


def cell(row: dict, key: str) -> str:
    value = row.get(key)
    if key == "status":
        if row["status"] == "ok":
            return "ok"
        text = f"FAILED {row['error']}"
        return text if len(text) <= STATUS_WIDTH else text[:STATUS_WIDTH - 3] + "..."
    if key == "device":
        return str(value or "local").removeprefix("ssh://")
    if key in ("delta_top1", "agreement_top1", "speedup") and row.get("reference") == row.get("artifact") and value is not None:
        return "ref"
    if value is None:
        return "-"
    if key in ("top1", "agreement_top1"):
        return f"{value:.2f}%"
    if key == "delta_top1":
        return f"{value:+.2f}"
    if key in ("p50_ms", "p90_ms"):
        return _num(value, ".3f" if value < 1 else ".2f", ".1f")
    if key == "speedup":
        return f"{value:.2f}x"
    if key == "images_per_s":
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    if key == "size_mb":
        return _num(value, ".2f" if value >= 0.1 else ".3f", ".0f")
    if key == "peak_rss_mb":
        return f"{value:.0f}"
    return str(value)


def render_table(report: dict) -> str:
    rows = report["rows"]
    columns = table_columns(rows)
    headers = [h for h, _ in columns]
    if any(r["reference"] and r["reference"] != r["artifact"] and _ref_precision(rows, r) != "fp32" for r in rows):
        headers[[k for _, k in columns].index("delta_top1")] = "Δ top-1 vs ref"
    right = [i for i, (_, k) in enumerate(columns) if k in NUMERIC]
    table = format_table(headers, [[cell(r, k) for _, k in columns] for r in rows], right=right)
    return table + "\n" + "\n".join(footnotes(report))


def _ref_precision(rows: list[dict], row: dict) -> str | None:
    return next((r["precision"] for r in rows if r["artifact"] == row["reference"]), None)


def footnotes(report: dict) -> list[str]:
    s, d, rows = report["settings"], report["data"], report["rows"]
    notes = []
    if d["labelled"]:
        notes.append(f"data: {d['images']:,} images of {d['source']} ({len(d['classes'])} classes"
                     + (f", --limit {s['limit']} of {d['found']:,}" if s["limit"] and s["limit"] < d["found"] else "")
                     + ")")
    elif d["source"] == "random":
        notes.append(f"data: {d['images']} seeded random images (no --data: agreement only, no accuracy)")
    else:
        notes.append(f"data: {d['images']:,} unlabelled images of {d['source']} (agreement only)")
    if d["unreadable"]:
        first = report["data"]["unreadable_files"][0]
        notes.append(f"skipped {d['unreadable']} unreadable image(s); first: {first['error']}")
    refs: dict[str, list[str]] = {}
    for r in rows:
        if r["reference"]:
            others = refs.setdefault(r["reference"], [])
            if r["artifact"] != r["reference"]:
                others.append(r["artifact"])
    if len(refs) == 1:
        notes.append(f"agreement (same top-1 class) and Δ top-1 are against {next(iter(refs))}")
    elif refs:
        notes.append("agreement (same top-1 class) and Δ top-1 are against "
                     + "; ".join(f"{ref} for {', '.join(names) or 'itself'}" for ref, names in refs.items()))
    else:
        notes.append("no fp32 artifact in the set: no agreement (use --reference FILE)")
    m = report["machine"]
    notes.append(f"latency: ms per batch of {s['batch']}, {s['threads']} thread(s), {s['warmup']} warm-up + "
                 f"{s['runs']} timed runs" + (f" (or more, to fill {s['min_time_s']:g} s)" if s.get("min_time_s") else "")
                 + (f" in each of {s['rounds']} alternating rounds" if s.get("rounds", 1) > 1 else "")
                 + f"; {m['cpu']}, {m['cores']} cores, Python {m['python']}"
                 + (" (local rows)" if remote_rows(rows) else ""))
    for device in report.get("devices") or []:
        if device.get("device", "local") != "local":
            threads = sorted({r["threads"] for r in rows if r.get("device") == device["device"]})
            notes.append(f"device {device['device'].removeprefix('ssh://')}: {device_summary(device)}"
                         + (f"; {', '.join(map(str, threads))} thread(s)" if threads else ""))
    if any(r.get("interleaved") for r in rows):
        notes.append(f"p50, p90 and speed-up: each reference and its rows timed together in one process for "
                     f"{s['interleave_s']:g} s, in turns of ~{TURN_MS / 1e3:g} s (the first {SETTLE_MS:g} ms untimed); the speed-up is the "
                     "median of the per-turn ratios")
    elif any(r.get("speedup") is not None and r["reference"] != r["artifact"] for r in rows):
        notes.append("speed-up: the reference's p50 over the row's" + (
            ", the median of the per-round ratios (each round times a reference next to its rows)"
            if s.get("rounds", 1) > 1 else " (--interleave 10 gives a ratio robust to a shared machine's drift)"))
    for r in rows:
        if r["status"] != "ok" and len(f"FAILED {r['error']}") > STATUS_WIDTH:
            notes.append(f"{r['artifact']}: {r['error']}")
        for note in r["notes"] if r["status"] == "ok" else []:
            notes.append(f"{r['artifact']}: {note}")
    return notes


# ------------------------------------------------------------------------- JSON and CSV ---
def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"


def to_csv(report: dict) -> str:
    """One line per artifact: every figure, then the machine (repeated, so each line stands alone)."""
    m = report["machine"]
    machine = {"machine_cpu": m["cpu"], "machine_cores": m["cores"], "machine_arch": m["arch"],
               "machine_python": m["python"], "machine_os": m["os"],
               **{f"version_{k}": v for k, v in m["packages"].items()}, "created": report["created"]}
    lines = []
    devices = {d.get("device"): d for d in report.get("devices") or []}
    for r in report["rows"]:
        flat = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items() if k != "notes"}
        flat["notes"] = "; ".join(r["notes"])
        if remote_rows(report["rows"]):  # the machine each row ran on
            dev = devices.get(r.get("device", "local"), {})
            flat.update({"device_cpu": dev.get("cpu"), "device_cores": dev.get("cores"), "device_arch": dev.get("arch"),
                         "device_os": dev.get("os"), "device_python": dev.get("python"),
                         "device_runtimes": json.dumps(dev.get("packages") or {})})
        lines.append({**flat, **machine})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(lines[0]) if lines else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    return buf.getvalue()
