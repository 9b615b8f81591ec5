"""Large photos are decoded at the size the model needs (JPEG DCT scaling, Image.reduce),
inside the one preprocessing function, with EXIF rotation still honoured and small images
untouched."""

import numpy as np
import pytest
from PIL import Image

from vitedge.preprocess import Preprocessing, load_pixels, open_image

PRE = Preprocessing()


def scene(w: int, h: int) -> np.ndarray:
    """Smooth colours plus a bright block in the top-left quarter (to see rotations)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    arr = np.stack([60 + 40 * np.sin(xx / (w / 6)), 60 + 40 * np.cos(yy / (h / 5)), 80 + 0 * xx], axis=-1)
    arr[: h // 2, : w // 2] = (240, 240, 240)
    return arr.astype(np.uint8)


def full_decode_reference(path, size) -> np.ndarray:
    """What preprocessing gave before: decode every pixel, rotate upright, one resize."""
    from PIL import ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.int16)


def save_rotated_jpeg(path, arr, orientation=6):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=95, exif=exif.tobytes())
    return path


def test_big_jpeg_is_dct_scaled_and_keeps_the_exif_rotation(tmp_path):
    # Stored 2400x1800 landscape, orientation 6: upright it is 1800 wide, 2400 tall, and the
    # bright block (stored top-left) ends up top-right.
    path = save_rotated_jpeg(tmp_path / "photo.jpg", scene(2400, 1800))
    decoded = open_image(path, min_side=56)
    # 1/8 DCT scaling (300x225), then reduce(4) (75x57): both sides >= 56; rotated upright
    assert decoded.size == (57, 75)
    full = open_image(path)
    assert full.size == (1800, 2400)
    # 1000x800: DCT scaling stops at 1/8 (125x100); reduce alone would pick 14 (72x58)
    other = tmp_path / "other.jpg"
    Image.fromarray(scene(1000, 800)).save(other, quality=95)
    assert open_image(other, min_side=56).size == (125, 100)

    size = (32, 24)  # (h, w) like a model input
    got = load_pixels(path, size, PRE).astype(np.int16)
    ref = full_decode_reference(path, size)
    assert got.shape == ref.shape == (32, 24, 3)
    assert np.abs(got - ref).mean() < 2.0  # same picture, within JPEG rounding
    assert got[2, -3].min() > 200 and got[-3, 2].max() < 160  # bright block top-right, as upright


def test_big_png_is_reduced_before_the_final_resize(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(scene(1200, 900)).save(path)
    assert open_image(path, min_side=112).size == (150, 113)  # reduce(8) rounds up: both sides still >= 112
    size = (56, 56)
    got = load_pixels(path, size, PRE).astype(np.int16)
    assert np.abs(got - full_decode_reference(path, size)).mean() < 2.0


@pytest.mark.parametrize("resize", ["stretch", "center_crop", "pad"])
def test_every_resize_mode_sees_the_same_picture(tmp_path, resize):
    path = save_rotated_jpeg(tmp_path / "p.jpg", scene(1600, 1200), orientation=8)
    pre = Preprocessing(resize=resize)
    small = load_pixels(path, (40, 40), pre).astype(np.int16)
    with Image.open(path) as img:  # the same policy on the fully decoded image
        from PIL import ImageOps

        upright = ImageOps.exif_transpose(img).convert("RGB")
    full = load_pixels(upright, (40, 40), pre).astype(np.int16)
    assert np.abs(small - full).mean() < 2.5


def test_small_images_are_decoded_exactly_as_before(tmp_path):
    # Fashion-MNIST's 28x28 PNGs (and anything under twice the model's size) skip both shortcuts,
    # so calibration, evaluation and training data give byte-identical pixels.
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    path = tmp_path / "fm.png"
    Image.fromarray(arr, mode="L").save(path)
    got = load_pixels(path, (28, 28), PRE)
    np.testing.assert_array_equal(got, np.stack([arr] * 3, axis=-1))
    jpg = tmp_path / "small.jpg"
    Image.fromarray(scene(100, 80)).save(jpg, quality=95)
    assert open_image(jpg, min_side=56).size == (100, 80)  # 1/2 would give 50x40 < 56: no draft
