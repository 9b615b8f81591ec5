"""The one preprocessing function: every image mode to RGB, EXIF, resize, normalization, bad files."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vitedge.errors import VitedgeError
from vitedge.preprocess import Preprocessing, list_images, open_image, preprocess_image

BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def pixel(img, xy=(0, 0)):
    return tuple(int(v) for v in np.asarray(img)[xy[1], xy[0]])


def save(tmp_path, img, name, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


# ---------------------------------------------------------------------------- modes ----
def _palette_image(transparent: bool) -> Image.Image:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([10, 20, 30, 200, 100, 50] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    if transparent:
        img.info["transparency"] = 0
    return img


@pytest.mark.parametrize("name, make, xy, expected_mode, expected", [
    ("l.png", lambda: Image.new("L", (4, 4), 100), (0, 0), "L", (100, 100, 100)),
    ("one.png", lambda: Image.new("1", (4, 4), 1), (0, 0), "1", WHITE),
    ("la.png", lambda: Image.new("LA", (4, 4), (100, 255)), (0, 0), "LA", (100, 100, 100)),
    ("la0.png", lambda: Image.new("LA", (4, 4), (100, 0)), (0, 0), "LA", BLACK),
    ("p.png", lambda: _palette_image(False), (1, 1), "P", (200, 100, 50)),
    ("p0.png", lambda: _palette_image(False), (0, 0), "P", (10, 20, 30)),
    ("pt.png", lambda: _palette_image(True), (0, 0), "P", BLACK),  # transparent index
    ("pt1.png", lambda: _palette_image(True), (1, 1), "P", (200, 100, 50)),
    ("pt.gif", lambda: _palette_image(True), (0, 0), "P", BLACK),
    ("rgba.png", lambda: Image.new("RGBA", (4, 4), (200, 100, 50, 255)), (0, 0), "RGBA", (200, 100, 50)),
    ("rgba0.png", lambda: Image.new("RGBA", (4, 4), (200, 100, 50, 0)), (0, 0), "RGBA", BLACK),
    ("cmyk.tif", lambda: Image.new("CMYK", (4, 4), (255, 0, 0, 0)), (0, 0), "CMYK", (0, 255, 255)),
    ("cmyk0.tif", lambda: Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (0, 0), "CMYK", WHITE),
    ("i16.png", lambda: Image.fromarray(np.full((4, 4), 25700, np.uint16)), (0, 0), "I;16", (100, 100, 100)),
    ("i16max.png", lambda: Image.fromarray(np.full((4, 4), 65535, np.uint16)), (0, 0), "I;16", WHITE),
    ("i8in32.tif", lambda: Image.fromarray(np.full((4, 4), 100, np.int32)), (0, 0), "I", (100, 100, 100)),
    ("i16in32.tif", lambda: Image.fromarray(np.full((4, 4), 51400, np.int32)), (0, 0), "I", (200, 200, 200)),
    ("f01.tif", lambda: Image.fromarray(np.full((4, 4), 0.5, np.float32)), (0, 0), "F", (128, 128, 128)),
    ("f255.tif", lambda: Image.fromarray(np.full((4, 4), 100.0, np.float32)), (0, 0), "F", (100, 100, 100)),
    ("ycc.jpg", lambda: Image.new("RGB", (8, 8), (200, 100, 50)), (0, 0), "RGB", (200, 100, 50)),
])
def test_every_mode_becomes_the_right_rgb(tmp_path, name, make, xy, expected_mode, expected):
    path = save(tmp_path, make(), name, **({"quality": 100} if name.endswith(".jpg") else {}))
    with Image.open(path) as raw:
        assert raw.mode == expected_mode  # the file really has the mode under test
    img = open_image(path)
    assert img.mode == "RGB"
    assert img.size == ((8, 8) if name.endswith(".jpg") else (4, 4))
    got = pixel(img, xy)
    tol = 3 if name.endswith(".jpg") else 0
    assert np.abs(np.subtract(got, expected)).max() <= tol, (name, got, expected)


def test_alpha_is_composited_onto_the_stated_background(tmp_path):
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[..., :3] = (200, 100, 0)
    arr[0, 0, 3], arr[0, 1, 3], arr[1, 0, 3], arr[1, 1, 3] = 0, 128, 255, 64
    path = save(tmp_path, Image.fromarray(arr, "RGBA"), "a.png")
    img = np.asarray(open_image(path, background=(255, 255, 255))).astype(int)
    assert tuple(img[0, 0]) == WHITE  # fully transparent: the background
    assert tuple(img[1, 0]) == (200, 100, 0)  # opaque: the pixel
    half = img[0, 1]  # 50% over white
    assert np.abs(half - np.array([228, 178, 127])).max() <= 1
    # the policy's background is what preprocess_image uses
    pre = Preprocessing(mean=(0, 0, 0), std=(1, 1, 1), background=(0, 0, 255))
    x = preprocess_image(path, (2, 2), pre)
    assert np.allclose(x[0, 0], [0, 0, 1])


def test_palette_transparency_uses_the_background_too(tmp_path):
    path = save(tmp_path, _palette_image(True), "p.png")
    assert pixel(open_image(path, background=(1, 2, 3))) == (1, 2, 3)


def test_grey_png_with_a_transparent_colour_key(tmp_path):
    img = Image.new("L", (3, 3), 50)
    img.putpixel((0, 0), 7)
    path = save(tmp_path, img, "key.png", transparency=7)
    got = open_image(path, background=(9, 9, 9))
    assert pixel(got) == (9, 9, 9) and pixel(got, (1, 1)) == (50, 50, 50)


def test_float_image_with_nan_does_not_crash(tmp_path):
    arr = np.full((3, 3), 0.25, np.float32)
    arr[0, 0] = np.nan
    got = open_image(save(tmp_path, Image.fromarray(arr), "nan.tif"))
    assert pixel(got) == BLACK and pixel(got, (1, 1)) == (64, 64, 64)


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("L", (4, 4), v).convert("P") for v in (30, 220)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert pixel(open_image(path)) == (30, 30, 30)


# ----------------------------------------------------------------------------- EXIF ----
def _marked(w=6, h=4):
    """An image with a red top-left pixel (to follow where rotation puts it)."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)
    return Image.fromarray(arr)


