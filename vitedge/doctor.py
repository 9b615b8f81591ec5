"""What this machine would run vitedge with: Python, runtimes, CPU features, memory, and which
int8 recipe suits an artifact here. Device path: never imports TensorFlow (its presence is
read from package metadata) and reads the CPU from /proc/cpuinfo or the platform module.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from . import __version__, formats
from .errors import VitedgeError
from .quant import recipes

# CPU flags that decide how fast int8 and fp16 run (x86: /proc/cpuinfo "flags"; ARM: "Features").
X86_FLAGS = {
    "avx2": "AVX2 (int8 and fp32 SIMD, 256-bit)",
    "fma": "FMA",
    "f16c": "F16C (fp16 <-> fp32 conversion)",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI (int8 dot products)",
    "avx_vnni": "AVX-VNNI (int8 dot products, 256-bit)",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_fp16": "AVX-512 FP16 arithmetic",
    "amx_int8": "AMX int8 tiles",
}
ARM_FLAGS = {
    "asimd": "NEON (Advanced SIMD)",
    "asimddp": "dot product (SDOT/UDOT, int8)",
    "i8mm": "int8 matrix multiply (SMMLA)",
    "fphp": "fp16 scalar arithmetic",
    "asimdhp": "fp16 NEON arithmetic",
    "bf16": "BF16",
    "sve": "SVE",
}
# ARM "CPU part" numbers (implementer 0x41, Arm Ltd) of the cores vitedge users meet on boards.
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}
VNNI = ("avx512_vnni", "avx_vnni")


def _version(*packages: str) -> str | None:
    for package in packages:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return None


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# ------------------------------------------------------------------------------ CPU ----
def parse_cpuinfo(text: str) -> dict:
    """Model name and feature flags from /proc/cpuinfo text (x86 or ARM layout)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:  # the first processor's entry stands for all
            fields[key] = value.strip()
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    model = fields.get("model name")
    if not model and fields.get("cpu implementer") == "0x41":
        model = ARM_PARTS.get(fields.get("cpu part", ""), f"Arm part {fields.get('cpu part', '?')}")
    board = fields.get("model")  # Raspberry Pi kernels: "Raspberry Pi 4 Model B Rev 1.4"
    if board and not board.isdigit():
        model = f"{model} ({board})" if model else board
    return {"model": model, "flags": flags}


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("aarch64", "arm64") else "x86" if machine in ("x86_64", "amd64", "i686") else machine
    try:
        parsed = parse_cpuinfo(Path(cpuinfo_path).read_text(errors="replace"))
    except OSError:  # macOS, Windows: no /proc
        parsed = {"model": None, "flags": set()}
    model = parsed["model"] or platform.processor() or machine
    known = X86_FLAGS if arch == "x86" else ARM_FLAGS if arch == "arm64" else {}
    flags = {name: name in parsed["flags"] for name in known}
    if arch == "arm64" and not parsed["flags"] and sys.platform == "darwin":
        flags = dict.fromkeys(known, True)  # every Apple silicon core has these (and no /proc)
        flags["sve"] = False
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"arch": arch, "machine": machine, "model": model, "cores": os.cpu_count(),
            "usable_cores": usable, "cgroup_cpu_limit": _cgroup_cpu_limit(), "flags": flags}


