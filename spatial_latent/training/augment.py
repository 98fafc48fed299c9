"""Differentiable augmentation for GAN training on small data (DiffAugment's three transforms).

The same random transforms are applied to real and generated images before the discriminator
sees them, and they are differentiable, so the generator's gradient passes through them. With
a few tens of thousands of photos the discriminator otherwise memorises the training set and its
feedback to the generator degrades (Zhao et al. 2020, Karras et al. 2020). The three
transforms, as DiffAugment defines them:

- ``color``: brightness shift in [-0.5, 0.5], saturation x [0, 2], contrast x [0.5, 1.5];
- ``translation``: integer shift up to 1/8 of the side, zero filled;
- ``cutout``: one zeroed square of half the side at a random place.

Chosen over ADA's adaptive pipeline because it needs no probability controller and no
augmentation-leak tuning for a fixed, short CPU budget, and costs almost nothing to compute.
Every random number comes from the ``torch.Generator`` passed in, so training stays exactly
resumable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``'color,translation,cutout'`` -> a tuple of names (empty string: no augmentation)."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [n for n in names if n not in POLICIES]
    if bad:
        raise InputError(f"unknown augmentation {bad[0]!r}; choose from {', '.join(POLICIES)}")
    return names


def _rand(gen: torch.Generator, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=gen).to(device=x.device, dtype=x.dtype)


def augment(x: torch.Tensor, policy: tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    """Apply ``policy`` to ``x`` ``[B, C, H, W]`` (values in [-1, 1]); differentiable in ``x``."""
    if not policy:
        return x
    b = x.shape[0]
    if "color" in policy:
        x = x + (_rand(gen, (b, 1, 1, 1), x) - 0.5)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand(gen, (b, 1, 1, 1), x) * 2) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (_rand(gen, (b, 1, 1, 1), x) + 0.5) + mean
    if "translation" in policy:
        x = _translate(x, 0.125, gen)
    if "cutout" in policy:
        x = _cutout(x, 0.5, gen)
    return x


def _translate(x: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sy, sy + 1, (b, 1, 1), generator=gen).to(x.device)
    tx = torch.randint(-sx, sx + 1, (b, 1, 1), generator=gen).to(x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    # Pad by one pixel of zeros and index into it: out[y, x] = in[y - ty, x - tx] or 0 outside.
    yy = torch.clamp(gy[None] - ty + 1, 0, h + 1)
    xx = torch.clamp(gx[None] - tx + 1, 0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    idx = (yy * (w + 2) + xx).reshape(b, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.reshape(b, x.shape[1], -1).gather(2, idx).reshape_as(x)


def _cutout(x: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=gen).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=gen).to(x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = (gy[None] >= cy - ch // 2) & (gy[None] < cy - ch // 2 + ch) & (gx[None] >= cx - cw // 2) & (gx[None] < cx - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)
