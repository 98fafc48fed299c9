"""Sliced Wasserstein distance between two image sets, as ProGAN (Karras et al. 2018) defines it.

Each image is split into a Laplacian pyramid down to 16 px; from every level 128 random 7x7
neighbourhoods are taken as descriptors (``3 * 7 * 7`` numbers), normalized per colour channel
with the mean and standard deviation of that level's descriptors; the distance between the two
descriptor sets is the sliced Wasserstein distance over ``4 x 128`` random unit directions (mean
absolute difference of the sorted projections). Reported x 1e3 per level and averaged. Lower is
closer; identical sets give 0. It needs no downloaded network, so it works offline.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

_GAUSS5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    k = (_GAUSS5.to(x) * gain)
    c = x.shape[1]
    x = F.pad(x, [2, 2, 2, 2], mode="reflect")
    x = F.conv2d(x, k.reshape(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, k.reshape(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def _down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[:, :, ::2, ::2]


def _up(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    y = torch.zeros(b, c, h * 2, w * 2, dtype=x.dtype, device=x.device)
    y[:, :, ::2, ::2] = x
    return _blur(y, gain=2.0)  # x2 per axis restores the energy of the zero-inserted samples


def laplacian_pyramid(img: torch.Tensor, min_size: int = 16) -> list[torch.Tensor]:
    """``[N, C, H, W]`` -> band-pass levels, finest first, ending with the low-pass ``min_size`` image.

    ``H``, ``W`` must be ``min_size`` times a power of two."""
    levels = []
    x = img
    while min(x.shape[-2:]) > min_size:
        low = _down(x)
        levels.append(x - _up(low))
        x = low
    levels.append(x)
    return levels


def _positions(n: int, h: int, w: int, count: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ys = torch.randint(0, h - size + 1, (n, count), generator=gen)
    xs = torch.randint(0, w - size + 1, (n, count), generator=gen)
    return ys, xs


def _descriptors(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, size: int) -> torch.Tensor:
    """The ``size x size`` neighbourhoods at ``(ys, xs)`` ``[N, count]``: ``[N * count, C, size, size]``."""
    n, c = level.shape[:2]
    count = ys.shape[1]
    off = torch.arange(size)
    rows = (ys[..., None] + off)[..., :, None].expand(n, count, size, size)
    cols = (xs[..., None] + off)[..., None, :].expand(n, count, size, size)
    img_idx = torch.arange(n)[:, None, None, None].expand(n, count, size, size)
    patches = level.permute(0, 2, 3, 1)[img_idx, rows, cols]  # [n, count, size, size, C]
    return patches.permute(0, 1, 4, 2, 3).reshape(n * count, c, size, size)


def _normalize(desc: torch.Tensor) -> torch.Tensor:
    mean = desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
    return ((desc - mean) / std).flatten(1).float()  # float32 projections: sorting dominates the cost


def _swd(a: torch.Tensor, b: torch.Tensor, directions: int, repeats: int, gen: torch.Generator) -> float:
    total = 0.0
    for _ in range(repeats):
        d = torch.randn(a.shape[1], directions, generator=gen, dtype=torch.float64).to(a.dtype)
        d = d / d.norm(dim=0, keepdim=True)
        pa = torch.sort(a @ d, dim=0).values
        pb = torch.sort(b @ d, dim=0).values
        total += (pa - pb).abs().mean().item()
    return total / repeats


@torch.no_grad()
def sliced_wasserstein(
    set_a: torch.Tensor,
    set_b: torch.Tensor,
    descriptors_per_image: int = 128,
    patch: int = 7,
    directions: int = 128,
    repeats: int = 4,
    min_size: int = 16,
    seed: int = 0,
) -> dict[str, object]:
    """SWD x 1e3 between ``set_a`` and ``set_b`` (``[N, 3, H, W]`` each, same N, H, W, values in
    any fixed range, e.g. [-1, 1]). Returns ``{'levels': {size: swd}, 'mean': avg}``, finest level
    first. Deterministic for a given ``seed``."""
    if set_a.shape != set_b.shape or set_a.ndim != 4:
        raise ValueError(f"SWD needs two image sets of one shape [N, C, H, W], got {tuple(set_a.shape)} and {tuple(set_b.shape)}")
    gen = torch.Generator().manual_seed(seed)
    pa = laplacian_pyramid(set_a.detach().double().cpu(), min_size)
    pb = laplacian_pyramid(set_b.detach().double().cpu(), min_size)
    levels: dict[int, float] = {}
    for la, lb in zip(pa, pb):
        # Same neighbourhood positions in both sets: position is independent of content, and
        # sharing it removes sampling noise (identical sets give exactly 0).
        ys, xs = _positions(la.shape[0], la.shape[2], la.shape[3], descriptors_per_image, patch, gen)
        da = _descriptors(la, ys, xs, patch)
        db = _descriptors(lb, ys, xs, patch)
        levels[la.shape[-1]] = 1e3 * _swd(_normalize(da), _normalize(db), directions, repeats, gen)
    return {"levels": levels, "mean": sum(levels.values()) / len(levels)}


def scale_consistency(
    render: Callable[[int, int], torch.Tensor],
    real_crops: torch.Tensor,
    scales: tuple[int, ...] = (1, 4),
    seed: int = 0,
    per_image: int | None = None,
    **swd_options: int,
) -> dict[int, float]:
    """SWD of crops from images generated at several sizes against real crops.

    ``render(scale, count)`` returns ``count`` generated images ``[count, 3, s*R, s*R]``;
    ``real_crops``: ``[N, 3, R, R]``. From each generated image, ``per_image`` crops of size R
    (default ``scale^2``) are cut at random places until there are N; fewer per image means more
    independent images (crops of one image are correlated, which biases SWD upward). A generator that stays consistent when grown gives about the same
    SWD at every scale. ``swd_options`` go to :func:`sliced_wasserstein`. Returns ``{scale: mean SWD}``."""
    n, _, r, _ = real_crops.shape
    gen = torch.Generator().manual_seed(seed)
    out: dict[int, float] = {}
    for s in scales:
        per = min(s * s, per_image or s * s)
        imgs = render(s, -(-n // per))
        crops = []
        for img in imgs:
            for _ in range(per):
                y = int(torch.randint(0, img.shape[-2] - r + 1, (1,), generator=gen))
                x = int(torch.randint(0, img.shape[-1] - r + 1, (1,), generator=gen))
                crops.append(img[:, y : y + r, x : x + r])
        fake = torch.stack(crops[:n]).to(real_crops)
        out[s] = float(sliced_wasserstein(real_crops, fake, seed=seed, **swd_options)["mean"])
    return out
