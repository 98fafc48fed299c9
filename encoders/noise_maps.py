"""Rendering latent grids with per-image noise maps, and moving grids between spaces and sizes.

Inversion optimizes one noise map per image and layer; :func:`render` passes them to
:class:`~spatial_latent.spatial.SpatialGenerator` through its ``noise=`` argument (one
``[B, 1, H_i, W_i]`` map per noise layer, see :meth:`SpatialGenerator.noise_shapes`). Nothing
about ``G`` is patched, so rendering is thread-safe.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.networks import Generator, SynthesisLayer
from spatial_latent.render.generator import SpatialGenerator


def noise_layers(G: Generator) -> list[SynthesisLayer]:
    """The synthesis layers that take noise, in the order they run (4x4 conv first)."""
    return SpatialGenerator(G).noise_layers()


def noise_shapes(G: Generator, canvas: tuple[int, int]) -> list[tuple[int, int]]:
    """``(H, W)`` of each noise layer's output for an image canvas ``(H, W)`` at full resolution."""
    R = G.img_resolution
    return [(canvas[0] * l.resolution // R, canvas[1] * l.resolution // R) for l in noise_layers(G)]


def const_noise(G: Generator, batch: int, canvas: tuple[int, int]) -> list[torch.Tensor]:
    """The network's stored noise tiled over ``canvas`` (what ``noise_mode='const'`` uses):
    one ``[batch, 1, H_l, W_l]`` tensor per noise layer (a copy, free to optimize)."""
    out = []
    for layer, (h, w) in zip(noise_layers(G), noise_shapes(G, canvas)):
        r = layer.resolution
        n = layer.noise_const.detach().to(torch.float32)
        ys = torch.arange(h, device=n.device) % r
        xs = torch.arange(w, device=n.device) % r
        out.append(n.index_select(0, ys).index_select(1, xs)[None, None].repeat(batch, 1, 1, 1))
    return out


def check_noise_maps(G: Generator, maps: list[torch.Tensor]) -> None:
    """Raise :class:`InputError` unless there is one map per noise layer of ``G``."""
    layers = noise_layers(G)
    if len(maps) != len(layers):
        raise InputError(f"{len(maps)} noise maps given, the generator has {len(layers)} noise layers")


@contextlib.contextmanager
def injected_noise(G: Generator, maps: list[torch.Tensor]) -> Iterator[Callable[[SpatialGenerator, LatentGrid], torch.Tensor]]:
    """Compatibility helper: checks ``maps`` (one ``[B, 1, H_l, W_l]`` per noise layer) and
    yields ``draw(sg, grid)``, which renders with them. ``G`` itself is left untouched (earlier
    versions patched its layers); prefer ``sg(grid, noise=maps)`` or :func:`render`."""
    check_noise_maps(G, maps)

    def draw(sg: SpatialGenerator, grid: LatentGrid) -> torch.Tensor:
        if sg.G is not G:
            raise InputError("injected_noise: the SpatialGenerator wraps a different generator")
        return render(sg, grid, maps)

    yield draw


def render(sg: SpatialGenerator, grid: LatentGrid, noise: list[torch.Tensor] | str = "const") -> torch.Tensor:
    """``sg(grid)`` -> ``[B, 3, H, W]`` with per-image noise maps (a list, see :func:`const_noise`)
    or a noise mode (``'const'``, ``'random'``, ``'none'``). Differentiable w.r.t. grid and maps."""
    if isinstance(noise, str):
        return sg(grid, noise_mode=noise)
    if sg.padding != "zero":
        raise InputError("per-image noise maps need padding='zero' (whole-canvas rendering)")
    check_noise_maps(sg.G, noise)
    return sg(grid, noise=noise)


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
