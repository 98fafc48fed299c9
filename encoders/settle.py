"""Copy cells of an encoded grid elsewhere, then let the grid settle so the copy is drawn there.

A face model with zero padding knows where features belong: cells copied from over an eye onto
the forehead carry the eye's style, but the network, which draws eyes where eyes are, renders
little more than a smudge there. :func:`copy_and_settle` first copies the cells
(:func:`~spatial_latent.latents.compose.copy_cells`), then builds the picture the copy should
give (the grid's own rendering with the source region's pixels pasted, feathered, at the
destination) and refines the copied grid towards it for a few optimization steps, starting
from the copy and from the grid's noise maps. The result is still one latent grid (it renders
the out-of-sample face by itself); cells away from the destination barely move, because the
picture there is already what they render.
"""

from __future__ import annotations

from typing import Callable

import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.compose import copy_cells
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.networks import Generator
from spatial_latent.render.generator import SpatialGenerator

from .optimize import Inversion, OptimizeConfig, invert


def pasted_target(image: torch.Tensor, src: tuple[int, int, int, int], dst: tuple[int, int], cell_px: int, margin: int | None = None) -> torch.Tensor:
    """``image [B, 3, H, W]`` with the pixels of the cell box ``src = (x0, y0, x1, y1)`` (plus
    ``margin`` pixels around it, default one cell) pasted so the box's top-left cell lands on cell
    ``dst = (row, col)``, blended in with a feathered edge. Returns a new ``[B, 3, H, W]``."""
    x0, y0, x1, y1 = src
    m = cell_px if margin is None else margin
    H, W = image.shape[-2:]
    sy0, sx0 = y0 * cell_px - m, x0 * cell_px - m
    h, w = (y1 - y0) * cell_px + 2 * m, (x1 - x0) * cell_px + 2 * m
    ty0, tx0 = dst[0] * cell_px - m, dst[1] * cell_px - m
    if min(sy0, sx0, ty0, tx0) < 0 or max(sy0, ty0) + h > H or max(sx0, tx0) + w > W:
        raise InputError(f"cells {src} (with a {m}-pixel margin) moved to cell {dst} fall outside the {H}x{W} picture")
    ramp = lambda n: ((1 - torch.linspace(-1, 1, n, device=image.device).abs()) / 0.35).clamp(max=1)  # noqa: E731
    alpha = ramp(h)[:, None] * ramp(w)[None, :]
    out = image.clone()
    patch = image[..., sy0 : sy0 + h, sx0 : sx0 + w]
    out[..., ty0 : ty0 + h, tx0 : tx0 + w] = alpha * patch + (1 - alpha) * out[..., ty0 : ty0 + h, tx0 : tx0 + w]
    return out


def copy_and_settle(
    G: Generator,
    grid: LatentGrid,
    src: tuple[int, int, int, int],
    dst: tuple[int, int],
    steps: int = 150,
    feather: float = 1.0,
    noise: list[torch.Tensor] | None = None,
    callback: Callable[[int, int, dict[str, float]], None] | None = None,
) -> tuple[LatentGrid, Inversion | None]:
    """Copy the cells ``src`` of ``grid [1, L, C, h, w]`` to ``dst`` and settle the copy for
    ``steps`` MSE steps (module docstring); ``steps=0`` gives the plain copy.

    ``noise``: the per-layer noise maps the grid renders with (default: those the grid holds,
    e.g. an encoded photo's, else the network's stored maps). Returns the new grid (holding its
    noise maps) and the settling run (None for ``steps=0``).
    """
    if grid.batch != 1:
        raise InputError(f"copy_and_settle works on one grid at a time, got {grid.batch}")
    copied = copy_cells(grid, src, dst, feather=feather)
    if steps <= 0:
        return copied, None
    sg = SpatialGenerator(G, padding="zero")
    maps = noise if noise is not None else grid.noise_maps()
    maps = [m.to(sg.device) for m in maps] if maps else None
    with torch.no_grad():
        image = sg(grid.to(sg.device), "const", noise=maps)
    cell_px = G.img_resolution // grid.density
    target = pasted_target(image, src, dst, cell_px)
    cfg = OptimizeConfig(steps=steps, space="grid", density=grid.density, grid_layers="w" if grid.space == "w" else "w+", loss="mse")
    inv = invert(G, target, cfg, init=copied.data.to(sg.device), init_noise=maps, callback=callback)
    settled = inv.grid.to("cpu")
    settled.meta = dict(grid.meta, settled_steps=steps)
    return settled, inv