@pytest.mark.parametrize("orientation, size, red_at", [
    (1, (6, 4), (0, 0)),
    (2, (6, 4), (5, 0)),   # mirrored horizontally
    (3, (6, 4), (5, 3)),   # rotated 180
    (6, (4, 6), (3, 0)),   # rotated 90 clockwise
    (8, (4, 6), (0, 5)),   # rotated 90 counter-clockwise
])
def test_exif_orientation_is_applied(tmp_path, orientation, size, red_at):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(tmp_path, _marked(), f"o{orientation}.png", exif=exif)
    img = open_image(path)
    assert img.size == size
    assert pixel(img, red_at) == (255, 0, 0)


def test_exif_rotation_in_a_jpeg_and_through_preprocess_image(tmp_path):
    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:, :16] = (255, 0, 0)  # left half red, right half blue
    arr[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, Image.fromarray(arr), "r.jpg", exif=exif, quality=100)
    x = preprocess_image(path, (32, 16), Preprocessing(mean=(0, 0, 0), std=(1, 1, 1)))
    assert x.shape == (32, 16, 3)
    assert x[2, 8, 0] > 0.9 and x[2, 8, 2] < 0.1  # top is red (the old left)
    assert x[29, 8, 2] > 0.9 and x[29, 8, 0] < 0.1  # bottom is blue


def test_broken_exif_is_ignored_not_fatal(tmp_path):
    path = save(tmp_path, _marked(), "bad_exif.jpg", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7fjunk", quality=95)
    assert open_image(path).size == (6, 4)


# ------------------------------------------------------------------ resize, normalize ----
def test_normalization_follows_the_policy(tmp_path):
    arr = np.zeros((2, 2, 3), np.uint8)
    arr[0, 0] = (255, 255, 255)
    path = save(tmp_path, Image.fromarray(arr), "n.png")
    x = preprocess_image(path, (2, 2), Preprocessing())  # mean 0.5, std 0.5 -> [-1, 1]
    assert x.dtype == np.float32 and x.shape == (2, 2, 3)
    assert np.allclose(x[0, 0], 1.0) and np.allclose(x[1, 1], -1.0)
    imagenet = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    y = preprocess_image(path, (2, 2), imagenet)
    assert np.allclose(y[1, 1], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], atol=1e-5)