def _cgroup_cpu_limit() -> float | None:
    """CPUs a container may use (cgroup v2 cpu.max), None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else round(int(quota) / int(period), 2)


def memory_info(meminfo_path: str = "/proc/meminfo") -> dict:
    out: dict = {"total_mib": None, "available_mib": None}
    try:
        for line in Path(meminfo_path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                out["total_mib" if key == "MemTotal" else "available_mib"] = int(value.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    if out["total_mib"] is None:
        try:
            out["total_mib"] = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
        except (ValueError, OSError, AttributeError):
            pass
    return out


# -------------------------------------------------------------------------- runtimes ----
def runtimes_info() -> list[dict]:
    """Every runtime vitedge can use that is installed, in the order vitedge picks them."""
    found = []
    if _has_module("ai_edge_litert"):
        found.append(_litert("ai_edge_litert", "ai-edge-litert"))
    if _has_module("tflite_runtime"):
        found.append(_litert("tflite_runtime", "tflite-runtime"))
    tf_version = _version("tensorflow", "tensorflow-cpu", "tensorflow-aarch64")
    if tf_version and _has_module("tensorflow"):
        # Not imported (seconds, GBs): tf.lite is vitedge's last-resort TFLite interpreter.
        found.append({"name": "tf.lite", "package": "tensorflow", "version": tf_version, "formats": ["tflite"],
                      "used": not found, "xnnpack": "default delegate"})
    if _has_module("onnxruntime"):
        found.append(_onnxruntime())
    if _has_module("openvino"):
        found.append({"name": "openvino", "package": "openvino", "version": _version("openvino"),
                      "formats": [], "used": False, "note": "present; vitedge does not run artifacts on it"})
    return found


def _litert(module: str, package: str) -> dict:
    entry = {"name": module, "package": package, "version": _version(package), "formats": ["tflite"],
             "used": module == "ai_edge_litert" or not _has_module("ai_edge_litert")}
    try:
        mod = importlib.import_module(f"{module}.interpreter")
        resolver = getattr(mod, "OpResolverType", None)
        # XNNPACK is compiled into the interpreter as the BUILTIN resolver's default delegate.
        entry["xnnpack"] = "default delegate" if resolver is not None and hasattr(resolver, "BUILTIN") else "unknown"
    except Exception as exc:  # a broken wheel (wrong architecture, missing library) is worth reporting
        entry["error"] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        entry["used"] = False
    return entry


def _onnxruntime() -> dict:
    entry = {"name": "onnxruntime", "package": "onnxruntime", "version": _version(
        "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"), "formats": ["onnx", "ort"],
        "used": True}
    try:
        import onnxruntime as ort

        entry["version"] = ort.__version__
        entry["providers"] = list(ort.get_available_providers())
        entry["device"] = ort.get_device()
        entry["xnnpack"] = "XnnpackExecutionProvider" in entry["providers"]
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        entry["used"] = False
    return entry


# --------------------------------------------------------------------------- recipes ----
def recommend(fmt: str, cpu: dict) -> dict:
    """The int8 recipe for `fmt` (tflite, onnx, ort) on this CPU, and why."""
    fmt = formats.get(fmt).int8_recipes or fmt  # .ort files are made from the ONNX family's files
    target = cpu["arch"] if cpu["arch"] in recipes.TARGETS else "x86"
    flags = cpu["flags"]
    name = recipes.DEFAULTS[target][fmt]
    why = [f"vitedge's default for {fmt} on {target} (docs/quantization.md)"]
    vnni = any(flags.get(f) for f in VNNI)
    if target == "x86" and recipes.slower_than_fp32(target, fmt, name):
        if vnni:
            why.append("this CPU has VNNI (int8 dot products), which the slower-than-fp32 measurement lacked")
        else:
            name = "dynamic"
            why = ["no VNNI here: static QDQ ran slower than fp32 on such a CPU; ONNX Runtime's per-call int8 "
                   "(--precision dynamic) was faster (docs/quantization.md)"]
    if target == "arm64":
        if flags.get("i8mm"):
            why.append("i8mm: int8 matrix-multiply instructions, the fastest int8 kernels")
        elif flags.get("asimddp"):
            why.append("dot product (asimddp): int8 kernels use SDOT")
        else:
            why.append("no dot-product instructions (e.g. a Pi 4's Cortex-A72): int8 runs on plain NEON, "
                       "smaller gains; measure with --int8 auto")
    fp16 = flags.get("asimdhp") or flags.get("avx512_fp16")
    return {"format": fmt, "target": target, "recipe": name, "export": _export_command(fmt, name, target),
            "why": why, "fp16_arithmetic": bool(fp16)}


def _export_command(fmt: str, name: str, target: str) -> str:
    if name == "dynamic":
        return f"vitedge export --format {fmt} --precision dynamic"
    return f"vitedge export --format {fmt} --int8 {name}" + (" --target arm64" if target == "arm64" else "")


def artifact_fit(path: str | os.PathLike, cpu: dict, threads: int | None = None) -> dict:
    """The artifact's precision and recipe, the one suggested here, and a real load in its runtime."""
    from .runtime import load_runtime

    fmt = formats.for_path(path).name
    meta = formats.read_metadata(path) or {}
    recipe = meta.get("recipe") or {}
    out = {"file": str(path), "format": fmt, "precision": meta.get("precision"),
           "recipe": recipe.get("recipe"), "exported_for": recipe.get("target"),
           "suggested": recommend(fmt, cpu)}
    if out["precision"] == "int8":
        out["fits"] = out["recipe"] == out["suggested"]["recipe"]
    try:
        rt = load_runtime(path, threads=threads)
    except VitedgeError as exc:
        out["loads"] = False
        out["load_error"] = str(exc)
        return out
    described = rt.describe()
    out["loads"] = True
    out["runtime"] = rt.version()
    for key in ("xnnpack_partitions", "providers", "provider"):
        if key in described:
            out[key] = described[key]
    return out


