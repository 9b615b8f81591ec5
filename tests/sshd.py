"""A throw-away OpenSSH server on 127.0.0.1 for tests: its own host key, user key, config and port.

`make sshd-deb` installs Debian's openssh-server (/usr/sbin/sshd); without it the tests that use
this skip. The client side is an ssh config file (`Sshd.client_config`) naming the user key and a
known_hosts file that holds the server's key, so no ~/.ssh file is read or written.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def missing() -> str | None:
    """Why the SSH tests cannot run here, or None."""
    if not os.access(SSHD, os.X_OK):
        return f"no {SSHD}: install OpenSSH's server (make sshd-deb, Debian's openssh-server)"
    for tool in ("ssh", "scp", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH (Debian's openssh-client)"
    return None


def _die_with_parent() -> None:
    """In the sshd child before exec: its own session, and killed if the test process dies
    without stopping it (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vitedge-test", "-f", str(path)], check=True)
    return path


class Sshd:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.port = free_port()
        self.host_key = keygen(root / "host_key")
        self.user_key = keygen(root / "user_key")
        (root / "authorized_keys").write_text(Path(f"{self.user_key}.pub").read_text())
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {Path(f'{self.host_key}.pub').read_text()}")
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\nPidFile {root}/sshd.pid\n"
            f"AuthorizedKeysFile {root}/authorized_keys\n"
            # The tests run as root on CI machines: key logins only.
            "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
            "Subsystem sftp internal-sftp\n")
        self.client_config = self.write_client_config(root / "ssh_config", self.user_key, self.known_hosts)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def write_client_config(self, path: Path, identity: Path, known_hosts: Path) -> Path:
        path.write_text(f"Host *\n  IdentityFile {identity}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n"
                        "  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n")
        return path

    def start(self) -> Sshd:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        self.log = open(self.root / "sshd.log", "ab")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stderr=self.log,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-500:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening in 20 s")

    def descendants(self) -> list[int]:
        """Every process below sshd (its per-connection children start sessions of their own)."""
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            kids = [p for p, pp in parents.items() if pp == pid]
            found += kids
            todo += kids
        return found

    def stop(self) -> None:
        """Stop sshd and every connection it serves (what a device going off the network looks like)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for pid in [self.proc.pid, *self.descendants()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.log.close()
