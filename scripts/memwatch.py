"""Peak resident memory of a whole process tree: `python scripts/memwatch.py -- COMMAND ...`.

`/usr/bin/time -v` reports the largest single process; an export that runs converters in
subprocesses needs the tree's sum. This samples the RSS of the command and every descendant
(from /proc) every `--interval` seconds and prints the peak sum and wall time on stderr
(`--json` for one JSON line). `--limit-gb` kills the tree when the sum passes it (a watchdog
for measurements on a shared machine). The command's exit code is returned.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


def tree_rss(root: int) -> int:
    """Bytes resident in `root` and all its descendants now."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def tree_rss_single(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--limit-gb", type=float, default=None, help="kill the tree past this sum")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--trace", default=None, metavar="FILE", help="write 'seconds GB' samples (root, tree) here")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    started = time.perf_counter()
    proc = subprocess.Popen(command, start_new_session=True)
    peak, killed = 0, False
    trace = open(args.trace, "w") if args.trace else None  # noqa: SIM115 - closed below
    while proc.poll() is None:
        now = tree_rss(proc.pid)
        peak = max(peak, now)
        if trace is not None:
            trace.write(f"{time.perf_counter() - started:.1f} {tree_rss_single(proc.pid) / 1e9:.3f} {now / 1e9:.3f}\n")
        if args.limit_gb is not None and peak > args.limit_gb * 1e9 and not killed:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        time.sleep(args.interval)
    wall = time.perf_counter() - started
    if trace is not None:
        trace.close()
    result = {"peak_rss_gb": round(peak / 1e9, 3), "wall_s": round(wall, 1), "exit": proc.returncode,
              "killed_at_limit": killed}
    if args.json:
        print(json.dumps(result), file=sys.stderr)
    else:
        print(f"memwatch: peak tree RSS {peak / 1e9:.2f} GB, wall {wall:.1f} s, exit {proc.returncode}"
              + (" (killed at --limit-gb)" if killed else ""), file=sys.stderr)
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


if __name__ == "__main__":
    sys.exit(main())
