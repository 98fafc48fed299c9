"""Rendering latent grids with per-image noise maps, and moving grids between spaces and sizes.

Inversion optimizes one noise map per image and layer; :func:`render` passes them to
:class:`~spatial_latent.render.generator.SpatialGenerator` through its ``noise=`` argument (one
``[B, 1, H_i, W_i]`` map per noise layer, see :meth:`SpatialGenerator.noise_shapes`). Nothing
about ``G`` is patched, so rendering is thread-safe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.networks import Generator
from spatial_latent.render.generator import SpatialGenerator


def const_noise(G: Generator, batch: int, canvas: tuple[int, int]) -> list[torch.Tensor]:
    """The network's stored noise tiled over ``canvas`` (``(H, W)`` output pixels; what
    ``noise_mode='const'`` uses): one ``[batch, 1, H_l, W_l]`` tensor per noise layer, the canvas
    at that layer's resolution (a copy, free to optimize)."""
    R = G.img_resolution
    out = []
    for layer in G.synthesis.noise_layers():
        r = layer.resolution
        n = layer.noise_const.detach().to(torch.float32)
        ys = torch.arange(canvas[0] * r // R, device=n.device) % r
        xs = torch.arange(canvas[1] * r // R, device=n.device) % r
        out.append(n.index_select(0, ys).index_select(1, xs)[None, None].repeat(batch, 1, 1, 1))
    return out


def render(sg: SpatialGenerator, grid: LatentGrid, noise: list[torch.Tensor] | str = "const") -> torch.Tensor:
    """``sg(grid)`` -> ``[B, 3, H, W]`` with per-image noise maps (a list, see :func:`const_noise`)
    or a noise mode (``'const'``, ``'random'``, ``'none'``). Differentiable w.r.t. grid and maps.
    Either padding mode renders the whole canvas with the maps."""
    if isinstance(noise, str):
        return sg(grid, noise_mode=noise)
    return sg(grid, noise=noise)  # checks one map per noise layer, of the canvas' sizes


def resize_cells(data: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """Latents ``[B, L, C, h, w]`` -> ``[B, L, C, *cells]``: area-averaged when shrinking,
    bilinear (cell centres) when growing."""
    b, layers, c, h, w = data.shape
    if (h, w) == tuple(cells):
        return data
    x = data.reshape(b, layers * c, h, w)
    if cells[0] <= h and cells[1] <= w:
        x = F.adaptive_avg_pool2d(x, cells)
    else:
        x = F.interpolate(x, size=cells, mode="bilinear", align_corners=False)
    return x.reshape(b, layers, c, *cells)


def convert_grid(data: torch.Tensor, space: str, num_ws: int, cells: tuple[int, int]) -> torch.Tensor:
    """Latents ``[B, L, C, h, w]`` (L = 1 or num_ws) -> a starting point in ``space`` ('w' or 'w+')
    with ``cells``: 'w' averages the layers, 'w+' broadcasts a shared grid to every layer."""
    if space == "w":
        data = data.mean(dim=1, keepdim=True)
    elif data.shape[1] == 1:
        data = data.expand(-1, num_ws, -1, -1, -1)
    elif data.shape[1] != num_ws:
        raise InputError(f"latents have {data.shape[1]} layers, the generator needs {num_ws}")
    return resize_cells(data, cells).contiguous()
