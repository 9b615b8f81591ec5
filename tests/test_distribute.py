"""`vitedge train --distribute`: the strategy choice, the data sharding, MirroredStrategy's
equivalence with one device (2 logical CPUs), and strategies that cannot start failing cleanly."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO, assert_one_line_error, run_cli
from PIL import Image

from vitedge.distribute import parse_tf_config, resolve_mode
from vitedge.errors import VitedgeError
from vitedge.train import shard_rows


def _tf_config(ports, index=0, kind="worker"):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": kind, "index": index}})


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """3 classes x 24 grayscale 16x16 PNGs (bright top, bottom or centre), as in test_train.py."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for kind, name in enumerate(("top", "bottom", "centre")):
        (root / name).mkdir()
        for i in range(24):
            img = np.zeros((16, 16), np.uint8)
            region = [np.s_[:8], np.s_[8:], np.s_[4:12, 4:12]][kind]
            img[region] = rng.integers(120, 256, (16, 16)).astype(np.uint8)[region]
            Image.fromarray(img, mode="L").save(root / name / f"{i:03d}.png")
    return root


def test_tf_config_is_checked_before_tensorflow_starts():
    assert parse_tf_config(None) is None and parse_tf_config("  ") is None
    conf = parse_tf_config(_tf_config([1111, 2222], index=1))
    assert conf.num_workers == 2 and conf.worker_index == 1 and not conf.is_chief
    chief = parse_tf_config(json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2"]},
                                        "task": {"type": "worker", "index": 0}}))
    assert chief.worker_index == 1 and not chief.is_chief and chief.num_workers == 2
    bad = {
        "{not json": "not JSON",
        "[]": "JSON object",
        json.dumps({"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}): "host:port",
        json.dumps({"cluster": {"worker": ["h:99999"]}, "task": {"type": "worker", "index": 0}}): "host:port",
        json.dumps({"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}): "not supported",
        _tf_config([1, 2], index=2): "task index 2 is not in 0..1",
        json.dumps({"cluster": {"worker": ["h:1"]}}): "\"task\" must be",
    }
    for text, why in bad.items():
        with pytest.raises(VitedgeError, match="TF_CONFIG is malformed") as info:
            parse_tf_config(text)
        assert why in str(info.value), (text, str(info.value))


def test_auto_picks_multi_worker_then_mirrored_then_none():
    assert resolve_mode("auto", {"TF_CONFIG": _tf_config([1, 2])}, gpus=0) == "multi-worker"
    assert resolve_mode("auto", {}, gpus=4) == "mirrored"
    assert resolve_mode("auto", {}, gpus=1) == "none"
    assert resolve_mode("none", {"TF_CONFIG": _tf_config([1, 2])}, gpus=8) == "none"
    with pytest.raises(VitedgeError, match="--distribute must be one of"):
        resolve_mode("horovod", {}, gpus=0)


@pytest.mark.parametrize("workers,local", [(1, 2), (2, 1), (2, 2), (3, 4)])
def test_shards_feed_every_row_of_each_global_batch_once(workers, local):
    steps, per_replica = 5, 3
    batch = workers * local * per_replica
    shards = [shard_rows(steps, batch, w, local, per_replica) for w in range(workers)]
    fed = np.concatenate(shards)
    assert sorted(fed.tolist()) == list(range(steps * batch))  # none twice, none skipped
    for rows in shards:  # step s of every worker comes from global batch s
        np.testing.assert_array_equal(rows.reshape(steps, -1) // batch, np.repeat(np.arange(steps), local * per_replica)
                                      .reshape(steps, -1))


MIRRORED_VS_ONE_DEVICE = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from vitedge.distribute import start_strategy
    from vitedge.train import TrainSettings, train
    from vitedge.variants import ViTConfig

    data, out = sys.argv[1], sys.argv[2]
    config = ViTConfig(image_size=(16, 16), patch_size=4, width=32, depth=2, heads=2, mlp_dim=64, num_classes=3,
                       variant="tiny-test")
    settings = TrainSettings(epochs=2, batch_size=12, lr=3e-3, val_split=0.25, seed=7)
    dist = start_strategy("mirrored")
    said = []
    mirrored = train(data, config, settings, out + "/mirrored", distribution=dist,
                     on_event=lambda kind, info: said.append(info) if kind == "distribute" else None)
    single = train(data, config, settings, out + "/single")
    np.savez(out + "/weights.npz", replicas=dist.replicas, per_replica=said[0]["per_replica_batch"],
             losses=np.array([[r["loss"] for r in mirrored.history], [r["loss"] for r in single.history]]),
             **{f"m{i}": w for i, w in enumerate(mirrored.model.get_weights())},
             **{f"s{i}": w for i, w in enumerate(single.model.get_weights())})
""")


def test_mirrored_on_two_logical_cpus_equals_one_device(shapes, tmp_path):
    """Same global batch, same seed: 2 replicas end with one device's weights (float tolerance)."""
    script = tmp_path / "run.py"
    script.write_text(MIRRORED_VS_ONE_DEVICE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script), str(shapes), str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "weights.npz") as z:
        assert int(z["replicas"]) == 2 and int(z["per_replica"]) == 6
        np.testing.assert_allclose(z["losses"][0], z["losses"][1], rtol=1e-5)
        n = sum(k.startswith("m") for k in z.files)
        assert n > 10
        diffs = [float(np.abs(z[f"m{i}"] - z[f"s{i}"]).max()) for i in range(n)]
        moved = [float(np.abs(z[f"s{i}"]).max()) for i in range(n)]
    assert max(diffs) < 1e-4, diffs  # 8 AdamW steps; float sums in another order
    assert max(moved) > 0.05


TINY_CLI = ["--patch-size", 4, "--width", 32, "--depth", 1, "--heads", 2, "--mlp-dim", 64, "--image-size", 16,
            "--batch-size", 12, "--epochs", 1]


def test_strategies_that_cannot_start_fail_in_one_line(shapes, tmp_path):
    out = tmp_path / "m.keras"
    line = assert_one_line_error(run_cli("train", "--data", shapes, *TINY_CLI, "--distribute", "mirrored", "-o", out))
    assert "--distribute mirrored needs more than one GPU" in line
    line = assert_one_line_error(run_cli("train", "--data", shapes, *TINY_CLI, "-o", out,
                                         env={"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1"]}'}))
    assert "TF_CONFIG is malformed" in line
    line = assert_one_line_error(run_cli("train", "--data", shapes, *TINY_CLI, "--distribute", "multi-worker",
                                         "-o", out, env={"TF_CONFIG": ""}))
    assert "needs TF_CONFIG" in line
    # Worker 1 of a 2-worker cluster never starts: worker 0 gives up after --cluster-timeout.
    proc = run_cli("train", "--data", shapes, *TINY_CLI, "--cluster-timeout", 4, "-o", out,
                   env={"TF_CONFIG": _tf_config(_free_ports(2), index=0)}, timeout=120)
    line = assert_one_line_error(proc)
    assert "joined within --cluster-timeout 4 s" in line
    assert not out.exists() and not (tmp_path / "m.ckpt").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no partial files either


def _start_workers(shapes, tmp_path, extra=(), n=2, epochs=3):
    ports = _free_ports(n)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = ["train", "--data", shapes, *TINY_CLI[:-2], "--epochs", epochs, "--lr", 3e-3, "--val-split", 0.25,
            "--distribute", "multi-worker", "--cluster-timeout", 20, "--checkpoint-dir", tmp_path / "run.ckpt",
            "-o", tmp_path / "mw.keras", "--json", *extra]
    return [subprocess.Popen([sys.executable, "-m", "vitedge", *map(str, args)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**env, "TF_CONFIG": _tf_config(ports, i)})
            for i in range(n)]


def test_two_local_workers_train_like_one_process(shapes, tmp_path):
    """A real TF_CONFIG cluster of 2 processes on 127.0.0.1: the same run as one process (same global
    batches), the chief writes a normal .keras that `vitedge info` reads, the other worker writes nothing."""
    workers = _start_workers(shapes, tmp_path)
    outs = [w.communicate(timeout=300) for w in workers]
    for w, (_, err) in zip(workers, outs, strict=True):
        assert w.returncode == 0, err[-3000:]
    chief, other = (json.loads(out) for out, _ in outs)
    assert chief["distribute"] == {"mode": "multi-worker", "replicas": 2, "workers": 2, "per_replica_batch": 6}
    assert other["chief"] is False and "global batch 12 = 6 per replica" in outs[1][1]
    single = run_cli("train", "--data", shapes, *TINY_CLI[:-2], "--epochs", 3, "--lr", 3e-3, "--val-split", 0.25,
                     "--distribute", "none", "-o", tmp_path / "one.keras", "--json")
    assert single.returncode == 0, single.stderr
    one = json.loads(single.stdout)
    np.testing.assert_allclose([r["loss"] for r in chief["history"]], [r["loss"] for r in one["history"]], rtol=1e-4)
    assert abs(chief["val_top1"] - one["val_top1"]) <= 1 / 18 + 1e-9  # 18 validation images: one may flip
    info = run_cli("info", tmp_path / "mw.keras", "--json")
    assert info.returncode == 0, info.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mw.keras", "one.keras"]  # checkpoint removed


@pytest.mark.slow  # ~40 s: two real worker processes, one killed and the cluster restarted (make test-slow)
def test_a_killed_worker_and_resume_continue_the_run(shapes, tmp_path):
    """Worker 1 is killed after the chief checkpointed an epoch; the chief stops (it cannot finish a
    collective step alone) without writing the model; every worker restarted with --resume
    continues from the checkpoint to the end, like the uninterrupted run."""
    import signal
    import time

    state = tmp_path / "run.ckpt" / "state.json"
    workers = _start_workers(shapes, tmp_path, epochs=30)
    deadline = time.monotonic() + 240
    while not state.exists() and time.monotonic() < deadline and workers[0].poll() is None:
        time.sleep(0.01)
    assert state.exists(), workers[0].communicate()[1][-3000:]
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait()
    try:
        _, err = workers[0].communicate(timeout=120)
        survived = workers[0].returncode
    except subprocess.TimeoutExpired:  # a chief blocked in a collective: ended like a cluster manager would
        workers[0].kill()
        _, err = workers[0].communicate()
        survived = "hung"
    assert survived != 0, err[-2000:]
    said = err.strip().splitlines()[-1] if err.strip() else ""
    if survived != "hung":
        assert err.strip().splitlines()[-1].startswith("vitedge: error:"), err[-2000:]
    done = json.loads(state.read_text())["epochs_done"]
    assert 1 <= done < 30 and not (tmp_path / "mw.keras").exists()

    workers = _start_workers(shapes, tmp_path, extra=["--resume"], epochs=30)
    outs = [w.communicate(timeout=300) for w in workers]
    for w, (_, err) in zip(workers, outs, strict=True):
        assert w.returncode == 0, err[-3000:]
    chief = json.loads(outs[0][0])
    assert chief["resumed_from_epoch"] == done and [r["epoch"] for r in chief["history"]] == list(range(1, 31))
    assert (tmp_path / "mw.keras").exists()
    print(f"chief after the kill: {survived} {said!r}; resumed from epoch {done}")
