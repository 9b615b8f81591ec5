"""Limits on what files from strangers may declare (vitedge/limits.py), the checkpoint unpickler's
bounds, the .keras config check, predict's crash isolation and the clean-up of stale work files."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, assert_one_line_error, make_images, run_cli

from vitedge import limits
from vitedge.errors import VitedgeError


# ------------------------------------------------------------------------------ metadata ----
def test_zip_entry_read_only_up_to_its_declared_limit(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("small", b"{}")
        zf.writestr("bomb", b" " * 50_000_000)
    with zipfile.ZipFile(buf) as zf:
        assert limits.read_zip_entry(zf, "small", "x") == b"{}"
        with pytest.raises(VitedgeError, match="declares 50,000,000 bytes, more than 1,000,000"):
            limits.read_zip_entry(zf, "bomb", "x")
        with pytest.raises(VitedgeError, match="declares 2 bytes, more than 1"):
            limits.read_zip_entry(zf, "small", "x", limit=1)


def test_metadata_json_limits():
    assert limits.load_metadata_json(b'{"a": [[1]], "s": "[[[[[[[["}', "m") == {"a": [[1]], "s": "[[[[[[[["}
    assert limits.json_depth(b'{"a": "\\"[[[[", "b": [{}]}') == 3
    for raw, msg in ((b"[" * 40 + b"]" * 40, "nests deeper than 32"), (b"[1]", "not a JSON object"),
                     (b"{", "not valid JSON"), (b"\xff", "not valid JSON"),
                     (b'{"x": "' + b"a" * 1_000_001 + b'"}', "more than 1,000,000")):
        with pytest.raises(VitedgeError, match=msg):
            limits.load_metadata_json(raw, "m")


def test_label_and_size_checks():
    assert limits.check_labels(["a", 1], "m") == ["a", "1"]
    for labels, msg in (("abc", "not a list"), ([["a"]], "hold a list"), (["x" * 257], "longer than 256"),
                        (["a"] * (limits.MAX_CLASSES + 1), "more than 100,000")):
        with pytest.raises(VitedgeError, match=msg):
            limits.check_labels(labels, "m")
    limits.check_input_size(8192, 1, "m")
    with pytest.raises(VitedgeError, match="input width 8193 is outside 1..8192"):
        limits.check_input_size(32, 8193, "m")


def test_oversized_onnx_input_refused_before_allocation(tmp_path):
    """The issue's case: a fixed 60000x60000x3 input used to make predict allocate ~18 GB."""
    from test_hostile import tiny_onnx

    model = tmp_path / "huge.onnx"
    model.write_bytes(tiny_onnx([1, 60000, 60000, 3], [1, 5]))
    image = make_images(tmp_path / "img", count=1)[0]
    started = time.perf_counter()
    proc = run_cli("predict", image, "--model", model, timeout=120)
    line = assert_one_line_error(proc)
    assert proc.returncode == 1 and "dimension of 60000, outside 1..8192" in line
    assert time.perf_counter() - started < 60


