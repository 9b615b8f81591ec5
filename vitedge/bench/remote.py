"""`vitedge bench --device ssh://[user@]host[:port]`: the bench worker on another machine over SSH.

The workstation plans the rows and preprocesses the images as for a local run; for an SSH device
it then copies each artifact (with the weights files its format declares, e.g. OpenVINO's .bin)
and each preprocessed input file into a work folder on the device, under a folder named by their
content hash (a file already there is not copied again), runs `python -m vitedge.bench.worker`
there through `ssh` (one process per artifact, the same JSON job and replies as locally, progress
streamed back), and copies the scores back: accuracy and agreement are computed here, so the
device needs no data set.

Transport: OpenSSH's own `ssh` and `scp` clients, as argument lists (never a local shell). They
honour `~/.ssh/config` (aliases, jump hosts, identities), the ssh agent and known_hosts like any
other ssh command the user runs, and need nothing new on the device beyond its sshd; a Python SSH
library would need its own configuration, its own host-key store and a new dependency. Host keys
are checked (`StrictHostKeyChecking=yes`; `accept-new` only with `--accept-new-host-key`) and no
password prompt can hang a run (`BatchMode=yes`). The one command string the remote shell sees is
built with `shlex.quote` for every part that comes from the user (python path, folders).

Faults (unreachable host, refused key, no Python, no vitedge, no disk space) stop the device at
`start` with one clear line; a worker killed, disconnected or timed out fails its row only. The
work folder is removed at `close` unless `keep` (`--keep-remote`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .. import __version__, formats
from ..errors import UsageError, VitedgeError
from ..fileio import sha256_file, work_directory, work_folder
from .runner import LocalDevice, Settings, stream_worker

DEFAULT_REMOTE_DIR = ".cache/vitedge/remote"  # relative to the login folder on the device
SSH_CONNECT_TIMEOUT_S = 15
CONTROL_TIMEOUT_S = 120  # probe, mkdir, install, cleanup: one ssh round trip each
HOST_RE = re.compile(r"^[A-Za-z0-9_.:%-]+$")
USER_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
REMOTE_DIR_RE = re.compile(r"^[A-Za-z0-9_./+-]+$")

# Run by the device's Python: what it is, whether vitedge is there, room for the work folder.
PROBE = r"""
import json, os, platform, shutil, sys
work = sys.argv[1]
out = {"python": platform.python_version(), "executable": sys.executable, "arch": platform.machine(),
       "os": platform.platform(), "cores": os.cpu_count(), "files": []}
p = os.path.abspath(work)
while not os.path.isdir(p):
    p = os.path.dirname(p)
out["free_bytes"] = shutil.disk_usage(p).free
try:
    out["files"] = sorted(os.listdir(os.path.join(work, "files")))
except OSError:
    pass
try:
    import vitedge
    out["vitedge"] = vitedge.__version__
    out["vitedge_path"] = os.path.dirname(vitedge.__file__)
except Exception as exc:
    out["vitedge"] = None
    out["vitedge_error"] = (type(exc).__name__ + ": " + str(exc))[:200]
if out["vitedge"]:
    try:
        from vitedge.bench.report import machine_info
        out["machine"] = machine_info()
    except Exception as exc:
        out["machine_error"] = (type(exc).__name__ + ": " + str(exc))[:200]
    try:  # what `vitedge doctor --json` prints there
        from vitedge.doctor import report
        out["doctor"] = report()
    except Exception as exc:
        out["doctor_error"] = (type(exc).__name__ + ": " + str(exc))[:200]
