"""Pick and start the tf.distribute strategy `vitedge train --distribute` asks for.

vitedge has no distribution code of its own: TensorFlow's strategies do the work (MirroredStrategy
for the devices of one host, MultiWorkerMirroredStrategy across hosts named by TF_CONFIG,
TPUStrategy). This module only chooses one, checks what it needs before TensorFlow starts
(so a bad TF_CONFIG is one clear line, not a gRPC trace) and bounds the wait for the cluster.

The strategies are a registry (`STRATEGIES`): name -> function starting it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import VitedgeError

MODES = ("auto", "none", "mirrored", "multi-worker", "tpu")
CLUSTER_JOBS = ("chief", "worker")  # the jobs that train; MultiWorkerMirrored has no parameter servers


@dataclass(frozen=True)
class ClusterConfig:
    """A checked TF_CONFIG: the training tasks of the cluster and which one this process is."""

    cluster: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def num_workers(self) -> int:
        return sum(len(self.cluster.get(job, [])) for job in CLUSTER_JOBS)

    @property
    def worker_index(self) -> int:
        """Position among all training tasks: the chief (if any) first, then the workers."""
        chiefs = len(self.cluster.get("chief", []))
        return self.task_index if self.task_type == "chief" else chiefs + self.task_index

    @property
    def is_chief(self) -> bool:
        # TensorFlow's rule: the "chief" task, or worker 0 when the cluster has no chief.
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_index == 0


def parse_tf_config(text: str | None) -> ClusterConfig | None:
    """Check TF_CONFIG; None when unset or empty. Raises VitedgeError naming what is wrong."""
    if text is None or not text.strip():
        return None

    def bad(why: str) -> VitedgeError:
        return VitedgeError(f"TF_CONFIG is malformed: {why}")

    try:
        conf = json.loads(text)
    except ValueError as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(conf, dict):
        raise bad("it must be a JSON object with \"cluster\" and \"task\"")
    cluster, task = conf.get("cluster"), conf.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise bad("\"cluster\" must map job names to lists of host:port")
    for job, addresses in cluster.items():
        if job not in (*CLUSTER_JOBS, "evaluator"):
            raise bad(f"job {job!r} is not supported (MultiWorkerMirrored uses \"chief\" and \"worker\")")
        if not isinstance(addresses, list) or not addresses:
            raise bad(f"cluster job {job!r} must list at least one host:port")
        for address in addresses:
            _check_address(address, bad)
    if len(cluster.get("chief", [])) > 1:
        raise bad("a cluster has at most one chief")
    if not isinstance(task, dict):
        raise bad("\"task\" must be an object like {\"type\": \"worker\", \"index\": 0}")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in CLUSTER_JOBS:
        raise bad(f"task type {task_type!r} must be \"chief\" or \"worker\"")
    if task_type not in cluster:
        raise bad(f"task type {task_type!r} is not a job of the cluster")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise bad(f"task index {index!r} is not in 0..{len(cluster[task_type]) - 1}")
    jobs = {job: list(addresses) for job, addresses in cluster.items() if job in CLUSTER_JOBS}
    return ClusterConfig(jobs, task_type, index)


def _check_address(address, bad: Callable[[str], VitedgeError]) -> None:
    if not isinstance(address, str) or ":" not in address:
        raise bad(f"address {address!r} is not host:port")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise bad(f"address {address!r} is not host:port")


def resolve_mode(requested: str, env: Mapping[str, str] | None = None, gpus: int | None = None) -> str:
    """`auto` -> multi-worker when TF_CONFIG names a cluster, mirrored with more than one GPU, else none."""
    if requested not in MODES:
        raise VitedgeError(f"--distribute must be one of {', '.join(MODES)}")
    if requested != "auto":
        return requested
    env = os.environ if env is None else env
    if parse_tf_config(env.get("TF_CONFIG")) is not None:
        return "multi-worker"
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if gpus > 1 else "none"


@dataclass
class Distribution:
    """A started strategy and where this process stands in it."""

    mode: str
    strategy: object  # a tf.distribute.Strategy
    num_workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def local_replicas(self) -> int:
        return self.replicas // self.num_workers

    def per_replica_batch(self, global_batch: int) -> int:
        if global_batch % self.replicas:
            raise VitedgeError(f"--batch-size {global_batch} (global) does not split evenly over "
                               f"{self.replicas} replicas; use a multiple of {self.replicas}")
        return global_batch // self.replicas

    def describe(self, global_batch: int) -> str:
        where = f"{self.num_workers} workers, this is worker {self.worker_index}" if self.num_workers > 1 else "1 process"
        return (f"distribute: {self.mode}, {self.replicas} replica(s) ({where}); global batch {global_batch} = "
                f"{self.per_replica_batch(global_batch)} per replica")


def _start_none(timeout: float) -> Distribution:
    import tensorflow as tf

    return Distribution("none", tf.distribute.get_strategy())


def _start_mirrored(timeout: float) -> Distribution:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    # More than one logical CPU exists only when a program configured them (tests, debugging).
    devices = gpus if len(gpus) > 1 else cpus if len(cpus) > 1 and not gpus else []
    if not devices:
        raise VitedgeError(f"--distribute mirrored needs more than one GPU on this host, found {len(gpus)}; "
                           "use --distribute none (or auto)")
    return Distribution("mirrored", tf.distribute.MirroredStrategy([d.name for d in devices]))


def _start_multi_worker(timeout: float) -> Distribution:
    conf = parse_tf_config(os.environ.get("TF_CONFIG"))
    if conf is None:
        raise VitedgeError("--distribute multi-worker needs TF_CONFIG naming the cluster and this task "
                           "(see docs/distributed-training.md)")
    import tensorflow as tf

    def start():
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        # One all-reduce: returns only once every worker has joined the collective group.
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)
        return strategy

    strategy = within_timeout(start, timeout, f"not every worker of TF_CONFIG's cluster ({conf.num_workers} "
                              f"tasks) joined within --cluster-timeout {timeout:g} s; nothing was written")
    return Distribution("multi-worker", strategy, conf.num_workers, conf.worker_index, conf.is_chief)


def _start_tpu(timeout: float) -> Distribution:
    import tensorflow as tf

    def start():
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)

    try:
        strategy = within_timeout(start, timeout, f"the TPU did not answer within --cluster-timeout {timeout:g} s")
    except VitedgeError:
        raise
    except Exception as exc:  # TensorFlow raises several types when no TPU is reachable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VitedgeError(f"--distribute tpu: no TPU reachable ({first[:200]})") from None
    return Distribution("tpu", strategy)


STRATEGIES: dict[str, Callable[[float], Distribution]] = {
    "none": _start_none,
    "mirrored": _start_mirrored,
    "multi-worker": _start_multi_worker,
    "tpu": _start_tpu,
}


def start_strategy(requested: str, cluster_timeout: float = 300.0) -> Distribution:
    """Start the strategy `requested` (one of MODES); a clear VitedgeError when it cannot start."""
    if not cluster_timeout > 0:
        raise VitedgeError("--cluster-timeout must be positive")
    mode = resolve_mode(requested)
    return STRATEGIES[mode](cluster_timeout)


def within_timeout(work: Callable[[], object], timeout: float, message: str):
    """Run `work`; if it has not returned after `timeout` s, print `message` as the error and end.

    TensorFlow's cluster start-up blocks in C++ (holding the interpreter, so no Python thread or
    signal handler runs) and ignores SIGTERM while it waits for missing peers. So a tiny watchdog
    process does it: it prints the line and SIGKILLs this process. Nothing has been written at
    that point (output and checkpoints come later).
    """
    import subprocess

    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout), f"vitedge: error: {message}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        return work()
    finally:
        watchdog.kill()
        watchdog.wait()


_WATCHDOG = """
import os, signal, sys, time
pid, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(timeout)
sys.stderr.write(message + "\\n")
sys.stderr.flush()
os.kill(pid, signal.SIGKILL)
"""