def test_oversized_tflite_input_refused_before_allocation(tmp_path):
    """LiteRT would allocate every tensor (43 GB for this input) in allocate_tensors: the shape is
    checked before that."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((60000, 60000, 3), batch_size=1)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(inputs))
    model = tmp_path / "huge.tflite"
    model.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert())
    image = make_images(tmp_path / "img", count=1)[0]
    proc = run_cli("predict", image, "--model", model, timeout=120)
    line = assert_one_line_error(proc)
    assert proc.returncode == 1 and "a dimension of 60000, outside 1..8192" in line


def test_tflite_declaring_huge_tensors_refused_before_allocation(tmp_path):
    """A small input broadcast to a 6 GB output: LiteRT would reserve it in allocate_tensors."""
    import tensorflow as tf


    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
    def spread(x):
        return tf.broadcast_to(tf.reshape(tf.reduce_mean(x), [1, 1]), [1, 1_500_000_000])

    model = tmp_path / "spread.tflite"
    model.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([spread.get_concrete_function()], spread)
                      .convert())
    image = make_images(tmp_path / "img", count=1)[0]
    proc = run_cli("predict", image, "--model", model, timeout=120)
    line = assert_one_line_error(proc)
    assert proc.returncode == 1 and "tensors need 5.6 GiB, more than 4 GiB" in line


def test_oversized_openvino_input_refused_before_compiling(tmp_path):
    ov = pytest.importorskip("openvino")
    from test_hostile import tiny_onnx

    onnx_file = tmp_path / "huge.onnx"
    onnx_file.write_bytes(tiny_onnx([1, 32, 32, 3], [1, 5]))
    xml = tmp_path / "huge.xml"
    ov.save_model(ov.convert_model(str(onnx_file)), str(xml))
    # The IR's declared input, edited to 60000x60000 (OpenVINO's converter itself would allocate it).
    text = xml.read_text()
    assert text.count("<dim>32</dim>") >= 2
    xml.write_text(text.replace("<dim>32</dim>", "<dim>60000</dim>").replace('shape="1,32,32,3"', 'shape="1,60000,60000,3"'))
    image = make_images(tmp_path / "img", count=1)[0]
    proc = run_cli("predict", image, "--model", xml, timeout=120)
    line = assert_one_line_error(proc)
    assert proc.returncode == 1 and "60000, outside 1..8192" in line


# -------------------------------------------------------------------------- checkpoints ----
def _s(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _i(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def crafted_pth(path: Path, offset: int, size, stride, values=None, numel: int | None = None,
                storage: bytes | None = None) -> Path:
    """A torch.save-format checkpoint written by hand: {"weight": tensor(storage, offset, size, stride)}."""
    values = np.arange(16, dtype="<f4") if values is None else values
    pkl = b"\x80\x02}(" + _s("weight") + b"ctorch._utils\n_rebuild_tensor_v2\n("
    pkl += b"(" + _s("storage") + b"ctorch\nFloatStorage\n" + _s("0") + _s("cpu")
    pkl += _i(len(values) if numel is None else numel) + b"tQ"
    pkl += _i(offset) + b"(" + b"".join(map(_i, size)) + b"t(" + b"".join(map(_i, stride)) + b"t"
    pkl += b"\x89ccollections\nOrderedDict\n)RtRu."
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/data/0", values.tobytes() if storage is None else storage,
                    compress_type=zipfile.ZIP_STORED if storage is None else zipfile.ZIP_DEFLATED)
    return path


def test_unpickler_reads_honest_tensors(tmp_path):
    from vitedge.importers.tensorfile import read_tensors

    got = read_tensors(crafted_pth(tmp_path / "ok.pth", 0, (4, 4), (4, 1)))["weight"]
    np.testing.assert_array_equal(got, np.arange(16, dtype=np.float32).reshape(4, 4))
    got = read_tensors(crafted_pth(tmp_path / "t.pth", 2, (2, 3), (1, 2)))["weight"]  # a transposed view
    np.testing.assert_array_equal(got, [[2, 4, 6], [3, 5, 7]])
    assert read_tensors(crafted_pth(tmp_path / "s.pth", 5, (), ()))["weight"] == 5


@pytest.mark.parametrize("offset,size,stride,why", [
    (-4, (4,), (1,), "negative"),                        # bytes before the storage
    (0, (4,), (-1,), "negative"),                        # walks backwards out of it
    (0, (2, 2), (-2, 1), "negative"),
    (0, (-1, 4), (4, 1), "negative"),
    (15, (4,), (0,), "zero stride"),                     # one value repeated
    (0, (5, 4), (4, 1), "reaches past its storage"),     # one row too many
    (12, (2, 4), (4, 1), "reaches past its storage"),    # offset pushes it past the end
    (0, (65536, 65536), (1, 1), "reaches past its storage"),
    (0, (2**31 - 1, 2**31 - 1), (2**31 - 1, 1), "reaches past its storage"),  # size overflows int64
    (0, (4, 4, 4), (4, 1), "3 dimensions and 2 strides"),
])
def test_unpickler_refuses_tensors_outside_their_storage(tmp_path, offset, size, stride, why):
    from vitedge.importers.tensorfile import read_tensors

    path = crafted_pth(tmp_path / "bad.pth", offset, size, stride)
    with pytest.raises(VitedgeError, match=why):
        read_tensors(path)


def test_unpickler_refuses_a_compressed_storage_bomb(tmp_path):
    from vitedge.importers.tensorfile import read_tensors

    path = crafted_pth(tmp_path / "bomb.pth", 0, (4,), (1,), storage=b"\0" * 200_000_000)
    with pytest.raises(VitedgeError, match="inflates 200,000,000 bytes"):
        read_tensors(path)


def test_safetensors_negative_offsets_refused(tmp_path):
    from vitedge.importers.tensorfile import read_tensors

    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}).encode()
    path = tmp_path / "neg.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(VitedgeError, match="truncated|bad offset"):
        read_tensors(path)


# ------------------------------------------------------------------------------- .keras ----
EVIL_MODULE = "vitedge_hostile_probe"


def _rewrite_config(src: Path, dst: Path, change) -> Path:
    """A copy of a .keras file whose config.json is changed by `change(config)`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                change(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    return dst


def _layers(config: dict) -> list:
    return config["config"]["layers"]


def _keras_cases(tiny_model: Path, tmp_path: Path, marker: Path) -> dict[str, Path]:
    """Crafted .keras files; each would write `marker` if anything in it ran."""
    def unregistered(config):
        layer = next(la for la in _layers(config) if str(la.get("registered_name", "")).startswith("vitedge>"))
        layer["class_name"], layer["registered_name"] = "Evil", "vitedge>Evil"

    def foreign_module(config):
        layer = next(la for la in _layers(config) if la.get("module") == "keras.layers")
        layer["module"], layer["class_name"], layer["registered_name"] = EVIL_MODULE, "Probe", None

    def foreign_registered(config):
        layer = next(la for la in _layers(config) if la.get("module") == "keras.layers")
        layer["module"], layer["registered_name"] = None, f"{EVIL_MODULE}>Probe"

    return {name: _rewrite_config(tiny_model, tmp_path / f"{name}.keras", change)
            for name, change in (("unregistered", unregistered), ("module", foreign_module),
                                 ("registered_elsewhere", foreign_registered))}


def test_keras_files_with_code_or_foreign_classes_are_refused_and_nothing_runs(tiny_model, tmp_path, monkeypatch):
    import keras

    from vitedge.modelfile import load_model

    marker = tmp_path / "ran.txt"
    # A module that writes the marker when imported: the "module outside vitedge" files name it.
    (tmp_path / f"{EVIL_MODULE}.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                                "class Probe:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    files = _keras_cases(tiny_model, tmp_path, marker)

    # A real Lambda layer whose function writes the marker when the model is built or called.
    inputs = keras.Input((4,))
    path = str(marker)
    outputs = keras.layers.Lambda(lambda x: x * float(bool(open(path, "w").write("ran"))))(inputs)  # noqa: SIM115
    lam = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(lam)
    marker.unlink(missing_ok=True)  # saving traced it once
    files["lambda"] = lam

    for name, file in files.items():
        with pytest.raises(VitedgeError, match="refuse|refused|Lambda") as info:
            load_model(file)
        assert str(file) in str(info.value), name
        assert not marker.exists(), f"{name}: something ran"
        assert EVIL_MODULE not in sys.modules

    # The Lambda file really carries code: Keras without safe mode runs it (so the test can fail).
    keras.saving.load_model(lam, safe_mode=False)(np.zeros((1, 4), np.float32))
    assert marker.exists()


def test_keras_floor_excludes_safe_mode_bypasses():
    """pyproject's keras floor is past the releases with published safe_mode bypasses (3.11.0
    fixed CVE-2025-8747/9906, 3.12.0 CVE-2025-12058), and so is the installed Keras."""
    import re
    from importlib.metadata import version

    text = (REPO / "pyproject.toml").read_text()
    floor = re.search(r'"keras>=([0-9.]+)', text).group(1)
    assert tuple(map(int, floor.split("."))) >= (3, 12, 0)
    assert tuple(map(int, version("keras").split(".")[:2])) >= (3, 12)


# ----------------------------------------------------------------------- crash isolation ----
def test_predict_isolation_turns_a_native_crash_into_one_line():
    """A real segfault (a read at address 0 in native code) in the child is one line in the parent."""
    code = textwrap.dedent("""
        import ctypes, sys
        from vitedge.cli import main
        from vitedge.isolate import run_isolated
        from vitedge.errors import VitedgeError
        try:
            run_isolated(lambda: ctypes.string_at(0), "model.tflite")
        except VitedgeError as exc:
            print("caught:", exc)
        print("parent alive")
        print("ok" if run_isolated(lambda: 7, "x") == 7 else "bad")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "caught: model.tflite: the runtime crashed on this model (SIGSEGV)" in proc.stdout, proc.stderr
    assert "parent alive" in proc.stdout and "ok" in proc.stdout
    assert proc.returncode == 0


def test_a_real_litert_segfault_in_the_child_is_one_line(tiny_artifacts):
    """LiteRT with 100000 threads (what `--threads 100000` used to reach) segfaults when the
    interpreter is freed; run isolated, the caller gets a VitedgeError and lives on."""
    code = textwrap.dedent("""
        import gc, sys
        from vitedge.errors import VitedgeError
        from vitedge.isolate import run_isolated
        from vitedge.runtime.litert import new_interpreter

        def work():
            interpreter = new_interpreter(model_path=sys.argv[1], threads=100000)
            interpreter.allocate_tensors()
            interpreter.invoke()
            del interpreter
            gc.collect()
            return 0

        try:
            run_isolated(work, sys.argv[1])
            print("no crash")
        except VitedgeError as exc:
            print("caught:", exc)
        print("parent alive")
    """)
    model = str(tiny_artifacts[("tflite", "fp32")])
    proc = subprocess.run([sys.executable, "-c", code, model], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert f"caught: {model}: the runtime crashed on this model (SIGSEGV)" in proc.stdout, proc.stdout + proc.stderr
    assert "parent alive" in proc.stdout and proc.returncode == 0


def test_predict_runs_its_model_in_a_child_process(tiny_artifacts, calib_dir, tmp_path):
    """The runtime is loaded in a child: the parent's pid is not the one that opened the model."""
    image = next(iter(sorted(Path(calib_dir).rglob("*.png"))))
    probe = textwrap.dedent("""
        import os, sys
        import vitedge.runtime.litert as lit
        PARENT = os.getpid()
        original = lit.LiteRTRuntime.__init__
        def spy(self, *a, **k):
            print("runtime in a child:", os.getpid() != PARENT, file=sys.stderr)
            original(self, *a, **k)
        lit.LiteRTRuntime.__init__ = spy
        from vitedge.cli import main
        main(sys.argv[1:])
    """)
    args = ["predict", str(image), "--model", str(tiny_artifacts[("tflite", "fp32")])]
    forked = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    same = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "VITEDGE_IN_PROCESS": "1"})
    assert forked.returncode == 0 and "runtime in a child: True" in forked.stderr, forked.stderr
    assert same.returncode == 0 and "runtime in a child: False" in same.stderr, same.stderr
    assert forked.stdout == same.stdout and "rank" in forked.stdout


# ----------------------------------------------------------------------- stale work files ----
KILLED_WRITER = """
import os, signal, sys
from vitedge.fileio import atomic_output, atomic_directory, work_directory
out = sys.argv[1]
with atomic_output(os.path.join(out, "model.tflite")) as tmp:
    tmp.write_bytes(b"half")
    with atomic_directory(os.path.join(out, "ir")) as d:
        (d / "x").write_text("half")
        with work_directory("export") as work:
            print(work, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
"""


def _age(paths, seconds=3600):
    then = time.time() - seconds
    for p in paths:
        os.utime(p, (then, then), follow_symlinks=False)


def test_work_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    from vitedge.fileio import atomic_output, remove_stale

    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)}
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in out.iterdir())
    assert len(left) == 2 and all(n.startswith((".model.p", ".ir.p")) and ".partial" in n for n in left), left
    assert not (out / "model.tflite").exists() and not (out / "ir").exists()  # no final name is partial
    work = [p for p in tmpdir.iterdir() if p.name.startswith("vitedge-export-p")]
    assert len(work) == 1

    # Fresh files of a dead process are kept for a while (another host may share the folder) ...
    assert remove_stale(out) == [] and len(list(out.iterdir())) == 2
    # ... a live process's are never touched, whatever their age ...
    mine = out / f".other.p{os.getpid()}.abcd.partial.onnx"
    mine.write_bytes(b"x")
    foreign = out / ".notes.txt"  # not a vitedge name
    foreign.write_text("keep")
    _age([*out.iterdir(), *work])
    # ... and old ones of a dead process go when the next run writes there.
    with atomic_output(out / "next.tflite") as tmp:
        tmp.write_bytes(b"model")
    assert sorted(p.name for p in out.iterdir()) == sorted([mine.name, foreign.name, "next.tflite"])
    assert remove_stale(tmpdir) == work and not work[0].exists()


