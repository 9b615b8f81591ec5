"""The one image preprocessing function: calibration, evaluation and prediction all call it.

Pillow and numpy only (it runs on the device). The policy (size, resize, normalization) comes
from the model or artifact metadata, so a model sees at run time what it saw in training.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import VitedgeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")
RESIZE_MODES = ("stretch", "center_crop", "pad")
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocessing:
    """How raw pixels become the model's input tensor (NHWC float32, RGB).

    x = (pixel / 255 - mean) / std, per channel, after resizing by `resize`:
      stretch      resize straight to the input size (aspect ratio not kept);
      center_crop  resize the shorter side to size / crop_pct, then crop the centre;
      pad          fit inside the input size, pad with `background`.
    Transparent pixels are composited onto `background` (an RGB triple).
    """

    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize: str = "stretch"
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    background: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        for name in ("mean", "std", "background"):
            value = tuple(getattr(self, name))
            if len(value) == 1:
                value = value * 3
            if len(value) != 3:
                raise VitedgeError(f"preprocessing {name} needs 1 or 3 values, got {value}")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                raise VitedgeError(f"preprocessing {name} needs finite numbers, got {value}")
            object.__setattr__(self, name, value)
        if any(s == 0 for s in self.std):
            raise VitedgeError("preprocessing std must not be zero")
        if not isinstance(self.resize, str) or self.resize not in RESIZE_MODES:
            raise VitedgeError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if not isinstance(self.interpolation, str) or self.interpolation not in _RESAMPLE:
            raise VitedgeError(f"interpolation must be one of {', '.join(_RESAMPLE)}")
        if not isinstance(self.crop_pct, (int, float)) or not 0.0 < self.crop_pct <= 1.0:
            raise VitedgeError("crop_pct must be in (0, 1]")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict | None) -> Preprocessing:
        known = {f.name for f in dataclasses.fields(cls)}
        if data is not None and not isinstance(data, dict):
            raise VitedgeError(f"preprocessing is a {type(data).__name__}, not an object")
        for key in ("mean", "std", "background"):
            if key in (data or {}) and not isinstance(data[key], (list, int, float)):
                raise VitedgeError(f"preprocessing {key} is a {type(data[key]).__name__}, not numbers")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in (data or {}).items() if k in known})


# Smallest image side accepted: a 1-pixel-wide image has no spatial content to classify.
MIN_IMAGE_SIDE = 2
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float grey images to 8-bit L (Pillow's own convert clips).

    I;16*: 0..65535.  F: 0..1 if every value fits, else 0..255.  I: 0..255 if every value fits
    (an 8-bit image in a 32-bit container), else 0..65535 (16-bit PNGs open as I in some Pillows).
    """
    arr = np.asarray(img, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    top = float(finite.max()) if finite.size else 0.0
    low = float(finite.min()) if finite.size else 0.0
    if img.mode == "F":
        if top <= 1.0 and low >= 0.0:
            arr = arr * 255.0
    elif img.mode == "I" and top <= 255 and low >= 0:
        pass
    else:
        arr = arr / 257.0  # 65535 -> 255
    arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; alpha composited onto `background`."""
    if img.mode in _HIGH_DEPTH_MODES:
        img = _high_depth_to_l(img)
    if img.mode == "P":
        # A palette with a transparent index (PNG tRNS, GIF) must go through RGBA.
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("LA", "PA", "RGBa") or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")  # (L/RGB: a PNG tRNS colour key becomes alpha)
    if img.mode == "RGBA":
        base = Image.new("RGB", img.size, tuple(background))
        base.paste(img, mask=img.getchannel("A"))
        return base
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX
        except ValueError:
            raise VitedgeError(f"image mode {img.mode} cannot be converted to RGB") from None
    return img


def _check_size(img: Image.Image, name: str) -> None:
    if min(img.size) < MIN_IMAGE_SIDE:
        raise VitedgeError(
            f"{name}: image is {img.width}x{img.height} pixels, too small to classify "
            f"(at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE})"
        )


def _exif_upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block means 'not rotated', not a failure."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # Pillow raises several types (SyntaxError, struct.error, ...) for bad EXIF
        return img


# Decode and pre-shrink to at least this many times the size the final resize needs, as
# Pillow's own thumbnail() does: the last, filtered resize then still averages >= 2x2 pixels
# into each output pixel, so the shortcut costs no visible quality.
REDUCING_GAP = 2


def _decode_side(size: tuple[int, int], pre: Preprocessing) -> int:
    """Both sides of a decoded image at least this long give the final resize all it needs."""
    need = max(size)
    if pre.resize == "center_crop":
        need = max(need, -(-need * 1000 // round(pre.crop_pct * 1000)))  # shorter side -> size / crop_pct
    return need * REDUCING_GAP


def _shrink_early(img: Image.Image, side: int) -> Image.Image:
    """Image.reduce by the largest integer factor that keeps both sides >= `side` (a box filter,
    much cheaper than resizing a large image in one filtered step)."""
    factor = min(img.width, img.height) // side
    if factor < 2:
        return img
    try:
        return img.reduce(factor)
    except ValueError:  # modes reduce() does not take (P, 1, I;16): the final resize does it all
        return img


def open_image(
    source: str | os.PathLike | bytes, background: tuple[int, int, int] = (0, 0, 0), min_side: int | None = None
) -> Image.Image:
    """Decode an image file (first frame), apply EXIF orientation, return RGB.

    With `min_side`, a large image is decoded smaller, never below `min_side` on either side:
    JPEG through DCT scaling (Image.draft: 1/2, 1/4 or 1/8 of the pixels are ever decoded),
    other formats by Image.reduce after decoding. A phone photo for a 224-pixel model then
    costs a fraction of its full decode's time and memory.
    Raises VitedgeError with one clear line for anything that is not a usable image.
    Pillow's decompression-bomb limit stays on: over Image.MAX_IMAGE_PIXELS is refused too
    (Pillow itself only warns there, and errors at twice the limit).
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.exists():
            raise VitedgeError(f"{name}: no such file")
        if path.is_dir():
            raise VitedgeError(f"{name}: is a directory, not an image")
        if not path.is_file():
            raise VitedgeError(f"{name}: not a regular file")
        if path.stat().st_size == 0:
            raise VitedgeError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow's other warnings (corrupt EXIF, palette transparency) would be stray
            # stderr lines about an image we handle anyway. The bomb check runs inside
            # Image.open, so its filter must be on before it (filters added last win).
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                img.seek(0)
                if min_side:
                    img.draft(None, (min_side, min_side))  # a square request: EXIF rotation cannot matter
                img.load()
                small = _shrink_early(img, min_side) if min_side else img
                rgb = _to_rgb(_exif_upright(small), background)
                if rgb is img:  # still backed by the file that is about to close
                    rgb = img.copy()
    except VitedgeError as exc:
        raise VitedgeError(str(exc) if str(exc).startswith(name) else f"{name}: {exc}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise VitedgeError(
            f"{name}: refused, more than {Image.MAX_IMAGE_PIXELS:,} pixels (a possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise VitedgeError(f"{name}: not an image Pillow can read") from None
    except PermissionError:
        raise VitedgeError(f"{name}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise VitedgeError(f"{name}: corrupt or truncated image ({detail})") from None
    _check_size(rgb, name)
    return rgb


def _resize(img: Image.Image, size: tuple[int, int], pre: Preprocessing) -> Image.Image:
    h, w = size
    resample = _RESAMPLE[pre.interpolation]
    if img.size == (w, h):
        return img
    if pre.resize == "stretch":
        return img.resize((w, h), resample)
    if pre.resize == "center_crop":
        scale = max(h, w) / pre.crop_pct / min(img.size)
        new = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
        img = img.resize(new, resample)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        return img.crop((left, top, left + w, top + h))
    # pad: keep the aspect ratio, letterbox onto the background colour
    scale = min(w / img.width, h / img.height)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    canvas = Image.new("RGB", (w, h), tuple(pre.background))
    canvas.paste(img.resize(new, resample), ((w - new[0]) // 2, (h - new[1]) // 2))
    return canvas


def preprocess_image(
    source: str | os.PathLike | bytes | Image.Image, size: tuple[int, int], pre: Preprocessing
) -> np.ndarray:
    """THE preprocessing function: image file (or PIL image) -> float32 array (H, W, 3).

    Used by calibration, evaluation and prediction alike, so all three see the same pixels.
    """
    return normalize_pixels(load_pixels(source, size, pre), pre)


def load_pixels(
    source: str | os.PathLike | bytes | Image.Image, size: tuple[int, int], pre: Preprocessing
) -> np.ndarray:
    """The first half of preprocess_image: decoded, RGB, resized; uint8 array (H, W, 3).

    Training keeps these bytes in memory and normalizes them on the fly the same way.
    """
    if isinstance(source, Image.Image):
        img = _to_rgb(source, pre.background)
        _check_size(img, "<image>")
    else:
        img = open_image(source, pre.background, min_side=_decode_side(size, pre))
    return np.asarray(_resize(img, size, pre), dtype=np.uint8)


def normalize_pixels(pixels: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """The second half of preprocess_image: uint8 RGB -> float32 (pixel / 255 - mean) / std."""
    x = np.asarray(pixels, dtype=np.float32) * np.float32(1.0 / 255.0)
    return (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder`, recursively, sorted (hidden files and folders skipped)."""
    root = Path(folder)
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).parts
        if any(part.startswith(".") for part in rel):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(path)
    return sorted(found)