print(json.dumps(out))
"""

# Run by the device's Python with --install: a venv that sees the device Python's packages (its
# numpy, onnxruntime, ...), vitedge unpacked from the workstation's wheel into it (a pure-Python
# wheel is a zip of the site-packages files; no pip and no index needed), the core dependencies checked.
INSTALL = r"""
import importlib.metadata as md, json, os, shutil, site, subprocess, sys, sysconfig, zipfile
venv, wheel, requires = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if not os.path.exists(os.path.join(venv, "bin", "python")):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv], check=True)
paths = sysconfig.get_paths(vars={"base": venv, "platbase": venv})
purelib = paths["purelib"]
if sys.prefix != sys.base_prefix:  # the device Python is a venv itself: its packages too
    with open(os.path.join(purelib, "_vitedge_device_base.pth"), "w") as fh:
        for d in site.getsitepackages():
            fh.write("import site; site.addsitedir(%r)\n" % d)
for name in os.listdir(purelib):
    if name == "vitedge" or (name.startswith("vitedge-") and name.endswith(".dist-info")):
        shutil.rmtree(os.path.join(purelib, name))
with zipfile.ZipFile(wheel) as zf:
    for member in zf.namelist():
        target = os.path.realpath(os.path.join(purelib, member))
        if not target.startswith(os.path.realpath(purelib) + os.sep):
            raise SystemExit("unsafe path in the wheel: " + member)
    zf.extractall(purelib)
check = ("import importlib.metadata as md, json, sys\nmissing = []\nfor dist in json.loads(sys.argv[1]):\n"
         "    try:\n        md.version(dist)\n    except md.PackageNotFoundError:\n        missing.append(dist)\n"
         "import vitedge\nprint(json.dumps({'missing': missing, 'vitedge': vitedge.__version__}))")
env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # the venv as it is
got = subprocess.run([os.path.join(venv, "bin", "python"), "-c", check, json.dumps(requires)],
                     capture_output=True, text=True, check=True, env=env)
print(got.stdout.strip().splitlines()[-1])
"""


@dataclass(frozen=True)
class SshTarget:
    """ssh://[user@]host[:port], checked: nothing in it can pass for an ssh option."""

    spec: str
    host: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def parse_device(spec: str) -> SshTarget | None:
    """`local` -> None; `ssh://[user@]host[:port]` -> SshTarget; anything else a UsageError."""
    if spec == "local":
        return None
    bad = f"--device {spec}: expected 'local' or ssh://[user@]host[:port]"
    if not spec.startswith("ssh://"):
        raise UsageError(bad)
    try:
        parts = urlsplit(spec)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{bad} ({exc})") from None
    host, user = parts.hostname, parts.username
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password is not None:
        raise UsageError(bad)
    if not host or host.startswith("-") or not HOST_RE.match(host):
        raise UsageError(f"{bad} (no usable host name)")
    if user is not None and not USER_RE.match(user):
        raise UsageError(f"{bad} (unusable user name {user!r})")
    return SshTarget(spec, host, user, port)


@dataclass(frozen=True)
class SshOptions:
    config: str | None = None  # ssh -F FILE (default: ~/.ssh/config)
    accept_new_host_key: bool = False
    connect_timeout: int = SSH_CONNECT_TIMEOUT_S