def test_work_directory_is_named_for_the_clean_up():
    import shutil

    from vitedge.fileio import _STALE_NAMES, work_directory, work_folder

    with work_directory("export") as work:
        match = _STALE_NAMES[1].match(Path(work).name)
        assert match and int(match.group(1)) == os.getpid()
    assert not Path(work).exists()
    folder = work_folder("ssh")  # the caller removes it (bench --device's ssh control folder)
    match = _STALE_NAMES[1].match(Path(folder).name)
    assert match and int(match.group(1)) == os.getpid() and Path(folder).is_dir()
    shutil.rmtree(folder)


def test_every_vitedge_temp_folder_is_one_the_clean_up_knows():
    """No module makes its own temp folder: a killed run's would stay in the temp dir forever."""
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "vitedge").rglob("*.py")
                 if p.name != "fileio.py" and ("TemporaryDirectory(" in p.read_text() or "mkdtemp(" in p.read_text())]
    assert offenders == []


@pytest.mark.slow
def test_export_killed_mid_way_leaves_nothing_after_the_next_run(tiny_model, calib_dir, tmp_path):
    """A real `vitedge export` killed with SIGKILL while it writes; the next export cleans up."""
    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)}
    args = [sys.executable, "-m", "vitedge", "export", "--model", str(tiny_model), "--calib", str(calib_dir),
            "--format", "tflite,onnx", "--precision", "fp32", "--out", str(out)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if out.is_dir() and any(".partial" in p.name for p in out.iterdir()):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "export ended before it wrote a temporary file"
    finally:
        proc.kill()
        proc.wait()
    left = list(out.iterdir())
    assert left and all(p.name.startswith(".") and ".partial" in p.name for p in left), left  # no final name
    assert any(p.name.startswith("vitedge-export-p") for p in tmpdir.iterdir())
    _age([*left, *tmpdir.iterdir()])  # as if it happened more than 10 minutes ago

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["tiny-vit_fp32.onnx", "tiny-vit_fp32.tflite"]
    assert [p.name for p in tmpdir.iterdir() if p.name.startswith("vitedge-")] == []
