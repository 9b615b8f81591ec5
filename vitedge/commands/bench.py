"""`vitedge bench`: accuracy and latency of every artifact, side by side."""

import sys

import click

from .. import limits
from ..errors import UsageError, VitedgeError


@click.command()
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT...")
@click.option("--data", "data_dir", type=click.Path(), default=None, metavar="DIR",
              help="Labelled images, one sub-folder per class named like the model's labels (top-1/top-5 "
                   "accuracy); or a folder of loose images (agreement only). Without it: 100 random images, "
                   "agreement only.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Use N images: a class-balanced subset, the same on every run (seed 0).")
@click.option("--threads", type=click.IntRange(1, limits.MAX_THREADS), default=None, metavar="N",
              help="Threads per runtime. Default: every core this process may use.")
@click.option("--warmup", type=click.IntRange(0, limits.MAX_RUNS), default=10, show_default=True, metavar="W",
              help="Untimed runs after the first inference.")
@click.option("--runs", type=click.IntRange(1, limits.MAX_RUNS), default=100, show_default=True, metavar="R",
              help="Timed runs (latency percentiles come from these).")
@click.option("--min-time", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="Keep timing each artifact (in each round) until this long has passed, even after R runs: "
                   "a sub-millisecond model needs more than R runs for a steady p50.")
@click.option("--rounds", type=click.IntRange(1, limits.MAX_ROUNDS), default=1, show_default=True,
              help="Repeat the timed runs in N rounds, each artifact in a fresh process next to its reference, "
                   "the order alternating; latency pools all rounds, the speed-up column is the median of "
                   "per-round ratios (robust on a shared machine).")
@click.option("--interleave", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="After the accuracy pass, time each fp32 reference and the rows compared with it together, "
                   "in one process, in turns of ~0.2 s, for SECONDS: the speed-up of int8 over fp32 then holds on "
                   "a shared machine whose speed drifts (p50 and speed-up come from these turns).")
@click.option("--batch", type=click.IntRange(1, limits.MAX_BATCH), default=1, show_default=True, metavar="B",
              help="Images per run (timed runs and the accuracy pass).")
@click.option("--reference", type=click.Path(dir_okay=False), default=None, metavar="ARTIFACT",
              help="Compare every row with this file (added as a row if not listed). Default: a .keras "
                   "model if given, else each format's fp32 artifact.")
@click.option("--provider", default=None, metavar="NAME",
              help="Runtime provider: an ONNX Runtime execution provider, or xnnpack/builtin for LiteRT.")
@click.option("--timeout", type=click.FloatRange(min=1), default=900, show_default=True, metavar="SECONDS",
              help="Give up on an artifact (a failed row) after this long.")
@click.option("--json", "json_file", default=None, metavar="FILE", help="Write every figure and the machine as JSON ('-': stdout).")
@click.option("--csv", "csv_file", default=None, metavar="FILE", help="Write every figure and the machine as CSV ('-': stdout).")
@click.option("--plot", "plot_file", default=None, metavar="FILE.png",
              help="Draw accuracy (or agreement) against p50 latency, Pareto front marked (needs matplotlib).")
@click.option("--force", is_flag=True, help="Overwrite the --json/--csv/--plot files if they exist.")
@click.option("--device", "devices", multiple=True, metavar="ssh://[USER@]HOST[:PORT]|local",
              help="Run the workers on this machine ('local', the default) or over SSH on another one "
                   "(repeatable: one table, a device column). See docs/bench-on-device.md.")
@click.option("--device-python", default="python3", show_default=True, metavar="PATH",
              help="The Python on the SSH device(s) that has vitedge (or gets it with --install).")
@click.option("--install", is_flag=True,
              help="If the device lacks this vitedge version: build a wheel here, copy it, and install it into "
                   "a venv on the device (beside the work folder) that uses the device Python's packages.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust an SSH host seen for the first time and add it to known_hosts (a changed key is still refused).")
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), default=None, metavar="FILE",
              help="ssh/scp configuration file instead of ~/.ssh/config (ssh -F).")
