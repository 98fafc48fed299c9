"""Rendering latent grids with per-image noise maps, and moving grids between spaces and sizes.

:class:`~spatial_latent.spatial.SpatialGenerator` takes noise from the network's stored maps or
from a seed. Inversion optimizes one noise map per image and layer, so :func:`render` injects
them: while it runs, each synthesis layer of ``G`` gets an instance-level ``forward_styles`` that
swaps in the given map (removed again afterwards, also on errors). It is not thread-safe: do not
render with the same ``G`` from two threads at once. The API this stands in for would be a
``noise=[per-layer [B, 1, H, W]]`` argument to ``SpatialGenerator.forward``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from spatial_latent.errors import InputError
from spatial_latent.latent_grid import LatentGrid
from spatial_latent.networks import Generator, SynthesisLayer
from spatial_latent.spatial import SpatialGenerator


def noise_layers(G: Generator) -> list[SynthesisLayer]:
    """The synthesis layers that take noise, in the order they run (4x4 conv first)."""
    layers = []
    for block in G.synthesis.blocks():
        if block.in_channels != 0:
            layers.append(block.conv0)
        layers.append(block.conv1)
    return layers


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


@contextlib.contextmanager
def injected_noise(G: Generator, maps: list[torch.Tensor]) -> Iterator[None]:
    """Within the block, every noise layer of ``G`` uses ``maps[i]`` (``[B, 1, H_l, W_l]``)."""
    layers = noise_layers(G)
    if len(maps) != len(layers):
        raise InputError(f"{len(maps)} noise maps given, the generator has {len(layers)} noise layers")
    try:
        for layer, m in zip(layers, maps):
            layer.forward_styles = _with_noise(layer, m)  # instance attribute shadows the method
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward_styles", None)


def _with_noise(layer: SynthesisLayer, m: torch.Tensor):  # type: ignore[no-untyped-def]
    method = type(layer).forward_styles

    def forward_styles(x: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None, gain: float = 1.0, padding: int | None = None) -> torch.Tensor:
        if m.shape[-2:] != (x.shape[2] * layer.up, x.shape[3] * layer.up):
            raise InputError(f"noise map {tuple(m.shape[-2:])} does not match the layer output {(x.shape[2] * layer.up, x.shape[3] * layer.up)}")
        return method(layer, x, styles, noise=m, gain=gain, padding=padding)

    return forward_styles


def render(sg: SpatialGenerator, grid: LatentGrid, noise: list[torch.Tensor] | str = "const") -> torch.Tensor:
    """``sg(grid)`` -> ``[B, 3, H, W]`` with per-image noise maps (a list, see :func:`const_noise`)
    or a noise mode (``'const'``, ``'random'``, ``'none'``). Differentiable w.r.t. grid and maps."""
    if isinstance(noise, str):
        return sg(grid, noise_mode=noise)
    if sg.padding != "zero":
        raise InputError("per-image noise maps need padding='zero' (whole-canvas rendering)")
    with injected_noise(sg.G, noise):
        return sg(grid, noise_mode="const")


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