def report(model: str | os.PathLike | None = None, threads: int | None = None) -> dict:
    cpu = cpu_info()
    out = {
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "vitedge": __version__,
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "cpu": cpu,
        "memory": memory_info(),
        "runtimes": runtimes_info(),
        "int8_recipes": {fmt: recommend(fmt, cpu) for fmt in recipes.families()},
    }
    if model is not None:
        out["artifact"] = artifact_fit(model, cpu, threads)
    out["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    return out


def render(rep: dict) -> str:
    cpu, mem = rep["cpu"], rep["memory"]
    lines = [f"python     {rep['python']['version']} ({rep['python']['implementation']}, {rep['python']['executable']})",
             f"vitedge    {rep['vitedge']}",
             f"platform   {rep['platform']['system']} {rep['platform']['release']} {rep['platform']['machine']}"]
    limit = f", cgroup limit {cpu['cgroup_cpu_limit']}" if cpu["cgroup_cpu_limit"] else ""
    lines.append(f"cpu        {cpu['model']}: {cpu['cores']} cores, {cpu['usable_cores']} usable{limit}")
    names = X86_FLAGS if cpu["arch"] == "x86" else ARM_FLAGS
    have = [f for f, on in cpu["flags"].items() if on]
    lacks = [f for f, on in cpu["flags"].items() if not on]
    if names:
        lines.append(f"  has      {', '.join(have) or '-'}")
        lines.append(f"  lacks    {', '.join(lacks) or '-'}")
    if mem["total_mib"]:
        avail = f", {mem['available_mib']:,} MiB available" if mem["available_mib"] is not None else ""
        lines.append(f"memory     {mem['total_mib']:,} MiB{avail}")
    if not rep["runtimes"]:
        lines.append("runtimes   none found: pip install vitedge (ai-edge-litert, onnxruntime)")
    for rt in rep["runtimes"]:
        detail = [f"formats {', '.join(rt['formats'])}" if rt["formats"] else None]
        if "providers" in rt:
            detail.append("providers " + ", ".join(rt["providers"]))
        if "xnnpack" in rt:
            detail.append(f"XNNPACK {rt['xnnpack'] if isinstance(rt['xnnpack'], str) else ('yes' if rt['xnnpack'] else 'no')}")
        if rt.get("note"):
            detail.append(rt["note"])
        if rt.get("error"):
            detail.append(f"BROKEN: {rt['error']}")
        used = " (used)" if rt.get("used") else ""
        lines.append(f"runtime    {rt['name']} {rt['version'] or '?'}{used}: {'; '.join(d for d in detail if d)}")
    for fmt, rec in rep["int8_recipes"].items():
        lines.append(f"int8 {fmt:6} {rec['recipe']}: {'; '.join(rec['why'])}")
    art = rep.get("artifact")
    if art:
        lines.append(f"artifact   {art['file']}: {art['format']} {art['precision'] or '(no vitedge metadata)'}"
                     + (f", recipe {art['recipe']}" if art.get("recipe") else "")
                     + (f", exported for {art['exported_for']}" if art.get("exported_for") else ""))
        if "fits" in art:
            sug = art["suggested"]
            verdict = "fits this CPU" if art["fits"] else f"this CPU suits {sug['recipe']} better: {sug['export']}"
            lines.append(f"  int8     {verdict}")
        if art["loads"]:
            extra = ""
            if art.get("xnnpack_partitions") is not None:
                extra = f", XNNPACK partitions {art['xnnpack_partitions']}"
            lines.append(f"  loads    yes, in {art['runtime']}{extra}")
        else:
            lines.append(f"  loads    NO: {art['load_error']}")
    lines.append(f"tensorflow {'imported (not needed here)' if rep['tensorflow_imported'] else 'not imported'}")
    return "\n".join(lines)