@click.option("--remote-dir", default=None, metavar="DIR",
              help="Folder on the device for the work folder and the --install venv (relative: in the login "
                   "folder). Default: .cache/vitedge/remote")
@click.option("--keep-remote", is_flag=True, help="Keep the work folder on the device (the next run copies nothing again).")
def bench(artifacts, data_dir, limit, threads, warmup, runs, min_time, rounds, interleave, batch, reference, provider, timeout,
          json_file, csv_file, plot_file, force, devices, device_python, install, accept_new_host_key, ssh_config,
          remote_dir, keep_remote):
    """Measure accuracy, agreement and latency of every artifact, side by side.

    Each artifact runs in its own process (memory and thread pools do not leak between rows); a
    file that fails to load or run gets a failed row and the others go on (exit status 1 then).
    Latency: load time, first inference, W warm-up and R timed runs of batch B; p50/p90/p99.
    Agreement: top-1 agreement and mean absolute logit difference with the reference.

    \b
    Examples:
      vitedge bench model_fp32.onnx --threads 2
      vitedge bench out/ --data data/fashion-mnist/test --limit 2000 --threads 2
      vitedge bench out/*.tflite out/*.onnx --data data/fashion-mnist/test --threads 2 \\
          --json results/bench.json --csv results/bench.csv --plot results/bench.png
      vitedge bench out/m_int8.tflite --reference models/m.keras --data val/   # needs the export extra
      vitedge bench out/m_fp32.onnx out/m_dynamic.onnx out/m_int8.onnx --interleave 20   # int8 vs fp32
      vitedge bench out/m_int8.tflite out/m_fp32.tflite --data val/ --device local --device ssh://pi@raspberrypi.local
    """
    from ..bench.plot import check_matplotlib, write_plot
    from ..bench.report import build_report, render_table, to_csv, to_json
    from ..bench.runner import Settings, default_threads, run_bench
    from ..fileio import atomic_output, check_writable

    if interleave and rounds > 1:
        raise UsageError("--interleave and --rounds are two ways to time the same thing; choose one")
    if json_file == "-" and csv_file == "-":
        raise UsageError("--json - and --csv - cannot both go to stdout")
    for path in (json_file, csv_file, plot_file):
        if path and path != "-":
            check_writable(path, force)
    if plot_file:
        if not plot_file.lower().endswith(".png"):
            raise UsageError(f"--plot {plot_file}: must end in .png")
        check_matplotlib()

    from ..bench.remote import DEFAULT_REMOTE_DIR, SshOptions, make_devices

    device_list = make_devices(devices, SshOptions(config=ssh_config, accept_new_host_key=accept_new_host_key),
                               device_python, remote_dir or DEFAULT_REMOTE_DIR, keep_remote, install)
    settings = Settings(threads=threads or default_threads(), threads_auto=threads is None, batch=batch, warmup=warmup, runs=runs, min_time=min_time,
                        rounds=rounds, interleave=interleave, limit=limit,
                        provider=provider, timeout=timeout, progress=sys.stderr.isatty())
    report = build_report(run_bench(list(artifacts), data_dir, settings, reference, device_list), settings, data_dir)

    to_stdout = "-" in (json_file, csv_file)
    click.echo(render_table(report), err=to_stdout)  # with '-', stdout is for the file alone
    for path, text in ((json_file, to_json(report) if json_file else ""), (csv_file, to_csv(report) if csv_file else "")):
        if path == "-":
            click.echo(text, nl=False)
        elif path:
            with atomic_output(path, force) as tmp:
                tmp.write_text(text, encoding="utf-8")
    if plot_file:
        with atomic_output(plot_file, force) as tmp:
            write_plot(report, tmp)
    failed = [r["artifact"] for r in report["rows"] if r["status"] != "ok"]
    if failed:
        raise VitedgeError(f"{len(failed)} of {len(report['rows'])} artifacts failed: {', '.join(failed)} "
                           "(see the status column)")
