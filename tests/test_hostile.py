"""Hostile input: damaged and crafted models, metadata, images and options (docs/hostile-input.md).

The cases are made here, at test time, from real exported artifacts (the tiny ViT's .tflite,
.onnx, .ort and .keras) and real images, then run through `tests/hostile_driver.py`: one process
that imports vitedge and the runtimes once and forks per case, with a memory limit
(RLIMIT_AS) and a time limit. Every case must end in a prediction (exit 0) or one error line
(exit 1, or 2 for options), with no traceback, no signal, in time and under the limit.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_images

DRIVER = Path(__file__).with_name("hostile_driver.py")
MEMORY_MB = 3072  # per case (address space): a runaway allocation fails instead of swapping
TIMEOUT = 30.0  # per case, seconds (a loaded 2-core machine; a case takes ~0.1-0.5 s)


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: str  # "ok": exit 0; "refuse": exit 1; "usage": exit 2; "any": 0 or 1; "bench": a failed row


# ------------------------------------------------------------------------------- damage ----
def flips(data: bytes, seed: int, count: int) -> bytes:
    """`count` bytes replaced by random ones at seeded positions (skipping nothing)."""
    rng = np.random.default_rng(seed)
    buf = bytearray(data)
    for pos in rng.integers(0, len(buf), size=count):
        buf[pos] ^= int(rng.integers(1, 256))
    return bytes(buf)


def block(data: bytes, seed: int, size: int = 64, fill: int = 0xFF) -> bytes:
    """A run of `size` bytes overwritten at a seeded place (a damaged sector, a zeroed table)."""
    rng = np.random.default_rng(seed)
    at = int(rng.integers(0, max(1, len(data) - size)))
    return data[:at] + bytes([fill]) * size + data[at + size:]


TRUNCATE = (8, 0.25, 0.5, -1)  # byte counts, fractions, -1: all but the last byte
TRUNCATE_MORE = (4, 16, 100, 0.05, 0.75, 0.95)  # the slow tier's


def truncations(data: bytes, points=TRUNCATE) -> list[tuple[str, bytes]]:
    out = []
    for t in points:
        n = t if isinstance(t, int) and t > 0 else (len(data) - 1 if t == -1 else int(len(data) * t))
        out.append((f"cut{n}", data[:n]))
    return out


def damaged(data: bytes, n_flips: int, n_blocks: int, seed0: int, points=TRUNCATE) -> list[tuple[str, bytes]]:
    out = [(f"flip{s}", flips(data, seed0 + s, count=1 + s % 8)) for s in range(n_flips)]
    out += [(f"block{s}", block(data, seed0 + 1000 + s, fill=(0, 0xFF)[s % 2])) for s in range(n_blocks)]
    return out + truncations(data, points)


# ------------------------------------------------------------------------------- makers ----
def tflite_model_bytes(path: Path) -> bytes:
    """The flatbuffer of an exported .tflite, without its appended metadata zip."""
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        start = min(i.header_offset for i in zf.infolist())
    return data[:start]


def tflite_with_entries(model: bytes, entries: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    buf.write(model)
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def lying_size(data: bytes, name: bytes, declared: int) -> bytes:
    """Patch the uncompressed size an entry declares (local and central headers) to `declared`."""
    buf = bytearray(data)
    for sig, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = buf.find(sig)
        while at != -1:
            if buf[at + name_at:at + name_at + len(name)] == name:
                buf[at + size_at:at + size_at + 4] = declared.to_bytes(4, "little")
            at = buf.find(sig, at + 4)
    return bytes(buf)


def good_meta(path: Path) -> dict:
    from vitedge.artifact import read_tflite_metadata

    return read_tflite_metadata(path)


def metadata_attacks(meta: dict) -> list[tuple[str, object]]:
    """(name, metadata) pairs: each a JSON-able value or raw bytes standing for vitedge.json."""
    deep = "[" * 5000 + "]" * 5000
    cases: list[tuple[str, object]] = [
        ("not_json", b"this is not json {"),
        ("bad_utf8", b'{"labels": ["\xff\xfe"]}'),
        ("array", [1, 2, 3]),
        ("string", "metadata"),
        ("number", 42),
        ("null", None),
        ("empty_object", {}),
        ("deep_5000", deep.encode()),
        ("deep_100_in_field", {**meta, "recipe": json.loads("[" * 100 + "]" * 100)}),
        ("labels_string", {**meta, "labels": "apple"}),
        ("labels_object", {**meta, "labels": {"a": 1}}),
        ("labels_nested", {**meta, "labels": [[1], [2], [3], [4], [5]]}),
        ("labels_150k", {**meta, "labels": ["a"] * 150_000}),
        ("label_300_chars", {**meta, "labels": ["x" * 300] + meta["labels"][1:]}),
        ("labels_wrong_count", {**meta, "labels": ["a", "b"]}),
        ("input_60000", {**meta, "input": {**meta["input"], "shape": [1, 60000, 60000, 3]}}),
        ("input_negative", {**meta, "input": {**meta["input"], "shape": [1, -5, -5, 3]}}),
        ("input_strings", {**meta, "input": {**meta["input"], "shape": ["a", "b", "c", "d"]}}),
        ("input_shape_string", {**meta, "input": {**meta["input"], "shape": "32x32"}}),
        ("input_list", {**meta, "input": [1, 2]}),
        ("layout_nchw_lie", {**meta, "input": {**meta["input"], "layout": "NCHW"}}),
        ("pre_string", {**meta, "preprocessing": "imagenet"}),
        ("pre_mean_string", {**meta, "preprocessing": {**meta["preprocessing"], "mean": "abc"}}),
        ("pre_std_zero", {**meta, "preprocessing": {**meta["preprocessing"], "std": [0, 0, 0]}}),
        ("pre_mean_nan", {**meta, "preprocessing": {**meta["preprocessing"], "mean": [float("nan")] * 3}}),
        ("pre_resize_number", {**meta, "preprocessing": {**meta["preprocessing"], "resize": 5}}),
        ("pre_crop_string", {**meta, "preprocessing": {**meta["preprocessing"], "crop_pct": "x"}}),
        ("pre_background_long", {**meta, "preprocessing": {**meta["preprocessing"], "background": list(range(9))}}),
        ("output_scores_number", {**meta, "output": {"scores": 5}}),
        ("output_list", {**meta, "output": ["probabilities"]}),
        ("big_2mb", {**meta, "padding": "x" * 2_000_000}),
    ]
    return cases


def raw_json(value) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def onnx_with_metadata(src: Path, raw: bytes | None) -> bytes:
    import onnx

    model = onnx.load(str(src))
    keep = [p for p in model.metadata_props if p.key != "vitedge"]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    if raw is not None:
        model.metadata_props.add(key="vitedge", value=raw.decode("utf-8", "replace"))
    return model.SerializeToString()


def tiny_onnx(input_shape, output_shape, opset=18, external: str | None = None) -> bytes:
    """A small ONNX classifier (mean over the image, then a 3xC matrix) declaring any shapes."""
    from onnx import TensorProto, helper, numpy_helper

    classes = 5
    weight = numpy_helper.from_array(np.ones((3, classes), np.float32), "W")
    if external is not None:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", "60")):
            weight.external_data.add(key=key, value=value)
    nchw = len(input_shape) == 4 and input_shape[1] == 3
    axes = numpy_helper.from_array(np.array([2, 3] if nchw else [1, 2], np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=0),
         helper.make_node("MatMul", ["mean", "W"], ["logits"])],
        "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, output_shape)], [weight, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def png_bomb_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with one tiny truncated IDAT."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


# -------------------------------------------------------------------------------- cases ----
ONNX_FAST = {"not_json", "array", "null", "deep_5000", "deep_100_in_field", "labels_string", "labels_nested",
             "label_300_chars", "input_60000", "input_list", "pre_string", "output_list", "empty_object"}


def build_cases(src: dict, root: Path, scale: int = 1) -> list[Case]:
    """Every case, its files written under `root`. `scale` > 1 (the slow tier): that many times
    the random damage, with other seeds, and more truncation points."""
    points = TRUNCATE if scale == 1 else TRUNCATE + TRUNCATE_MORE
    root.mkdir(parents=True, exist_ok=True)
    image = str(src["jpg"])
    cases: list[Case] = []

    def write(name: str, data: bytes) -> str:
        path = root / name
        path.write_bytes(data)
        return str(path)

    def predict(case_id, model, expect, *extra, images=(image,)):
        cases.append(Case(case_id, ["predict", *images, "--model", model, "-k", "2", *extra], expect))

    # Sanity: the undamaged files predict (the suite can tell success from refusal).
    for kind in ("tflite", "onnx", "ort"):
        predict(f"{kind}/intact", str(src[kind]), "ok")

    # Damaged model files.
    for kind, n_flips, n_blocks in (("tflite", 8, 2), ("onnx", 8, 2), ("ort", 6, 2)):
        data = src[kind].read_bytes()
        seed0 = {"tflite": 11, "onnx": 22, "ort": 33}[kind] + 7919 * (scale - 1)
        for name, bad in damaged(data, n_flips * scale, n_blocks * scale, seed0, points):
            predict(f"{kind}/{name}", write(f"{kind}-{name}.{kind}", bad), "any")
    ort = src["ort"].read_bytes()  # damage once found to break ONNX Runtime's UTF-8 decoding of names
    for name, bad in (("flip5067", flips(ort, 5067, 2)), ("flip5175", flips(ort, 5175, 2)),
                      ("block7280", block(ort, 7280, size=4))):
        predict(f"ort/regress-{name}", write(f"ort-regress-{name}.ort", bad), "any")
    keras = src["keras"].read_bytes()
    for name, bad in damaged(keras, 4 * scale, 2 * scale, 300 + 7919 * (scale - 1), points):
        cases.append(Case(f"keras/{name}", ["info", write(f"keras-{name}.keras", bad)], "any"))

    # TFLite metadata attacks (vitedge.json in the appended zip), through predict and info.
    model = tflite_model_bytes(src["tflite"])
    meta = good_meta(src["tflite"])
    refuse_ok = {"empty_object", "labels_wrong_count", "layout_nchw_lie", "null", "input_strings", "output_scores_number"}
    for name, value in metadata_attacks(meta):
        path = write(f"meta-{name}.tflite", tflite_with_entries(model, {"vitedge.json": raw_json(value)}))
        predict(f"tflite-meta/{name}", path, "any" if name in refuse_ok else "refuse")
    bomb = b"{" + b" " * 100_000_000 + b"}"
    zipped = tflite_with_entries(model, {"vitedge.json": bomb}, zipfile.ZIP_DEFLATED)
    del bomb
    predict("tflite-meta/zip_bomb_100mb", write("meta-bomb.tflite", zipped), "refuse")
    liar = lying_size(tflite_with_entries(model, {"vitedge.json": b" " * 5_000_000 + raw_json(meta)},
                                          zipfile.ZIP_DEFLATED), b"vitedge.json", 1000)
    predict("tflite-meta/lying_size", write("meta-liar.tflite", liar), "any")
    labels_bomb = tflite_with_entries(model, {"labels.txt": b"a\n" * 20_000_000, "vitedge.json": raw_json(meta)},
                                      zipfile.ZIP_DEFLATED)
    path = write("meta-labels-bomb.tflite", labels_bomb)
    predict("tflite-meta/labels_txt_bomb", path, "ok")
    cases.append(Case("tflite-meta/info_labels_txt_bomb", ["info", path], "any"))
    for name in ("not_json", "deep_5000", "big_2mb", "array"):
        cases.append(Case(f"tflite-meta/info_{name}", ["info", str(root / f"meta-{name}.tflite")], "refuse"))

    # ONNX metadata attacks (metadata_props["vitedge"]); the fast tier takes one of each kind
    # (the checks after parsing are the TFLite path's, covered above in full).
    for name, value in metadata_attacks(meta):
        if name in ("labels_150k", "big_2mb", "bad_utf8"):
            continue  # below: the raw bytes of those need no onnx round trip
        if scale == 1 and name not in ONNX_FAST:
            continue
        path = write(f"meta-{name}.onnx", onnx_with_metadata(src["onnx"], raw_json(value)))
        predict(f"onnx-meta/{name}", path, "any" if name in refuse_ok else "refuse")
    path = write("meta-big.onnx", onnx_with_metadata(src["onnx"], b'{"labels": ["' + b"x" * 2_000_000 + b'"]}'))
    predict("onnx-meta/big_2mb", path, "refuse")
    marked = onnx_with_metadata(src["onnx"], b'{"labels": ["MARKMARK"]}')
    path = write("meta-not-utf8.onnx", marked.replace(b"MARKMARK", b"\xff\xfe\xfd\xfc\xe8\xe7\xc0\xc1"))
    predict("onnx-meta/not_utf8_bytes", path, "refuse")

    # Models declaring absurd sizes (nothing of that size may be allocated).
    for name, shape_in, shape_out, expect in (
            ("nhwc_60000", [1, 60000, 60000, 3], [1, 5], "refuse"),
            ("nchw_60000", [1, 3, 60000, 60000], [1, 5], "refuse"),
            ("batch_1e6", [1_000_000, 32, 32, 3], [1_000_000, 5], "refuse"),
            ("classes_1e9", [1, 32, 32, 3], [1, 1_000_000_000], "any"),  # ONNX Runtime infers 5
            ("dynamic_no_meta", ["n", "h", "w", 3], ["n", 5], "refuse"),
            ("small_ok", [1, 32, 32, 3], [1, 5], "ok")):
        predict(f"huge/{name}", write(f"huge-{name}.onnx", tiny_onnx(shape_in, shape_out)), expect)

    # ONNX external data pointing outside the model's folder.
    (root / "outside.bin").write_bytes(os.urandom(64))
    ext = root / "ext"
    ext.mkdir(exist_ok=True)
    link = ext / "link.bin"
    if not link.exists():
        link.symlink_to(root / "outside.bin")
    for name, location in (("parent", "../outside.bin"), ("absolute", str(root / "outside.bin")),
                           ("etc_passwd", "../../../../../../etc/passwd"), ("symlink_out", "link.bin")):
        path = ext / f"ext-{name}.onnx"
        path.write_bytes(tiny_onnx([1, 32, 32, 3], [1, 5], external=location))
        predict(f"external/{name}", str(path), "refuse")

    # Fuzzed images, predicted with the intact TFLite model.
    for kind in ("png", "jpg", "webp"):
        data = src[kind].read_bytes()
        for name, bad in damaged(data, 3 * scale, 1 * scale, 500 + len(kind) + 7919 * (scale - 1), points):
            bad_image = write(f"img-{kind}-{name}.{kind}", bad)
            predict(f"image-{kind}/{name}", str(src["tflite"]), "any", images=(bad_image,))
    for name, (w, h) in (("60000x60000", (60000, 60000)), ("1x100000", (1, 100000)), ("0x0", (0, 0))):
        bad_image = write(f"bomb-{name}.png", png_bomb_header(w, h))
        predict(f"image-png/header_{name}", str(src["tflite"]), "refuse", images=(bad_image,))

    # Absurd options: usage errors (exit 2) naming the range, before any model is opened.
    tfl = str(src["tflite"])
    for opt, values in (("--threads", ("0", "-1", "100000", "2147483648", "abc")),
                        ("--batch", ("0", "-5", "100000")), ("--top-k", ("0", "-1", "1000000"))):
        for value in values:
            cases.append(Case(f"options/predict{opt}={value}", ["predict", image, "--model", tfl, opt, value], "usage"))
    for opt, value in (("--runs", "0"), ("--runs", "1000000000"), ("--warmup", "-1"), ("--rounds", "0"),
                       ("--threads", "100000"), ("--batch", "0"), ("--limit", "0")):
        cases.append(Case(f"options/bench{opt}={value}", ["bench", tfl, opt, value], "usage"))
    for value in ("0", "-1", "1000000000"):
        cases.append(Case(f"options/export--calib-size={value}",
                          ["export", str(src["keras"]), "--calib-size", value, "-o", str(root / "never")], "usage"))
    cases.append(Case("options/doctor--threads=0", ["doctor", "--threads", "0"], "usage"))
    cases.append(Case("options/profile--runs=2", ["profile", tfl, "--runs", "2"], "usage"))
    predict("options/top-k_beyond_classes", tfl, "ok", "-k", "1000")
    predict("options/threads_256", tfl, "ok", "--threads", "256")
    return cases


# --------------------------------------------------------------------------------- runner ----
NOISE = ("WARNING: All log messages before absl", "I0000", "W0000", "E0000", "vitedge: warning:")


def judge(case: Case, result: dict) -> str | None:
    """Why a result breaks the rules, or None."""
    if result["timed_out"]:
        return f"timed out after {result['seconds']} s"
    if result["signal"] is not None:
        return f"killed by signal {result['signal']}"
    code, err = result["code"], result["stderr"]
    if "Traceback" in err:
        return f"traceback:\n{err[-2000:]}"
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(NOISE)]
    allowed = {"ok": {0}, "refuse": {1}, "usage": {2}, "any": {0, 1}, "bench": {1}}[case.expect]
    if code not in allowed:
        return f"exit {code}, expected {sorted(allowed)}: {err.strip()[-500:]}"
    if code == 0:
        if lines:
            return f"exit 0 but stderr says: {lines}"
        if "rank" not in result["stdout"] and case.argv[0] == "predict":
            return "exit 0 without a prediction"
        return None
    if case.expect == "bench":  # bench names each failed artifact in its table, then one error line
        return None if lines and lines[-1].startswith("vitedge: error:") else f"no closing error line: {lines}"
    if len(lines) != 1 or not lines[0].startswith("vitedge: error:"):
        return f"not one error line: {lines}"
    if case.expect == "usage" and "range" not in lines[0] and "not a valid integer" not in lines[0]:
        return f"usage error without the range: {lines[0]}"
    return None


def run_cases(cases: list[Case], workers: int = 2) -> list[dict]:
    """All cases through `workers` driver processes; results in case order."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("VITEDGE_IN_PROCESS", None)
    shares = [cases[i::workers] for i in range(workers)]
    procs = []
    for share in shares:
        jobs = "".join(json.dumps({"id": c.id, "argv": c.argv, "cwd": str(REPO), "timeout": TIMEOUT,
                                   "memory_mb": MEMORY_MB}) + "\n" for c in share)
        proc = subprocess.Popen([sys.executable, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        procs.append((proc, jobs))
    results = {}
    for proc, jobs in procs:
        out, err = proc.communicate(jobs, timeout=TIMEOUT * len(cases))
        assert proc.returncode == 0, err[-3000:]
        for line in out.splitlines():
            r = json.loads(line)
            results[r["id"]] = r
    return [results[c.id] for c in cases]


def check_all(cases: list[Case]) -> dict:
    results = run_cases(cases)
    problems = [f"{c.id}: {why}" for c, r in zip(cases, results, strict=True) if (why := judge(c, r))]
    assert not problems, f"{len(problems)} of {len(cases)} hostile cases broke the rules:\n" + "\n".join(problems)
    counts = {"cases": len(cases), "predicted": sum(r["code"] == 0 for r in results),
              "refused": sum(r["code"] == 1 for r in results), "usage": sum(r["code"] == 2 for r in results),
              "slowest_s": max(r["seconds"] for r in results)}
    print("hostile:", json.dumps(counts))
    return counts


@pytest.fixture(scope="module")
def sources(tiny_artifacts, tiny_model, tmp_path_factory):
    """Undamaged originals: exported fp32 .tflite/.onnx, an .ort from that .onnx, the .keras, images."""
    from PIL import Image

    from vitedge.export.ort import convert

    folder = tmp_path_factory.mktemp("hostile-src")
    ort_file, _ = convert(tiny_artifacts[("onnx", "fp32")], folder)
    img = make_images(folder / "img", count=2, size=(48, 40))[1]  # the .jpg one
    pixels = Image.open(img).convert("RGB")
    pixels.save(folder / "a.png")
    pixels.save(folder / "a.webp", quality=80)
    return {"tflite": tiny_artifacts[("tflite", "fp32")], "onnx": tiny_artifacts[("onnx", "fp32")],
            "ort": ort_file, "keras": tiny_model, "jpg": img, "png": folder / "a.png", "webp": folder / "a.webp"}


def test_hostile_cases(sources, tmp_path):
    """At least 150 cases: each a prediction or one error line, in time, under the memory limit."""
    cases = build_cases(sources, tmp_path / "cases")
    assert len(cases) >= 150, len(cases)
    assert len({c.id for c in cases}) == len(cases)
    counts = check_all(cases)
    assert counts["predicted"] >= 10 and counts["refused"] >= 60 and counts["usage"] >= 15


@pytest.mark.slow
def test_hostile_cases_more_damage(sources, tmp_path):
    """Three times the random damage of the fast set, with other seeds."""
    root = tmp_path / "cases"
    cases = [c for c in build_cases(sources, root, scale=3)
             if any(part in c.id for part in ("/flip", "/block", "/cut")) or
             (c.id.startswith("onnx-meta/") and c.id.split("/")[1] not in ONNX_FAST)]
    # bench: each artifact in its own worker process; a bad one is a failed row and exit 1.
    for name in ("meta-not_json.tflite", "huge-nhwc_60000.onnx", "tflite-flip3.tflite", "meta-deep_5000.onnx",
                 "ort-regress-flip5067.ort"):
        cases.append(Case(f"bench/{name}", ["bench", str(root / name), "--runs", "2", "--warmup", "0",
                                            "--limit", "2"], "bench"))
    check_all(cases)
