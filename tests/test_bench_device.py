"""`vitedge bench --device ssh://...` against a real OpenSSH server on 127.0.0.1 (tests/sshd.py).

One sshd for the module, started by the tests with a throw-away host key and user key; the
"device" is this machine reached through it, with this checkout's vitedge (a wrapper script as
--device-python). Rows from the device are compared with local rows of the same artifacts.
"""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, TINY_LABELS, assert_one_line_error, make_images, run_cli
from tests.sshd import Sshd, keygen, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def device_python(tmp_path_factory):
    """The device's Python: this interpreter with this checkout first on its path (ssh passes no env)."""
    path = tmp_path_factory.mktemp("devpy") / "python"
    path.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} \"$@\"\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def artifacts(tiny_artifacts):
    """fp32 TFLite and ONNX files of the tiny model (the session's exports, shared with test_bench)."""
    return {"tflite": tiny_artifacts[("tflite", "fp32")], "onnx": tiny_artifacts[("onnx", "fp32")]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dev-data")
    for i, name in enumerate(TINY_LABELS):
        make_images(folder / name, count=4, seed=i)
    return folder


def old_vitedge_python(tmp_path: Path) -> str:
    """A device Python whose vitedge is another version (0.0.1) than this checkout's."""
    stub = tmp_path / "old" / "vitedge"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('__version__ = "0.0.1"\n')
    path = tmp_path / "old-python"
    path.write_text(f"#!/bin/sh\nPYTHONPATH={stub.parent} exec {sys.executable} \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def external_data_copy(onnx_path: Path, folder: Path) -> Path:
    """The ONNX model again with its weights in an external-data file beside it (weights.data)."""
    import onnx

    from vitedge import formats

    folder.mkdir()
    out = folder / "tiny-external.onnx"
    onnx.save_model(onnx.load(str(onnx_path)), str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=1024)
    assert formats.get("onnx").weights_paths(out) == [folder / "weights.data"]
    assert formats.get("onnx").weights_paths(onnx_path) == []
    return out


def device_args(sshd, device_python, remote, *extra):
    return ["--device", sshd.url, "--ssh-config", sshd.client_config, "--device-python", device_python,
            "--remote-dir", remote, *extra]


def test_device_rows_match_local_rows(sshd, device_python, artifacts, data, tmp_path):
    remote = tmp_path / "remote"
    proc = run_cli("bench", artifacts["tflite"], artifacts["onnx"], "--data", data, "--runs", "3", "--warmup", "1",
                   "--threads", "1", "--device", "local", *device_args(sshd, device_python, remote),
                   "--json", tmp_path / "b.json", "--csv", tmp_path / "b.csv", "--plot", tmp_path / "b.png")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    rows = report["rows"]
    assert [r["device"] for r in rows] == ["local", "local", sshd.url, sshd.url]
    assert all(r["status"] == "ok" and r["images"] == 20 for r in rows)
    local, remote_rows = rows[:2], rows[2:]
    for a, b in zip(local, remote_rows, strict=True):
        assert a["artifact"] == b["artifact"] and a["top1"] == b["top1"] and a["top5"] == b["top5"]
        assert b["timed_runs"] == 3 and b["p50_ms"] > 0 and b["peak_rss_mb"] > 10
    # the ONNX row is compared with its own format's fp32 file on the same device
    assert remote_rows[1]["reference"] == remote_rows[1]["artifact"]
    dev = next(d for d in report["devices"] if d["device"] == sshd.url)
    assert dev["cpu"] and dev["cores"] >= 1 and dev["python"].startswith("3.") and "onnxruntime" in dev["packages"]
    assert dev["doctor"]["python"]["version"].startswith("3.") if isinstance(dev["doctor"].get("python"), dict) else dev["doctor"]
    assert "device" in proc.stdout and f"device {sshd.url.removeprefix('ssh://')}:" in proc.stdout
    csv_text = (tmp_path / "b.csv").read_text()
    assert "device_cpu" in csv_text.splitlines()[0] and sshd.url in csv_text
    assert not (remote / "work").exists(), "the work folder is removed after the run"
    from vitedge.bench.plot import plot_points

    labels = [p["artifact"] for p in plot_points(report)[1]]
    assert len(set(labels)) == 4 and sum("@ local" in x for x in labels) == 2
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_device_scores_equal_local_scores_and_files_are_copied_once(sshd, device_python, artifacts, tmp_path):
    from vitedge.bench.dataset import prepare_inputs, random_data
    from vitedge.bench.remote import SshDevice, SshOptions, parse_device
    from vitedge.bench.runner import Settings, run_worker
    from vitedge.preprocess import Preprocessing

    data = random_data(6)
    inputs, bad = prepare_inputs(data, (32, 32), Preprocessing(), tmp_path / "in.f32")
    assert not bad
    device = SshDevice(parse_device(sshd.url), SshOptions(config=str(sshd.client_config)), device_python,
                       str(tmp_path / "remote"), keep=True)
    device.start(Settings(threads=1, timeout=120))
    external = external_data_copy(artifacts["onnx"], tmp_path / "ext")
    try:
        for fmt, path in [*artifacts.items(), ("external", external)]:
            job = {"path": str(path), "kind": "runtime", "threads": 1, "provider": None,
                   "inputs": inputs.job(range(len(data))), "batch": 1, "warmup": 0, "runs": 2}
            here = run_worker({**job, "scores": str(tmp_path / f"{fmt}-local.npy")}, 120, tmp_path / "l.err")
            there = device.run_worker({**job, "scores": str(tmp_path / f"{fmt}-remote.npy")}, 120, tmp_path / "r.err")
            assert here["event"] == there["event"] == "result", (here, there)
            a, b = np.load(tmp_path / f"{fmt}-local.npy"), np.load(tmp_path / f"{fmt}-remote.npy")
            assert a.shape == b.shape == (6, 5)
            np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)
            assert (a.argmax(1) == b.argmax(1)).all()
        stored = sorted((tmp_path / "remote" / "work" / "files").iterdir())
        assert len(stored) == 4  # three artifacts and one input file, each once
        assert any((p / "weights.data").is_file() for p in stored)  # the external data went with its model
        stamps = {p: p.stat().st_mtime_ns for p in stored}
        again = device.run_worker({**job, "scores": str(tmp_path / "again.npy")}, 120, tmp_path / "a.err")
        assert again["event"] == "result"
        assert {p: p.stat().st_mtime_ns for p in stored} == stamps
    finally:
        assert device.close() and (tmp_path / "remote" / "work" / "files").is_dir()  # kept: keep=True


# -------------------------------------------------------------------------------- faults ---
def test_unreachable_host_is_one_line(artifacts, sshd, device_python, tmp_path):
    from tests.sshd import free_port

    proc = run_cli("bench", artifacts["onnx"], "--device", f"ssh://{sshd.user}@127.0.0.1:{free_port()}",
                   "--ssh-config", sshd.client_config, "--device-python", device_python, "--limit", "2", timeout=120)
    line = assert_one_line_error(proc)
    assert proc.returncode == 1 and "Connection refused" in line


def _unknown_host_args(artifacts, sshd, device_python, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = sshd.write_client_config(tmp_path / "cfg", sshd.user_key, known)
    return known, ["bench", artifacts["onnx"], "--device", sshd.url, "--ssh-config", config, "--device-python",
                   device_python, "--remote-dir", tmp_path / "r", "--limit", "2", "--runs", "2", "--warmup", "0"]


def test_unknown_host_key_is_refused(artifacts, sshd, device_python, tmp_path):
    known, args = _unknown_host_args(artifacts, sshd, device_python, tmp_path)
    line = assert_one_line_error(run_cli(*args, timeout=120))
    assert "Host key verification failed" in line and "--accept-new-host-key" in line
    assert known.read_text() == ""


def test_accept_new_host_key_trusts_a_first_seen_host(artifacts, sshd, device_python, tmp_path):
    known, args = _unknown_host_args(artifacts, sshd, device_python, tmp_path)
    proc = run_cli(*args, "--accept-new-host-key", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "127.0.0.1" in known.read_text()


def test_refused_key_no_python_and_no_vitedge_fail_the_device_rows_only(artifacts, sshd, device_python, tmp_path):
    other = keygen(tmp_path / "other_key")
    refused = sshd.write_client_config(tmp_path / "cfg", other, sshd.known_hosts)
    line = assert_one_line_error(run_cli("bench", artifacts["onnx"], "--device", sshd.url, "--ssh-config", refused,
                                         "--limit", "2", timeout=120))
    assert "Permission denied (publickey" in line
    line = assert_one_line_error(run_cli("bench", artifacts["onnx"], *device_args(sshd, "/nonexistent/python3",
                                                                                  tmp_path / "r"), timeout=120))
    assert "no Python at '/nonexistent/python3'" in line
    # next to a local run: the local rows stay, the device's are failed rows, exit 1
    proc = run_cli("bench", artifacts["onnx"], "--limit", "2", "--runs", "2", "--warmup", "0", "--json", "-",
                   "--device", "local", *device_args(sshd, old_vitedge_python(tmp_path), tmp_path / "r"), timeout=120)
    assert proc.returncode == 1
    local, there = json.loads(proc.stdout)["rows"]
    assert local["status"] == "ok" and there["status"] == "failed" and there["device"] == sshd.url
    assert there["error"].startswith("device: ") and "vitedge 0.0.1" in there["error"] and "--install" in there["error"]


def test_a_full_device_disk_fails_its_rows_and_keeps_the_local_ones(sshd, device_python, artifacts, tmp_path):
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a 1 MB tmpfs here (needs root) for the device's work folder")
    try:
        proc = run_cli("bench", artifacts["onnx"], "--limit", "2", "--runs", "2", "--warmup", "0", "--json", "-",
                       "--device", "local", *device_args(sshd, device_python, small / "remote"), timeout=120)
        assert proc.returncode == 1
        local, there = json.loads(proc.stdout)["rows"]
        assert local["status"] == "ok" and there["status"] == "failed"
        assert there["error"].startswith("copy: not enough disk space on the device"), there["error"]
        assert not (small / "remote" / "work").exists()
    finally:
        subprocess.run(["umount", str(small)], check=True)


def _wait_for_pid(run_root: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in run_root.glob("work/run-*/worker*.pid"):
            text = f.read_text().strip()
            if text:
                return int(text)
        time.sleep(0.1)
    raise AssertionError("no remote worker started")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    return state != "Z"


def _device(sshd, device_python, remote):
    from vitedge.bench.remote import SshDevice, SshOptions, parse_device
    from vitedge.bench.runner import Settings

    device = SshDevice(parse_device(sshd.url), SshOptions(config=str(sshd.client_config)), device_python, str(remote))
    device.start(Settings(threads=1, timeout=120))
    return device


def _endless_job(artifacts, tmp_path):
    from vitedge.bench.dataset import prepare_inputs, random_data
    from vitedge.preprocess import Preprocessing

    inputs, _ = prepare_inputs(random_data(2), (32, 32), Preprocessing(), tmp_path / "in.f32")
    base = {"kind": "runtime", "threads": 1, "provider": None, "inputs": inputs.job([0, 1]), "batch": 1, "warmup": 0}
    return ({**base, "path": str(artifacts["onnx"]), "runs": 10**9, "scores": str(tmp_path / "s.npy")},
            {**base, "path": str(artifacts["tflite"]), "runs": 2, "scores": str(tmp_path / "t.npy")})


def test_killed_worker_and_timeout_fail_one_row_and_leave_nothing_behind(sshd, device_python, artifacts, tmp_path):
    remote = tmp_path / "remote"
    device = _device(sshd, device_python, remote)
    endless, short = _endless_job(artifacts, tmp_path)
    try:
        threading.Timer(0.1, lambda: os.kill(_wait_for_pid(remote), signal.SIGKILL)).start()
        reply = device.run_worker(endless, 120, tmp_path / "k.err")
        assert reply["event"] == "error" and reply["stage"] == "crash", reply
        assert "worker crashed or disconnected" in reply["message"]
        assert device.run_worker(short, 120, tmp_path / "ok.err")["event"] == "result"  # the device goes on
        for f in remote.glob("work/run-*/worker*.pid"):
            f.unlink()
        started = time.monotonic()
        reply = device.run_worker(endless, 4, tmp_path / "t.err")
        assert reply["stage"] == "timeout" and time.monotonic() - started < 30
        pid = int(next(remote.glob("work/run-*/worker*.pid")).read_text())
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the remote worker is stopped on a timeout"
    finally:
        assert device.close() == []
    assert not (remote / "work").exists()


def test_sshd_stopped_mid_run_is_a_failed_row(device_python, artifacts, tmp_path):
    server = Sshd(tmp_path / "sshd").start()  # its own server: this test stops it
    try:
        remote = tmp_path / "remote"
        device = _device(server, device_python, remote)
        endless, _ = _endless_job(artifacts, tmp_path)

        def stop_when_running():
            _wait_for_pid(remote)
            server.stop()

        threading.Thread(target=stop_when_running, daemon=True).start()
        started = time.monotonic()
        reply = device.run_worker(endless, 120, tmp_path / "k.err")
        assert reply["event"] == "error" and reply["stage"] == "crash" and time.monotonic() - started < 60, reply
        warnings = device.close()
        assert warnings and "not removed" in warnings[0]  # the device is gone: say so, do not hang
    finally:
        server.stop()


def test_bad_device_values_are_usage_errors(artifacts):
    for bad in ("pi@host", "ssh://-oProxyCommand=x", "ssh://pi@host/path", "ssh://pi:pw@host", "ssh://a b@host"):
        proc = run_cli("bench", artifacts["onnx"], "--device", bad)
        line = assert_one_line_error(proc)
        assert proc.returncode == 2 and "--device" in line, bad


@pytest.mark.slow
def test_install_puts_this_version_into_a_venv_on_the_device(sshd, artifacts, tmp_path):
    from vitedge import __version__

    remote = tmp_path / "remote"
    args = ["bench", artifacts["onnx"], "--limit", "2", "--runs", "2", "--warmup", "0", "--json", "-",
            *device_args(sshd, old_vitedge_python(tmp_path), remote)]
    line = assert_one_line_error(run_cli(*args, timeout=120))
    assert "vitedge 0.0.1" in line and "--install" in line
    proc = run_cli(*args, "--install", timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rows"][0]["status"] == "ok"
    venv = remote / f"venv-{__version__}"
    (site,) = venv.glob("lib/python*/site-packages")
    assert (site / "vitedge" / "bench" / "remote.py").read_text() == (REPO / "vitedge/bench/remote.py").read_text()
    dev = next(d for d in report["devices"] if d["device"] == sshd.url)
    assert dev["python_path"] == f"{venv}/bin/python" and Path(dev["vitedge_path"]) == site / "vitedge"
    assert not (remote / "work").exists() and venv.is_dir()  # the work folder goes, the install stays


@pytest.mark.slow
def test_int8_auto_times_the_candidates_on_the_device(sshd, device_python, tiny_model, calib_dir, tmp_path):
    proc = run_cli("export", "--model", tiny_model, "--format", "onnx", "--int8", "auto", "--calib", calib_dir,
                   "--out", tmp_path / "out", "--device", sshd.url, "--ssh-config", sshd.client_config,
                   "--device-python", device_python, "--remote-dir", tmp_path / "remote", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    selection = result["recipe"]["selection"]
    assert selection["mode"] == "auto" and selection["device"] == sshd.url
    assert selection["device_machine"]["cpu"] and selection["chosen"] in {c["recipe"] for c in selection["candidates"]}
    assert f"on {sshd.url}" in proc.stderr and not (tmp_path / "remote" / "work").exists()
    from vitedge.artifact import read_onnx_metadata

    meta = read_onnx_metadata(result["path"])
    assert meta["recipe"]["selection"]["device"] == sshd.url  # recorded in the artifact


def test_export_device_needs_int8_auto(tiny_model, sshd, tmp_path):
    line = assert_one_line_error(run_cli("export", "--model", tiny_model, "--format", "onnx", "--out", tmp_path,
                                         "--device", sshd.url))
    assert "--int8 auto" in line


def test_keep_remote_keeps_the_copies_for_the_next_run(sshd, device_python, artifacts, tmp_path):
    remote = tmp_path / "remote"
    args = ["bench", artifacts["onnx"], "--limit", "2", "--runs", "2", "--warmup", "0", "--keep-remote",
            *device_args(sshd, device_python, remote)]
    first = run_cli(*args, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "work folder kept" in first.stderr
    stored = {p: p.stat().st_mtime_ns for p in (remote / "work" / "files").iterdir()}
    assert len(stored) == 2  # the model and the input rows
    second = run_cli(*args, timeout=120)
    assert second.returncode == 0, second.stderr
    assert {p: p.stat().st_mtime_ns for p in (remote / "work" / "files").iterdir()} == stored  # nothing copied again
