"""Noise that is a function of (seed, layer, global pixel coordinates), not of the tensor it fills.

Any window of an unbounded canvas gets the same noise values whatever the tile size, order or
canvas size, which seamless tiling needs. A counter-based integer hash (32-bit arithmetic kept
inside int64 so it never overflows) gives two uniforms per pixel; Box-Muller turns them into a
standard normal.
"""

from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2^32`` for ``x`` in [0, 2^32) without int64 overflow (split ``c`` in halves)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + ((x * hi) & 0xFFFF) * 65536) & _MASK


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A well-mixed 32-bit integer hash, elementwise on int64 tensors holding [0, 2^32)."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def coordinate_normals(
    seed: int,
    stream: int,
    channels: int,
    y0: int,
    x0: int,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normals ``[channels, height, width]`` for global cells/pixels
    ``[y0, y0+height) x [x0, x0+width)``; a function of ``(seed, stream, channel, y, x)`` only.

    ``stream`` separates independent uses (noise layer index, latent field id ...). Coordinates
    may be negative.
    """
    ys = torch.arange(y0, y0 + height, device=device, dtype=torch.int64)[None, :, None]
    xs = torch.arange(x0, x0 + width, device=device, dtype=torch.int64)[None, None, :]
    cs = torch.arange(channels, device=device, dtype=torch.int64)[:, None, None]
    key = hash32(torch.full((), seed, dtype=torch.int64, device=device) ^ hash32(torch.full((), stream + 0x9E37, dtype=torch.int64, device=device)))
    h = hash32(key ^ hash32(cs ^ hash32((ys & _MASK) ^ hash32(xs & _MASK))))
    u1 = (h.double() + 0.5) / 2.0**32
    u2 = (hash32(h ^ 0x5BD1E995).double() + 0.5) / 2.0**32
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.to(torch.float32)


def coordinate_noise(
    seed: int,
    layer: int,
    y0: int,
    x0: int,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """One-channel noise ``[1, 1, height, width]`` for synthesis layer ``layer`` (see :func:`coordinate_normals`)."""
    return coordinate_normals(seed, layer, 1, y0, x0, height, width, device)[None]
