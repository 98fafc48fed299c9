"""Composing latent grids: several images in one picture, regions copied inside a grid.

With ``density`` d, one native image (one face, for a face model) spans d x d cells. A
composition is a larger grid with each latent placed on its own d x d block; seams between
blocks and the background are blended with soft (feathered) masks, so no hard style edge shows.

Boxes are ``(x0, y0, x1, y1)`` in cells, end-exclusive; single cells are ``(row, col)`` (see
:mod:`spatial_latent.latents.masks`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import InputError
from .grid import LatentGrid
from .masks import soft_box


def compose_faces(
    latents: torch.Tensor,
    positions: Sequence[tuple[int, int]] | None = None,
    grid_shape: tuple[int, int] | None = None,
    density: int = 4,
    cells: tuple[int, int] | None = None,
    background: torch.Tensor | None = None,
    feather: float = 1.0,
) -> LatentGrid:
    """Place N latents on one grid, each over a ``density x density`` block of cells.

    ``latents``: ``[N, C]`` (a 'w' grid) or ``[N, L, C]`` ('w+'). ``positions``: top-left cells
    ``(row, col)`` per latent; by default a ``grid_shape = (rows, cols)`` arrangement (default: as
    square as possible) with blocks side by side. ``cells``: canvas size (default: just enough).
    ``background``: ``[C]`` or ``[L, C]`` latent for uncovered cells (default: mean of the latents).
    ``feather``: seam width in cells; overlapping blocks are averaged by their soft masks.
    Returns a grid ``[1, L, C, H, W]``.
    """
    if latents.ndim not in (2, 3):
        raise InputError(f"latents must be [N, C] or [N, L, C], got {tuple(latents.shape)}")
    n = latents.shape[0]
    if n < 1:
        raise InputError("compose_faces needs at least one latent")
    lat = latents[:, None] if latents.ndim == 2 else latents  # [N, L, C]
    if positions is None:
        if grid_shape is None:
            cols = math.ceil(math.sqrt(n))
            rows = math.ceil(n / cols)
        else:
            rows, cols = grid_shape
        if rows * cols < n:
            raise InputError(f"a {rows}x{cols} arrangement holds fewer than {n} latents")
        positions = [(i // cols * density, i % cols * density) for i in range(n)]
    if len(positions) != n:
        raise InputError(f"{len(positions)} positions for {n} latents")
    if cells is None:
        cells = (max(p[0] for p in positions) + density, max(p[1] for p in positions) + density)
    h, w = cells
    for p in positions:
        if p[0] < 0 or p[1] < 0 or p[0] + density > h or p[1] + density > w:
            raise InputError(f"a block at {p} does not fit in a {h}x{w} grid")
    bg = lat.mean(dim=0) if background is None else (background[None] if background.ndim == 1 else background)
    weights = torch.stack([soft_box(cells, (x, y, x + density, y + density), feather, lat.device) for y, x in positions])
    total = weights.sum(dim=0)
    bg_weight = torch.clamp(1 - total, min=0)
    num = torch.einsum("nhw,nlc->lchw", weights, lat) + bg[:, :, None, None] * bg_weight
    data = (num / (total + bg_weight)).unsqueeze(0)
    return LatentGrid(data.contiguous(), space="w" if latents.ndim == 2 else "w+", density=density)


def copy_cells(grid: LatentGrid, src: tuple[int, int, int, int], dst: tuple[int, int], feather: float = 0.0) -> LatentGrid:
    """Copy the cells of the box ``src = (x0, y0, x1, y1)`` (cells, end-exclusive) so that its
    top-left cell lands on the cell ``dst = (row, col)``, blending the pasted region in over
    ``feather`` cells (e.g. a third eye next to the two). Returns a new grid of ``grid``'s shape."""
    x0, y0, x1, y1 = src
    piece = grid.crop(x0, y0, x1, y1)
    h, w = grid.cells
    dy, dx = dst
    ph, pw = y1 - y0, x1 - x0
    if dy < 0 or dx < 0 or dy + ph > h or dx + pw > w:
        raise InputError(f"destination {dst} for a {ph}x{pw} region is outside the {h}x{w} grid")
    if feather <= 0:
        return grid.paste(piece, dy, dx)
    # Edge cells of the piece extend outward and fade into the original over `feather` cells.
    mask = soft_box(grid.cells, (dx, dy, dx + pw, dy + ph), feather, grid.data.device)
    return grid.blend(_edge_extend(piece, grid, dy, dx), mask)


def _edge_extend(piece: LatentGrid, grid: LatentGrid, dy: int, dx: int) -> LatentGrid:
    """A grid of ``grid``'s size holding ``piece`` at ``(dy, dx)``, its edge cells repeated outward."""
    h, w = grid.cells
    ph, pw = piece.cells
    dev = piece.data.device
    ys = (torch.arange(h, device=dev) - dy).clamp(0, ph - 1)
    xs = (torch.arange(w, device=dev) - dx).clamp(0, pw - 1)
    return grid.replace(piece.data.index_select(3, ys).index_select(4, xs))
