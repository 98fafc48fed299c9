"""Converting generator outputs to pictures and writing them safely.

Generator images are float tensors ``[N, C, H, W]`` roughly in ``[-1, 1]``; pictures are uint8
arrays ``[N, H, W, C]``. Files are written to a temporary name and renamed, so an interrupted
run never leaves a half-written image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write


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
