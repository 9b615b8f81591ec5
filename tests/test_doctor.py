"""`vitedge doctor`: the report matches what this machine really has, never needs TensorFlow,
and the recipe advice follows the CPU's int8 features."""

import json
import os
import platform
import subprocess
import sys
from importlib import metadata

from conftest import assert_one_line_error, run_cli

from vitedge import doctor

# /proc/cpuinfo as a Raspberry Pi 4 and a Pi 5 show it (one core's entry; the tail lines).
PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI5 = PI4.replace("fp asimd evtstrm crc32 cpuid",
                  "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp") \
    .replace("0xd08", "0xd0b").replace("Raspberry Pi 4 Model B Rev 1.4", "Raspberry Pi 5 Model B Rev 1.0")
# Run doctor with TensorFlow made unimportable (sys.modules[name] = None makes `import` fail).
NO_TF = "import sys; sys.modules['tensorflow'] = None; from vitedge.cli import main; main(sys.argv[1:])"


def doctor_json(*args):
    proc = subprocess.run([sys.executable, "-c", NO_TF, "doctor", *map(str, args), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def cpu(arch, **flags):
    names = doctor.X86_FLAGS if arch == "x86" else doctor.ARM_FLAGS
    return {"arch": arch, "flags": {f: bool(flags.get(f)) for f in names}}


def test_report_matches_this_machine_without_tensorflow():
    rep = doctor_json()
    assert rep["python"]["version"] == platform.python_version()
    assert rep["tensorflow_imported"] is False
    by_name = {r["name"]: r for r in rep["runtimes"]}
    assert "tf.lite" not in by_name  # TensorFlow unimportable here: not offered
    assert by_name["ai_edge_litert"]["version"] == metadata.version("ai-edge-litert")
    assert by_name["ai_edge_litert"]["xnnpack"] == "default delegate" and by_name["ai_edge_litert"]["used"]
    import onnxruntime

    assert by_name["onnxruntime"]["version"] == onnxruntime.__version__
    assert by_name["onnxruntime"]["providers"] == onnxruntime.get_available_providers()
    c = rep["cpu"]
    assert c["cores"] == os.cpu_count() and c["usable_cores"] == len(os.sched_getaffinity(0))
    if c["arch"] == "x86":
        flags = set(next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split(":")[1].split())
        assert {f for f, on in c["flags"].items() if on} == flags & set(doctor.X86_FLAGS)
    meminfo = dict(ln.split(":", 1) for ln in open("/proc/meminfo"))
    assert rep["memory"]["total_mib"] == int(meminfo["MemTotal"].split()[0]) // 1024


def test_text_report_names_each_part():
    proc = run_cli("doctor")
    assert proc.returncode == 0, proc.stderr
    for word in ("python", "vitedge", "cpu", "memory", "runtime    ai_edge_litert", "onnxruntime", "int8 tflite"):
        assert word in proc.stdout


def test_raspberry_pi_cpuinfo_is_read():
    pi4, pi5 = doctor.parse_cpuinfo(PI4), doctor.parse_cpuinfo(PI5)
    assert pi4["model"] == "Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)"
    assert pi5["model"] == "Cortex-A76 (Raspberry Pi 5 Model B Rev 1.0)"
    assert "asimddp" not in pi4["flags"] and {"asimddp", "asimdhp", "fphp"} <= pi5["flags"]


def test_recipe_advice_follows_the_cpu():
    no_vnni, vnni = cpu("x86", avx2=True), cpu("x86", avx2=True, avx512_vnni=True)
    assert doctor.recommend("onnx", no_vnni)["recipe"] == "dynamic"  # static QDQ measured slower there
    assert doctor.recommend("onnx", no_vnni)["export"] == "vitedge export --format onnx --precision dynamic"
    assert doctor.recommend("onnx", vnni)["recipe"] == "qdq"
    assert doctor.recommend("tflite", no_vnni)["recipe"] == "fc"
    pi4 = doctor.recommend("tflite", cpu("arm64", asimd=True))
    pi5 = doctor.recommend("tflite", cpu("arm64", asimd=True, asimddp=True, asimdhp=True, fphp=True))
    assert pi4["target"] == "arm64" and "--target arm64" in pi4["export"]
    assert any("no dot-product" in w for w in pi4["why"]) and not pi4["fp16_arithmetic"]
    assert any("SDOT" in w for w in pi5["why"]) and pi5["fp16_arithmetic"]
    assert doctor.recommend("ort", no_vnni)["format"] == "onnx"


def test_artifact_fit_loads_it_for_real(tiny_artifacts):
    here = doctor.cpu_info()
    for fmt in ("tflite", "onnx"):
        rep = doctor_json(tiny_artifacts[(fmt, "int8")])
        art = rep["artifact"]
        assert art["format"] == fmt and art["precision"] == "int8" and art["loads"] is True
        assert art["fits"] == (art["recipe"] == doctor.recommend(fmt, here)["recipe"])
        assert rep["tensorflow_imported"] is False
    assert doctor_json(tiny_artifacts[("tflite", "fp32")])["artifact"]["xnnpack_partitions"] > 0


def test_bad_artifact_is_one_line(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model at all")
    assert "broken.onnx" in assert_one_line_error(run_cli("doctor", bad))
    assert "no such file" in assert_one_line_error(run_cli("doctor", tmp_path / "missing.tflite"))
