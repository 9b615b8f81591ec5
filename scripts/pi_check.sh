#!/usr/bin/env bash
# pi_check.sh - the device path on an emulated Raspberry Pi (arm64 Debian, Python 3.11) against x86.
#
#   make pi-check                      # or: bash scripts/pi_check.sh [ARTIFACT...]
#
# 1. takes artifacts exported on this x86 machine (default: out/*.tflite out/*.onnx);
# 2. writes test images (the first $PI_IMAGES Fashion-MNIST test images when the IDX files are
#    on disk: Debian's dataset-fashion-mnist or `vitedge data fashion-mnist --download-only`,
#    else synthetic patterns);
# 3. runs `vitedge predict --json` on x86;
# 4. in the emulated Pi (../shared/tools/pi-emulate, needs root): installs the core package,
#    no extras, from a copy of this repository into a fresh venv, checks that TensorFlow is
#    absent, runs `vitedge predict` on the same artifacts and images, and `vitedge bench`;
# 5. compares the top-1 labels image by image. Exit 0: all equal; 1: a mismatch or a failure.
#
# Environment: PI_TOOLS (default ../shared/tools/pi-emulate), PI_IMAGES (default 32),
# PI_MODEL (pi4|pi5|max, see run.sh), PI_FRESH=1 (install every dependency from the package
# index instead of reusing the Pi venv's numpy/pillow/onnxruntime/ai-edge-litert), KEEP=1 (keep
# the work folder). Emulation speed says nothing about a real Pi; only correctness is checked.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PI_TOOLS=${PI_TOOLS:-$REPO/../shared/tools/pi-emulate}
PY=${PY:-$REPO/.venv/bin/python}
N_IMAGES=${PI_IMAGES:-32}
say() { printf '[pi-check] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ -x "$PI_TOOLS/run.sh" ] || die "no $PI_TOOLS/run.sh (set PI_TOOLS)"
[ -x "$PY" ] || die "no $PY; run 'make install' first"
cd "$REPO"
if [ $# -gt 0 ]; then ARTIFACTS=("$@"); else
  shopt -s nullglob; ARTIFACTS=(out/*.tflite out/*.onnx out/*.ort); shopt -u nullglob
fi
[ ${#ARTIFACTS[@]} -gt 0 ] || die "no artifacts in out/; export some first (vitedge export models/fmnist-vit.keras ...) or pass them as arguments"

WORK=$(mktemp -d /tmp/vitedge-pi-check.XXXXXX)
cleanup() { if [ "${KEEP:-0}" = 1 ]; then say "work folder kept: $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
mkdir -p "$WORK/stage/artifacts" "$WORK/stage/images" "$WORK/stage/pi" "$WORK/host"

# --- the repository as a user would copy it: the work tree without venv, git, data and outputs
mkdir -p "$WORK/stage/src"
tar -cf - --exclude=./.git --exclude=./.venv --exclude=./.venv-mediapipe --exclude=./out --exclude=./results --exclude=./data \
    --exclude=./models --exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.ruff_cache --exclude='*.partial.*' . | tar -xf - -C "$WORK/stage/src"
[ -f "$WORK/stage/src/pyproject.toml" ] || die "copying the repository failed"
for a in "${ARTIFACTS[@]}"; do
  [ -f "$a" ] || die "$a: no such file"
  cp "$a" "$WORK/stage/artifacts/"
done

# --- images
"$PY" - "$WORK/stage/images" "$N_IMAGES" <<'EOF'
import gzip, sys
from pathlib import Path
import numpy as np
from PIL import Image
out, n = Path(sys.argv[1]), int(sys.argv[2])
from vitedge.data.fmnist_files import find_local  # Debian's files or the user cache
folder = find_local(("test",))
idx = folder / "t10k-images-idx3-ubyte.gz" if folder else None
if idx is not None:
    raw = gzip.decompress(idx.read_bytes())
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    source = "Fashion-MNIST test images"
else:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28]
    images = [np.uint8((np.sin(xx / (2 + i % 5)) * np.cos(yy / (3 + i % 7)) + 1) * 127) for i in range(n)]
    source = "synthetic patterns (vitedge data fashion-mnist --download-only gives real images)"
for i, img in enumerate(images):
    Image.fromarray(img).save(out / f"img{i:03d}.png")
print(f"[pi-check] {len(images)} {source}", file=sys.stderr)
EOF

# --- x86
say "x86: vitedge predict on ${#ARTIFACTS[@]} artifact(s)"
for a in "$WORK"/stage/artifacts/*; do
  name=$(basename "$a")
  (cd "$WORK/stage" && "$PY" -m vitedge predict images --model "artifacts/$name" --json --top-k 2 --threads 1) \
    > "$WORK/host/$name.jsonl" || die "x86 predict failed on $name"
done

# --- emulated Pi
cat > "$WORK/stage/pi_steps.sh" <<'EOF'
set -euo pipefail
VE=/tmp/vitedge-pi-check-ve
rm -rf "$VE" /tmp/vitedge-pi-src
cp -a /project/src /tmp/vitedge-pi-src
python -m venv "$VE"
if [ "${PI_FRESH:-0}" != 1 ]; then
  # Reuse the Pi venv's already-installed core dependencies (pip still checks every version).
  site=$(python -c 'import site; print(site.getsitepackages()[0])')
  "$VE/bin/python" -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'pi-ve.pth').write_text('$site\n')"
fi
echo "[pi] pip install /tmp/vitedge-pi-src (core, no extras)" >&2
"$VE/bin/pip" install -q /tmp/vitedge-pi-src >&2
"$VE/bin/vitedge" --version >&2
if "$VE/bin/python" -c 'import tensorflow' 2>/dev/null; then echo "[pi] ERROR: TensorFlow is importable" >&2; exit 1; fi
echo "[pi] TensorFlow: not installed (as it should be)" >&2
echo "[pi] vitedge doctor" >&2
"$VE/bin/vitedge" doctor >&2
"$VE/bin/vitedge" doctor --json "$(ls artifacts/* | head -n 1)" > /tmp/vitedge-pi-doctor.json
"$VE/bin/python" -c 'import platform, onnxruntime, PIL; from importlib.metadata import version; print("[pi]", platform.machine(), "python", platform.python_version(), "onnxruntime", onnxruntime.__version__, "ai-edge-litert", version("ai-edge-litert"), "pillow", PIL.__version__)' >&2
cd /project
cp /tmp/vitedge-pi-doctor.json pi/doctor.json
status=0
for a in artifacts/*; do
  name=$(basename "$a")
  "$VE/bin/vitedge" predict images --model "$a" --json --top-k 2 --threads 1 > "pi/$name.jsonl" || status=1
done
if "$VE/bin/vitedge" bench --help >/dev/null 2>&1; then
  echo "[pi] vitedge bench" >&2
  "$VE/bin/vitedge" bench artifacts/* --data images --warmup 1 --runs 5 --threads 1 --timeout 1800 --json pi/bench.json >&2 \
    || { echo "[pi] vitedge bench failed" >&2; status=1; }
else
  echo "[pi] vitedge bench: not available in this version; predict only" >&2
  touch pi/NO_BENCH
fi
rm -rf "$VE" /tmp/vitedge-pi-src
exit $status
EOF
say "emulated Pi (${PI_MODEL:-pi4}): install and run; takes a few minutes"
pi_status=0
PI_ENV="PI_FRESH=${PI_FRESH:-0}" "$PI_TOOLS/run.sh" "$WORK/stage" 'bash /project/pi_steps.sh' || pi_status=$?

# --- compare
"$PY" - "$WORK/host" "$WORK/stage/pi" "$pi_status" <<'EOF'
import json, sys
from pathlib import Path
host_dir, pi_dir, pi_status = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])

def top1(path):
    """image -> (top-1 label, its margin over the runner-up)."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "error" in row:
                out[row["image"]] = ("ERROR: " + row["error"], 0.0)
                continue
            probs = [t["probability"] for t in row["top_k"]] + [0.0]
            out[row["image"]] = (row["label"], probs[0] - probs[1])
    return out

bad = pi_status != 0
print(f"{'artifact':40} {'images':>6} {'same top-1':>10}  mismatches")
for host_file in sorted(host_dir.glob("*.jsonl")):
    h, p = top1(host_file), top1(pi_dir / host_file.name)
    same = sum(h[k][0] == p.get(k, ("",))[0] for k in h)
    diff = [f"{k}: x86 {h[k][0]} / pi {p.get(k, ('missing',))[0]} (x86 margin {h[k][1]:.4f})"
            for k in h if h[k][0] != p.get(k, ("",))[0]]
    bad |= bool(diff) or not h
    print(f"{host_file.stem:40} {len(h):>6} {same:>10}  {'; '.join(diff[:3]) or '-'}")
bench = pi_dir / "bench.json"
if bench.exists():
    data = json.loads(bench.read_text())
    rows = data.get("rows", []) if isinstance(data, dict) else []
    failed = [r for r in rows if r.get("status") not in (None, "ok")]
    print(f"pi bench: {len(rows)} row(s), {len(failed)} failed")
    bad |= bool(failed)
elif (pi_dir / "NO_BENCH").exists():
    print("pi bench: not available (predict only)")
doctor = pi_dir / "doctor.json"
if doctor.exists():  # what `vitedge doctor` saw on the emulated Pi
    rep = json.loads(doctor.read_text())
    names = [r["name"] for r in rep["runtimes"]]
    art = rep.get("artifact", {})
    ok = (rep["cpu"]["arch"] == "arm64" and "ai_edge_litert" in names and "onnxruntime" in names
          and not rep["tensorflow_imported"] and art.get("loads"))
    print(f"pi doctor: {rep['cpu']['model']}, {rep['cpu']['usable_cores']} usable cores, flags "
          f"{[f for f, on in rep['cpu']['flags'].items() if on]}, runtimes {names}, "
          f"artifact {art.get('file')} loads={art.get('loads')} int8 suggestion "
          f"{art.get('suggested', {}).get('recipe')}: {'ok' if ok else 'WRONG'}")
    bad |= not ok
else:
    print("pi doctor: no report")
    bad = True
print("pi-check:", "FAILED" if bad else "OK (same top-1 labels on arm64 and x86)")
sys.exit(1 if bad else 0)
EOF