def test_resize_policies(tmp_path):
    # 40x20 image: left quarter red, the rest green.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)
    arr[:, 10:] = (0, 255, 0)
    path = save(tmp_path, Image.fromarray(arr), "wide.png")
    plain = dict(mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    stretch = preprocess_image(path, (10, 10), Preprocessing(resize="stretch", **plain))
    assert stretch[5, 0, 0] == 1.0 and stretch[5, 9, 1] == 1.0  # red survives at the left
    crop = preprocess_image(path, (10, 10), Preprocessing(resize="center_crop", crop_pct=1.0, **plain))
    assert np.all(crop[..., 1] == 1.0)  # the centre square is all green: the red edge was cut
    pad = preprocess_image(path, (10, 10), Preprocessing(resize="pad", background=(0, 0, 255), **plain))
    assert np.allclose(pad[0, 5], [0, 0, 1]) and np.allclose(pad[9, 5], [0, 0, 1])  # letterbox bars
    assert np.allclose(pad[5, 9], [0, 1, 0]) and np.allclose(pad[5, 0], [1, 0, 0])
    for p in (stretch, crop, pad):
        assert p.shape == (10, 10, 3)


def test_pil_image_input_and_bytes_input_match_the_file(tmp_path):
    img = _marked(8, 8)
    path = save(tmp_path, img, "m.png")
    pre = Preprocessing()
    from_file = preprocess_image(path, (4, 4), pre)
    assert np.array_equal(preprocess_image(path.read_bytes(), (4, 4), pre), from_file)
    assert np.array_equal(preprocess_image(img, (4, 4), pre), from_file)


def test_preprocessing_policy_is_validated():
    with pytest.raises(VitedgeError, match="std"):
        Preprocessing(std=(0, 1, 1))
    with pytest.raises(VitedgeError, match="resize"):
        Preprocessing(resize="squash")
    assert Preprocessing.from_dict(Preprocessing(mean=(0.1,)).to_dict()).mean == (0.1, 0.1, 0.1)


# -------------------------------------------------------------------------- bad input ----
def _png_header_only(w, h):
    """A PNG whose header claims w x h pixels (no pixel data needed: the check comes first)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("w, h", [(10_000, 10_000), (20_000, 20_000)])
def test_decompression_bomb_is_refused(tmp_path, w, h):
    # 10k x 10k is over Pillow's limit (Pillow only warns there); 20k x 20k is over twice it.
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the limit is still on
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(w, h))
    with pytest.raises(VitedgeError, match="refused, more than 89,478,485 pixels"):
        open_image(path)


@pytest.mark.parametrize("size", [(1, 1), (1, 50), (50, 1)])
def test_one_pixel_images_are_refused(tmp_path, size):
    path = save(tmp_path, Image.new("RGB", size), "tiny.png")
    with pytest.raises(VitedgeError, match=r"too small to classify"):
        preprocess_image(path, (8, 8), Preprocessing())
    with pytest.raises(VitedgeError, match=r"too small"):
        preprocess_image(Image.new("RGB", size), (8, 8), Preprocessing())


def test_two_by_two_is_the_smallest_accepted(tmp_path):
    path = save(tmp_path, Image.new("RGB", (2, 2), (10, 20, 30)), "two.png")
    assert preprocess_image(path, (8, 8), Preprocessing()).shape == (8, 8, 3)


def test_bad_files_each_give_one_clear_message(tmp_path):
    good = save(tmp_path, Image.new("RGB", (64, 64), (1, 2, 3)), "good.jpg", quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    cases = {
        tmp_path / "missing.jpg": "no such file",
        empty: r"empty file \(0 bytes\)",
        truncated: "corrupt or truncated image",
        text: "not an image Pillow can read",
        tmp_path: "is a directory",
    }
    for path, message in cases.items():
        with pytest.raises(VitedgeError, match=message) as info:
            open_image(path)
        assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


def test_list_images_finds_images_recursively_and_skips_hidden(tmp_path):
    for rel in ("a.png", "sub/b.JPG", ".hidden/c.png", "sub/.d.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.png", "sub/b.JPG"]
