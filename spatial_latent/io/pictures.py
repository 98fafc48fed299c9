"""Pictures in and out: reading the pictures people bring, writing what the generator makes.

Reading: any common format and mode, safely, as RGB uint8.

``read_image(path)`` returns ``[H, W, 3]`` uint8 RGB whatever the file holds: JPEG/PNG/WebP/BMP/
TIFF/GIF (first frame), EXIF-rotated photos (turned upright), grayscale, palette, RGBA / LA
(composited over a background colour), CMYK, 16-bit and float images (rescaled, not truncated).

Safety: the header is read first and an image claiming more than ``max_pixels`` pixels is refused
before anything is decoded (a decompression bomb is a small file that claims a huge size); large
JPEGs are decoded directly at a reduced scale (``draft``) and anything larger than ``max_side`` is
downscaled, so a 50 MP photo never costs 50 MP of float memory downstream. Every failure is one
:class:`~spatial_latent.errors.InputError` naming the file.

Writing: generator images are float tensors ``[N, C, H, W]`` roughly in ``[-1, 1]``; pictures
are uint8 arrays ``[N, H, W, C]``. Files are written to a temporary name and renamed, so an
interrupted run never leaves a half-written image.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..errors import InputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif")
DEFAULT_MAX_PIXELS = 128_000_000  # about 11k x 11k: more than any camera, less than a bomb
DEFAULT_MAX_SIDE = 4096
MIN_SIDE = 8


@dataclasses.dataclass
class LoadedImage:
    """A decoded picture ``pixels [H, W, 3]`` uint8 RGB and how it was obtained.

    ``scale`` is ``H / original_height`` (< 1 when the picture was downscaled on reading);
    ``original_size`` is ``(height, width)`` after EXIF rotation.
    """

    pixels: np.ndarray
    path: Path
    original_size: tuple[int, int]
    scale: float
    mode: str
    exif_rotated: bool


def list_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (non-recursive, image extensions only, sorted) into a file list.

    Files named explicitly are kept whatever their extension (reading them reports what is wrong);
    a path that does not exist is an :class:`InputError`.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".") and q.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                log.warning("no image files (%s) in %s", ", ".join(IMAGE_EXTENSIONS), p)
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise InputError(f"no such file or folder: {p}")
    return out


def read_image(
    path: str | os.PathLike,
    max_side: int | None = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> LoadedImage:
    """Decode ``path`` into RGB uint8 ``[H, W, 3]``, upright, at most ``max_side`` pixels per side.

    Raises :class:`InputError` for a missing file, a folder, a non-image, a truncated or corrupt
    image, an image smaller than 8 px per side, or one with more than ``max_pixels`` pixels.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        # PIL warns (or raises) about big images using a process-wide limit; the explicit size check
        # below replaces it without touching that global.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise InputError(
                        f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, more than the limit of "
                        f"{max_pixels / 1e6:.0f} (a decompression bomb or an unusually huge picture); "
                        "downscale it first"
                    )
                if min(w, h) < MIN_SIDE:
                    raise InputError(f"{path}: {w}x{h} is too small (at least {MIN_SIDE} px per side)")
                im.seek(0)  # first frame of animations
                if max_side and im.format == "JPEG" and max(w, h) > 2 * max_side:
                    # decode at 1/2, 1/4 or 1/8 scale straight from the DCT: fast and small
                    im.draft(im.mode, (max(1, w * max_side // max(w, h)), max(1, h * max_side // max(w, h))))
                im.load()
                orientation = _exif_orientation(im)
                exif_rotated = orientation in (2, 3, 4, 5, 6, 7, 8)
                im = ImageOps.exif_transpose(im) if exif_rotated else im
                mode = im.mode
                orig_h, orig_w = (w, h) if orientation in (5, 6, 7, 8) else (h, w)  # 90-degree turns swap axes
                try:
                    rgb = _to_rgb(im, background)
                except ValueError as e:  # e.g. LAB or multi-band TIFFs PIL cannot turn into RGB
                    raise InputError(f"{path}: cannot convert its {mode} pixels to RGB ({e})") from None
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file PIL can read (JPEG, PNG, WebP, BMP, TIFF, GIF)") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: refused as a possible decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"{path}: corrupt or truncated image ({type(e).__name__}: {e})") from None
    scale = rgb.shape[0] / orig_h
    if max_side and max(rgb.shape[:2]) > max_side:
        rgb, f = _downscale(rgb, max_side)
        scale *= f
    if scale != 1.0:
        log.info("%s: read at %.3g x its size (%dx%d)", path, scale, rgb.shape[1], rgb.shape[0])
    return LoadedImage(np.ascontiguousarray(rgb), path, (orig_h, orig_w), scale, mode, exif_rotated)


def _exif_orientation(im: "object") -> int | None:
    try:
        return im.getexif().get(0x0112)  # type: ignore[attr-defined]
    except Exception:  # broken EXIF blocks are common; they must not make a photo unreadable
        return None


def _to_rgb(im: "object", background: tuple[int, int, int]) -> np.ndarray:
    """Any PIL mode -> uint8 ``[H, W, 3]``; alpha is composited over ``background``."""
    from PIL import Image

    assert isinstance(im, Image.Image)
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode == "F":
            top = 1.0 if a.size and np.nanmax(a) <= 1.0 else 255.0
        elif mode.startswith("I;16"):
            top = 65535.0
        else:  # 32-bit ints: 16-bit PNGs often arrive as mode I
            m = a.max() if a.size else 0
            top = 255.0 if m <= 255 else 65535.0 if m <= 65535 else float(m)
        a = np.nan_to_num(a / top, nan=0.0).clip(0, 1)
        g = np.round(a * 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(im.convert("RGBA")).astype(np.float32)
        alpha = rgba[:, :, 3:4] / 255.0
        bg = np.asarray(background, dtype=np.float32)[None, None]
        return np.round(rgba[:, :, :3] * alpha + bg * (1 - alpha)).clip(0, 255).astype(np.uint8)
    return np.asarray(im.convert("RGB"))


def _downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = rgb.shape[:2]
    f = max_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    out = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)  # area averaging: no aliasing
    return out, out.shape[0] / h


# ----------------------------------------------------------------------------------------------
# Writing


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` in ``[-1, 1]`` -> uint8 ``[N, H, W, C]`` (C = 1 or 3)."""
    if img.ndim != 4:
        raise ValueError(f"expected [N, C, H, W], got {tuple(img.shape)}")
    x = (img.detach().to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def image_grid(pictures: np.ndarray, cols: int | None = None) -> np.ndarray:
    """Tile uint8 ``[N, H, W, C]`` into one ``[rows*H, cols*W, C]`` picture (row-major)."""
    n, h, w, c = pictures.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.zeros((rows * h, cols * w, c), dtype=pictures.dtype)
    for i in range(n):
        r, q = divmod(i, cols)
        out[r * h : (r + 1) * h, q * w : (q + 1) * w] = pictures[i]
    return out


def save_picture(picture: np.ndarray, path: str | os.PathLike) -> Path:
    """Write uint8 ``[H, W, C]`` (C = 1, 3 or 4) to PNG/JPEG/WebP, atomically."""
    from PIL import Image

    path = Path(path)
    if picture.ndim == 3 and picture.shape[2] == 1:
        picture = picture[:, :, 0]
    with atomic_write(path) as tmp:
        Image.fromarray(np.ascontiguousarray(picture)).save(tmp)
    return path