class Ssh:
    """Argument lists for OpenSSH's ssh and scp to one target."""

    def __init__(self, target: SshTarget, options: SshOptions):
        self.target, self.options = target, options
        self.control: str | None = None  # the master connection's socket, once open

    def _common(self) -> list[str]:
        o = self.options
        args = ["-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={'accept-new' if o.accept_new_host_key else 'yes'}",
                "-o", f"ConnectTimeout={o.connect_timeout}", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.control:  # no master (gone or never made): ssh connects on its own
            args += ["-o", f"ControlPath={self.control}", "-o", "ControlMaster=no"]
        return (["-F", o.config] if o.config else []) + args

    def open_master(self, folder: str) -> None:
        """One authenticated connection that every later ssh/scp call rides on (a handshake costs
        most of a second on a Pi): `ssh -M -N -f`, its stderr to a file (a pipe would stay open in
        the background process). Raises VitedgeError with ssh's reason when it cannot connect."""
        control = f"{folder}/cm-%C"
        port = ["-p", str(self.target.port)] if self.target.port else []
        err_path = Path(folder) / "master.err"
        with open(err_path, "w") as err:
            proc = subprocess.run(["ssh", *self._common(), *port, "-M", "-N", "-f", "-o", f"ControlPath={control}",
                                   "-o", "ControlPersist=60", "--", self.target.destination],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                  timeout=self.options.connect_timeout + 60)
        if proc.returncode != 0:
            raise VitedgeError(f"cannot connect: {ssh_error(err_path.read_text(errors='replace'))}")
        self.control = control

    def close_master(self) -> None:
        if self.control:
            subprocess.run(["ssh", *self._common(), "-O", "exit", "--", self.target.destination],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            self.control = None

    def ssh_argv(self, command: str) -> list[str]:
        port = ["-p", str(self.target.port)] if self.target.port else []
        return ["ssh", *self._common(), *port, "-T", "--", self.target.destination, command]

    def scp_argv(self, sources: list[str], dest: str) -> list[str]:
        port = ["-P", str(self.target.port)] if self.target.port else []
        return ["scp", "-q", *self._common(), *port, "--", *sources, dest]

    def remote(self, path: str) -> str:
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return f"{self.target.user}@{host}:{path}" if self.target.user else f"{host}:{path}"

    def run(self, command: str, timeout: float = CONTROL_TIMEOUT_S) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self.ssh_argv(command), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise VitedgeError(f"no answer from {self.target.destination} after {timeout:g} s") from None

    def copy(self, sources: list[str], dest: str, timeout: float) -> None:
        try:
            proc = subprocess.run(self.scp_argv(sources, dest), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise VitedgeError(f"copying to/from {self.target.destination} took over {timeout:g} s") from None
        if proc.returncode != 0:
            raise VitedgeError(f"copy failed: {ssh_error(proc.stderr)}")


def ssh_error(stderr: str) -> str:
    """The line of ssh's/scp's stderr that says what went wrong, with a hint for host keys."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently added")]
    text = lines[-1] if lines else "ssh failed without a message"
    if "Host key verification failed" in text:
        known = next((ln for ln in lines if "host key is known" in ln or "HOST IDENTIFICATION HAS CHANGED" in ln), "")
        if "is known" in known:
            text += " (the host is not in known_hosts: connect once with ssh, or --accept-new-host-key)"
        else:
            text += " (its key is not the one in known_hosts)"
    return text[:300]


def core_requirements() -> list[str]:
    """The distributions the core install needs (vitedge's own metadata, extras left out)."""
    import importlib.metadata

    try:
        reqs = importlib.metadata.requires("vitedge") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0] for r in reqs if "extra ==" not in r]


def source_tree() -> Path:
    """The folder this vitedge was installed from (pyproject.toml beside the package), for --install."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "vitedge" / "__init__.py").is_file():
        raise VitedgeError("--install builds a wheel of this vitedge, but it does not run from a source "
                           "checkout (no pyproject.toml beside the package)")
    return root


def build_wheel(out_dir: Path) -> Path:
    """A wheel of this vitedge, built offline from a clean copy of its source tree."""
    import sys

    src = out_dir / "src"
    ignore = shutil.ignore_patterns(".git", ".venv*", "out", "results", "data", "models", "build", "dist",
                                    "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(source_tree(), src, ignore=ignore)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out_dir / "wheel"), str(src)], capture_output=True, text=True)
    wheels = sorted((out_dir / "wheel").glob("vitedge-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["no wheel written"]
        raise VitedgeError(f"building a wheel of vitedge failed (needs pip and setuptools here): {last[0][:200]}")
    return wheels[0]


class SshDevice:
    """One device reached over SSH; see the module docstring."""

    def __init__(self, target: SshTarget, options: SshOptions, python: str = "python3",
                 remote_dir: str = DEFAULT_REMOTE_DIR, keep: bool = False, install: bool = False):
        remote_dir = remote_dir[2:] if remote_dir.startswith("~/") else remote_dir  # see `python` below
        if not REMOTE_DIR_RE.match(remote_dir) or ".." in remote_dir.split("/"):
            raise UsageError(f"--remote-dir {remote_dir}: letters, digits and ._/+- only, no '..'")
        self.target, self.ssh = target, Ssh(target, options)
        self.name = target.spec
        # ~/ is the login folder, where every remote command starts: a relative path says the same
        # without relying on the remote shell's tilde expansion (the path is quoted).
        python = python[2:] if python.startswith("~/") else python
        self.python, self.keep, self.install = python, keep, install
        self.base = remote_dir.rstrip("/") or "/"
        self.work = f"{self.base}/work"
        self.run_dir = f"{self.work}/run-{uuid.uuid4().hex[:12]}"
        self.threads: int | None = None
        self.info: dict = {}
        self.started = False
        self.have: set[str] = set()  # content hashes already on the device
        self.hashes: dict[tuple, str] = {}  # (real path, size, mtime) -> sha256
        self.free_bytes: int | None = None
        self.timeout = 900.0
        self.jobs = 0
        self.local_tmp: str | None = None
        self.made_work = False  # something written into the work folder (close removes it)

    # ------------------------------------------------------------------------ start ---
    def _python(self, script: str, *args: str, timeout: float = CONTROL_TIMEOUT_S) -> dict:
        proc = self.ssh.run(shlex.join([self.python, "-c", script, *args]), timeout=timeout)
        if proc.returncode == 255:
            raise VitedgeError(f"cannot connect: {ssh_error(proc.stderr)}")
        if proc.returncode == 127:
            raise VitedgeError(f"no Python at {self.python!r} on the device (--device-python PATH)")
        if proc.returncode != 0:
            raise VitedgeError(f"{self.python} failed on the device: {ssh_error(proc.stderr)}")
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise VitedgeError(f"{self.python} on the device answered something else than expected: "
                               f"{proc.stdout.strip()[:120]!r}") from None

    def start(self, settings: Settings) -> None:
        """Connect, check the device's Python and vitedge (install it with --install), make the work folder."""
        self.timeout = settings.timeout
        self.local_tmp = work_folder("ssh")
        try:
            self.ssh.open_master(self.local_tmp)
        except subprocess.TimeoutExpired:
            raise VitedgeError(f"cannot connect: no answer from {self.target.destination}") from None
        probe = self._python(PROBE, self.work)
        if probe.get("vitedge") != __version__:
            found = (f"vitedge {probe['vitedge']}" if probe.get("vitedge")
                     else "no vitedge" + (f" ({probe['vitedge_error']})" if probe.get("vitedge_error") else ""))
            if not self.install:
                raise VitedgeError(f"{self.python} on the device has {found}, this workstation has {__version__}: "
                                   "--install puts the same version into a venv there (no internet needed)")
            self._install()
            probe = self._python(PROBE, self.work)
            if probe.get("vitedge") != __version__:
                raise VitedgeError(f"installed vitedge {__version__}, but {self.python} imports "
                                   f"{probe.get('vitedge') or probe.get('vitedge_error')}")
        self.have = set(probe.get("files") or [])
        self.free_bytes = probe.get("free_bytes")
        machine = probe.get("machine") or {k: probe.get(k) for k in ("python", "arch", "os", "cores")}
        self.info = {"python_path": self.python, "vitedge_path": probe.get("vitedge_path"), **machine}
        if settings.threads_auto:
            self.threads = machine.get("usable_cores") or machine.get("cores") or None
        self.info["doctor"] = probe.get("doctor") or {"error": probe.get("doctor_error")}
        self._ssh_ok(shlex.join(["mkdir", "-p", "--", f"{self.work}/files", self.run_dir]), "making the work folder")
        self.started = True

    def _ssh_ok(self, command: str, what: str) -> None:
        proc = self.ssh.run(command)
        if proc.returncode != 0:
            raise VitedgeError(f"{what} failed: {ssh_error(proc.stderr)}")

    def _install(self) -> None:
        venv = f"{self.base}/venv-{__version__}"
        with work_directory("wheel") as tmp:
            wheel = build_wheel(Path(tmp))
            self.made_work = True
            self._ssh_ok(shlex.join(["mkdir", "-p", "--", f"{self.work}/files", self.run_dir]), "making the work folder")
            remote_wheel = self._upload([wheel])[0]
        got = self._python(INSTALL, venv, remote_wheel, json.dumps(core_requirements()), timeout=self.timeout)
        self.python = f"{venv}/bin/python"
        if got.get("missing"):
            raise VitedgeError(f"vitedge {__version__} is in {venv} on the device, but it lacks "
                               f"{', '.join(got['missing'])}: install them for {self.python} there "
                               f"('{self.python} -m pip install ...' or Debian's packages), then run again")

    # --------------------------------------------------------------------- transfer ---
    def _upload(self, paths: list[Path], names: list[str] | None = None) -> list[str]:
        """Copy files that belong together (an artifact and its weights) into files/<hash>/ once;
        `names`: their paths inside that folder (default: the file names)."""
        names = names or [p.name for p in paths]
        h = hashlib.sha256()
        for p, name in zip(paths, names, strict=True):
            h.update(name.encode() + b"\0" + self._hash(p).encode() + b"\0")
        key = h.hexdigest()[:32]
        folder = f"{self.work}/files/{key}"
        remote = [f"{folder}/{name}" for name in names]
        if key in self.have:
            return remote
        need = sum(p.stat().st_size for p in paths)
        if self.free_bytes is not None and need + (16 << 20) > self.free_bytes:
            raise VitedgeError(f"not enough disk space on the device: {need / 1e6:.1f} MB to copy into "
                               f"{self.work}, {self.free_bytes / 1e6:.1f} MB free")
        part = f"{folder}.part-{uuid.uuid4().hex[:8]}"
        groups: dict[str, list[str]] = {}  # sub-folder -> files (external data may sit in one)
        for p, name in zip(paths, names, strict=True):
            groups.setdefault(name.rpartition("/")[0], []).append(str(p))
        self._ssh_ok(shlex.join(["mkdir", "-p", "--", *(f"{part}/{sub}".rstrip("/") for sub in groups)]),
                     "making a folder on the device")
        for sub, files in groups.items():
            self.ssh.copy(files, self.ssh.remote(f"{part}/{sub}".rstrip("/") + "/"), self.timeout)
        # Renamed only once complete: a folder named by a hash always holds those files whole.
        self._ssh_ok(f"mv -T -- {shlex.quote(part)} {shlex.quote(folder)} 2>/dev/null || rm -rf -- {shlex.quote(part)}",
                     "moving the copied files into place")
        self.have.add(key)
        if self.free_bytes is not None:
            self.free_bytes -= need
        return remote

    def _hash(self, path: Path) -> str:
        st = path.stat()
        stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if stamp not in self.hashes:  # the input file is shared by many jobs: hash it once
            self.hashes[stamp] = sha256_file(path)
        return self.hashes[stamp]

    def _artifact(self, path: str) -> str:
        local = Path(path)
        try:
            extra = formats.for_path(local).weights_paths(local)
        except VitedgeError:
            extra = []  # a .keras reference: the worker will say what it lacks
        extra = [p for p in extra if p.is_file()]
        folder = local.resolve().parent
        names = [local.name] + [p.resolve().relative_to(folder).as_posix() if p.resolve().is_relative_to(folder)
                                else p.name for p in extra]
        if any(not REMOTE_DIR_RE.match(n) or ".." in n.split("/") for n in names):
            raise VitedgeError(f"{local}: a file name with characters the device copy does not take: {names}")
        return self._upload([local, *extra], names)[0]

    def _remote_job(self, job: dict, scores: dict) -> dict:
        """The job with every local path replaced by its copy on the device (copied if needed)."""
        out = dict(job)
        if "path" in out:
            out["path"] = self._artifact(out["path"])
        if "inputs" in out:
            out["inputs"] = {**out["inputs"], "file": self._upload([Path(out["inputs"]["file"])])[0]}
        if "scores" in out:
            remote = f"{self.run_dir}/scores{self.jobs}.npy"
            scores[remote] = out["scores"]
            out["scores"] = remote
        if "together" in out:
            out["together"] = [self._remote_job(sub, scores) for sub in out["together"]]
        if "timing" in out:
            out["timing"] = {**out["timing"], "path": self._artifact(out["timing"]["path"])}
        return out

    # ---------------------------------------------------------------------- workers ---
    def run_worker(self, job: dict, timeout: float, stderr_path: Path, on_progress=None) -> dict:
        """One worker job on the device: the same replies as `runner.run_worker`."""
        self.jobs += 1
        scores: dict[str, str] = {}
        try:
            remote_job = self._remote_job(job, scores)
        except VitedgeError as exc:
            return {"event": "error", "stage": "copy", "message": str(exc)}
        pidfile = f"{self.run_dir}/worker{self.jobs}.pid"
        # $$ is the remote shell's pid, and exec makes it the worker's: the pid file names the worker.
        command = (f"echo $$ > {shlex.quote(pidfile)} && exec {shlex.quote(self.python)} -m vitedge.bench.worker")
        reply = stream_worker(self.ssh.ssh_argv(command), None, remote_job, timeout, stderr_path, on_progress,
                              on_timeout=lambda: self.kill(pidfile), crashed="worker crashed or disconnected")
        if reply.get("event") == "error" and reply.get("stage") == "crash":
            reply["message"] = reply["message"].replace("(exit code 255)", "(ssh exit code 255)")
        if reply.get("event") == "error":
            return reply
        for remote, local in scores.items():
            try:
                self.ssh.copy([self.ssh.remote(remote)], local, self.timeout)
            except VitedgeError as exc:
                return {"event": "error", "stage": "copy", "message": f"scores: {exc}"}
        return reply

    def kill(self, pidfile: str) -> None:
        """Stop a worker left running on the device (its ssh connection is already gone)."""
        q = shlex.quote(pidfile)
        try:
            self.ssh.run(f"test -f {q} && kill -9 \"$(cat {q})\" 2>/dev/null; true", timeout=30)
        except VitedgeError:
            pass

    def close(self) -> list[str]:
        """Stop what is left and remove the work folder (unless keep); returns warnings."""
        try:
            return self._clean_up() if self.started or self.made_work else []
        finally:
            try:
                self.ssh.close_master()
            except (OSError, subprocess.TimeoutExpired):
                pass
            if self.local_tmp:
                shutil.rmtree(self.local_tmp, ignore_errors=True)
            self.started, self.made_work, self.local_tmp = False, False, None  # start() may open it again (export: once per format)

    def _clean_up(self) -> list[str]:
        run = shlex.quote(self.run_dir)
        stop = f"for f in {run}/*.pid; do test -f \"$f\" && kill -9 \"$(cat \"$f\")\" 2>/dev/null; done; "
        command = stop + ("true" if self.keep else f"rm -rf -- {shlex.quote(self.work)}")
        try:
            proc = self.ssh.run(command, timeout=60)
        except VitedgeError as exc:
            return [f"work folder {self.work} not removed: {exc}"]
        if proc.returncode != 0:
            return [f"work folder {self.work} not removed: {ssh_error(proc.stderr)}"]
        return [f"work folder kept: {self.work} (in the login folder unless absolute)"] if self.keep else []

    def describe(self) -> dict:
        return {"device": self.name, "transport": "ssh", **self.info}


def make_devices(specs: tuple[str, ...], options: SshOptions, python: str, remote_dir: str, keep: bool,
                 install: bool) -> list:
    """--device values -> device objects, in order, each once (no --device: this machine)."""
    devices, seen = [], set()
    for spec in specs or ("local",):
        if spec in seen:
            continue
        seen.add(spec)
        target = parse_device(spec)
        devices.append(LocalDevice() if target is None else
                       SshDevice(target, options, python, remote_dir, keep, install))
    return devices
