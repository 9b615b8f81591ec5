"""IDX reading, `vitedge data fashion-mnist` and ImageFolder scanning, on the real Debian files."""

import gzip
import json
import os
import struct

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from PIL import Image

from vitedge.data import fashion_mnist as fm
from vitedge.data.idx import read_idx, read_images_and_labels
from vitedge.data.imagefolder import scan_image_folder
from vitedge.errors import VitedgeError
from vitedge.fileio import atomic_directory

needs_fmnist = pytest.mark.skipif(
    fm.find_local() is None,
    reason="Fashion-MNIST not on disk (make test fetches it: vitedge data fashion-mnist --download-only)",
)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    return struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@needs_fmnist
@pytest.mark.parametrize("split, count", [("train", 60_000), ("test", 10_000)])
def test_idx_reader_on_the_real_files(split, count):
    images, labels = fm.load_split(split)
    assert images.shape == (count, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.uint8
    assert labels.min() == 0 and labels.max() == 9
    assert np.bincount(labels).tolist() == [count // 10] * 10  # Fashion-MNIST is balanced
    assert 0 < images.mean() < 255 and images.max() == 255  # real pixels, not zeros


def test_idx_reader_raw_gzip_and_dtypes(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "raw").write_bytes(idx_bytes(a))
    (tmp_path / "gz").write_bytes(gzip.compress(idx_bytes(a)))
    for name in ("raw", "gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), a)
    f = np.array([1.5, -2.25], dtype=">f4")
    (tmp_path / "f").write_bytes(idx_bytes(f, 0x0D))
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), [1.5, -2.25])


def test_corrupt_idx_files_are_clear_errors(tmp_path):
    a = np.zeros((3, 28, 28), dtype=np.uint8)
    cases = {
        "bad-magic": b"\x08\x03" + idx_bytes(a)[2:],
        "short-data": idx_bytes(a)[:-10],
        "long-data": idx_bytes(a) + b"\0",
        "tiny": b"\0\0",
        "cut-header": idx_bytes(a)[:9],
        "bad-gzip": gzip.compress(idx_bytes(a))[:-30],
    }
    expected = {"bad-magic": "bad magic", "short-data": "says", "long-data": "says", "tiny": "too short",
                "cut-header": "header cut short", "bad-gzip": "corrupt gzip"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(VitedgeError, match=expected[name]):
            read_idx(tmp_path / name)
    labels = np.zeros(4, dtype=np.uint8)
    (tmp_path / "images").write_bytes(idx_bytes(a))
    (tmp_path / "labels").write_bytes(idx_bytes(labels))
    with pytest.raises(VitedgeError, match="3 images but"):
        read_images_and_labels(tmp_path / "images", tmp_path / "labels")
    (tmp_path / "labels").write_bytes(idx_bytes(np.array([0, 1, 12], dtype=np.uint8)))
    with pytest.raises(VitedgeError, match="out of range"):
        read_images_and_labels(tmp_path / "images", tmp_path / "labels", num_classes=10)


def test_data_command_corrupt_or_missing_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    out = tmp_path / "out"
    line = assert_one_line_error(run_cli("data", "fashion-mnist", "--source", src, "--out", out))
    assert "apt-get install dataset-fashion-mnist" in line
    for prefix, n in (("train", 5), ("t10k", 5)):
        (src / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((n, 28, 28), np.uint8))))
        (src / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(n, np.uint8))))
    line = assert_one_line_error(run_cli("data", "fashion-mnist", "--source", src, "--out", out))
    assert "5 images, the train split has 60000" in line
    (src / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    line = assert_one_line_error(run_cli("data", "fashion-mnist", "--source", src, "--out", out))
    assert "corrupt gzip" in line
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["src"]  # nothing half-written


@needs_fmnist
def test_data_command_writes_image_folder(tmp_path):
    out = tmp_path / "fm"
    proc = run_cli("data", "fashion-mnist", "--out", out, "--limit", 40, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["images"] == {"train": 40, "test": 40}
    for split in ("train", "test"):
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(fm.FOLDER_NAMES)
    assert "T-shirt_top" in fm.FOLDER_NAMES and "Ankle_boot" in fm.FOLDER_NAMES
    # Names are the index in the IDX file; pixels are exactly the IDX bytes.
    images, labels = fm.load_split("test")
    for i in (0, 17, 39):
        path = out / "test" / fm.FOLDER_NAMES[labels[i]] / f"test-{i:05d}.png"
        with Image.open(path) as img:
            assert img.mode == "L" and img.size == (28, 28)
            np.testing.assert_array_equal(np.asarray(img), images[i])
    folder = scan_image_folder(out / "train")
    assert len(folder) == 40 and folder.classes == sorted(fm.FOLDER_NAMES)
    # An existing output needs --force; with it the folder is replaced whole.
    assert "--force" in assert_one_line_error(run_cli("data", "fashion-mnist", "--out", out, "--limit", 5))
    proc = run_cli("data", "fashion-mnist", "--out", out, "--limit", 5, "--force")
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "train").rglob("*.png"))) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_scan_image_folder_errors(tmp_path):
    with pytest.raises(VitedgeError, match="no such folder"):
        scan_image_folder(tmp_path / "missing")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (4, 4)).save(flat / "a.png")
    with pytest.raises(VitedgeError, match="no class sub-folders"):
        scan_image_folder(flat)
    tree = tmp_path / "tree"
    (tree / "cat").mkdir(parents=True)
    (tree / "dog").mkdir()
    Image.new("L", (4, 4)).save(tree / "cat" / "a.png")
    (tree / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(VitedgeError, match="class 'dog' has no images"):
        scan_image_folder(tree)
    root = tmp_path / "root"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "test").mkdir()
    with pytest.raises(VitedgeError, match="looks like a data set root"):
        scan_image_folder(root)
    with pytest.raises(VitedgeError, match="at least 2"):
        scan_image_folder(_one_class(tmp_path))


def _one_class(tmp_path):
    one = tmp_path / "one"
    (one / "cat").mkdir(parents=True)
    Image.new("L", (4, 4)).save(one / "cat" / "a.png")
    return one


def test_atomic_directory(tmp_path):
    out = tmp_path / "d"
    with atomic_directory(out) as tmp:
        (tmp / "x").write_text("1")
    assert (out / "x").read_text() == "1"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    with pytest.raises(VitedgeError, match="--force"), atomic_directory(out):
        pass
    with pytest.raises(RuntimeError), atomic_directory(out, force=True) as tmp:
        (tmp / "y").write_text("2")
        raise RuntimeError("fails half-way")
    assert [p.name for p in out.iterdir()] == ["x"]  # the old folder survives a failed rewrite
    with atomic_directory(out, force=True) as tmp:
        (tmp / "y").write_text("2")
    assert [p.name for p in out.iterdir()] == ["y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@needs_fmnist
def test_shipped_calibration_set_is_balanced_and_from_the_train_split():
    from conftest import REPO

    images, labels = fm.load_split("train")
    root = REPO / "calibration"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(fm.FOLDER_NAMES)
    for name in fm.FOLDER_NAMES:
        files = sorted((root / name).glob("*.png"))
        assert len(files) == 15
        for path in files:
            split, index = path.stem.split("-")
            assert split == "train" and fm.FOLDER_NAMES[labels[int(index)]] == name
            with Image.open(path) as img:
                np.testing.assert_array_equal(np.asarray(img), images[int(index)])
    assert (root / "README.md").is_file()
