"""The one image preprocessing function: calibration, evaluation and prediction all call it.

Pillow and numpy only (it runs on the device). The policy (size, resize, normalization) comes
from the model or artifact metadata, so a model sees at run time what it saw in training.
"""

from __future__ import annotations

import dataclasses
import io
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
            object.__setattr__(self, name, value)
        if any(s == 0 for s in self.std):
            raise VitedgeError("preprocessing std must not be zero")
        if self.resize not in RESIZE_MODES:
            raise VitedgeError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.interpolation not in _RESAMPLE:
            raise VitedgeError(f"interpolation must be one of {', '.join(_RESAMPLE)}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise VitedgeError("crop_pct must be in (0, 1]")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict | None) -> Preprocessing:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in (data or {}).items() if k in known})


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; alpha composited onto `background`."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            # Float images: [0, 1] if they fit, else taken as 0..255.
            arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
        elif img.mode == "I" and arr.size and np.max(arr) <= 255 and np.min(arr) >= 0:
            pass  # 32-bit container holding 8-bit values
        else:
            arr = arr / 257.0  # 16-bit range -> 8-bit
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode == "RGBa":
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        base = Image.new("RGB", img.size, tuple(background))
        base.paste(img, mask=img.getchannel("A"))
        return base
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return img


def open_image(source: str | os.PathLike | bytes, background: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Decode an image file fully (first frame), apply EXIF orientation, return RGB.

    Raises VitedgeError with one clear line for anything that is not a usable image.
    Pillow's decompression-bomb limit stays on.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        if isinstance(source, bytes):
            img = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.exists():
                raise VitedgeError(f"{name}: no such file")
            if path.is_dir():
                raise VitedgeError(f"{name}: is a directory, not an image")
            if path.stat().st_size == 0:
                raise VitedgeError(f"{name}: empty file (0 bytes)")
            img = Image.open(path)
        with warnings.catch_warnings():
            # A DecompressionBombWarning (over Pillow's pixel limit) is refused like the error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img, background)
    except VitedgeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise VitedgeError(f"{name}: refused, too many pixels ({exc})") from None
    except UnidentifiedImageError:
        raise VitedgeError(f"{name}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise VitedgeError(f"{name}: corrupt or truncated image ({exc})") from None
    if min(rgb.size) < 1:
        raise VitedgeError(f"{name}: image has no pixels")
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
    img = _to_rgb(source, pre.background) if isinstance(source, Image.Image) else open_image(source, pre.background)
    img = _resize(img, size, pre)
    x = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
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
