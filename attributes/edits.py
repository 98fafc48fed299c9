"""Applying directions to latent grids, where the user chooses.

``edit(grid, direction, strength, mask, layers)`` adds ``strength * mask * direction`` to the
grid's cells: ``grid.data [B, L, C, h, w] + strength * mask[h, w] * vectors[L, C, h, w]``.

Masks are per cell, values in ``[0, 1]`` (fractions give soft borders). Build them with the
builders of :mod:`spatial_latent.latents.masks`: ``box_mask`` (a box ``(x0, y0, x1, y1)`` in
cells or pixels; cells partly inside get their covered fraction), ``image_mask`` (an
image-sized mask area-averaged onto the cells) or ``cell_mask`` (a list of ``(row, col)``
cells); ``edit`` also accepts a tensor of either size directly. ``layers`` confines a W+ edit to
some synthesis layers (coarse ones change structure, fine ones colour and texture).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.latents.masks import resolve_mask

from .direction import Direction


@dataclasses.dataclass
class Edit:
    """One edit: ``direction`` at ``strength`` (a number, or ``[B]`` per grid), inside ``mask``
    (see :func:`~spatial_latent.latents.masks.resolve_mask`; None = everywhere), on ``layers`` (ws rows; None = all)."""

    direction: Direction
    strength: float | torch.Tensor = 1.0
    mask: torch.Tensor | None = None
    layers: Sequence[int] | None = None


def edit_delta(grid: LatentGrid, e: Edit) -> torch.Tensor:
    """The change one edit makes: ``[B or 1, L, C, h, w]``."""
    d = e.direction.for_grid(grid)
    L = grid.num_layers
    v = d.layer_vectors(L).to(grid.data.device, grid.data.dtype)[None]  # [1, L, C, h|1, w|1]
    s = torch.as_tensor(e.strength, dtype=grid.data.dtype, device=grid.data.device)
    if s.ndim == 0:
        s = s.reshape(1)
    if s.ndim != 1 or s.shape[0] not in (1, grid.batch) or not torch.isfinite(s).all():
        raise InputError(f"strength must be a finite number or one per grid ({grid.batch}), got shape {tuple(s.shape)}")
    delta = v * s.reshape(-1, 1, 1, 1, 1)
    m = resolve_mask(grid, e.mask)
    if m is not None:
        delta = delta * m
    if e.layers is not None:
        delta = delta * _layer_mask(grid, e.layers)
    return delta.expand(-1, -1, -1, *grid.cells)


def _layer_mask(grid: LatentGrid, layers: Sequence[int]) -> torch.Tensor:
    if grid.space != "w+":
        raise InputError("a layer-selective edit needs a w+ grid: convert with grid.to_space('w+', num_ws)")
    layers = list(layers)
    bad = [i for i in layers if not 0 <= int(i) < grid.num_layers]
    if bad or not layers:
        raise InputError(f"layers {bad or layers} are not in 0..{grid.num_layers - 1}")
    m = torch.zeros(1, grid.num_layers, 1, 1, 1, dtype=grid.data.dtype, device=grid.data.device)
    m[0, [int(i) for i in layers]] = 1
    return m


def apply_edits(grid: LatentGrid, edits: Sequence[Edit]) -> LatentGrid:
    """Several edits at once (they add up, so order does not matter). Differentiable w.r.t.
    ``grid.data`` and the strengths. The result records the edits in ``meta['edits']``."""
    if not edits:
        return grid
    data = grid.data
    for e in edits:
        data = data + edit_delta(grid, e)
    record = [
        dict(name=e.direction.name, strength=_jsonable(e.strength), masked=e.mask is not None, layers=list(e.layers) if e.layers is not None else None)
        for e in edits
    ]
    meta = dict(grid.meta, edits=list(grid.meta.get("edits", [])) + record)
    return grid.replace(data, meta=meta)


def edit(
    grid: LatentGrid,
    direction: Direction,
    strength: float | torch.Tensor = 1.0,
    mask: torch.Tensor | None = None,
    layers: Sequence[int] | None = None,
) -> LatentGrid:
    """``grid`` moved along ``direction`` by ``strength`` inside ``mask`` on ``layers``.

    ``grid``: ``[B, L, C, h, w]``; ``direction``: ``[1 or L, C, h or 1, w or 1]`` (a 'w' direction
    also edits w+ grids, on every layer); ``mask``: cells ``[h, w]`` / ``[B, h, w]`` or an image
    mask ``[k*h, k*w]`` in [0, 1]; ``layers``: ws rows (w+ grids only). Returns a new grid.
    """
    return apply_edits(grid, [Edit(direction, strength, mask, layers)])


def strength_series(
    grid: LatentGrid,
    direction: Direction,
    strengths: Sequence[float] = (-3, -2, -1, 0, 1, 2, 3),
    mask: torch.Tensor | None = None,
    layers: Sequence[int] | None = None,
    base: Sequence[Edit] = (),
) -> LatentGrid:
    """The first grid of ``grid`` edited at each of ``strengths`` (after the ``base`` edits):
    a grid ``[len(strengths), L, C, h, w]`` for a strip of pictures."""
    if not strengths or not all(math.isfinite(s) for s in strengths):
        raise InputError("strengths must be finite numbers")
    one = grid.replace(grid.data[:1])
    one = apply_edits(one, [dataclasses.replace(e, mask=_first(e.mask)) for e in base])
    many = one.replace(one.data.expand(len(strengths), -1, -1, -1, -1))
    return edit(many, direction, torch.tensor(list(strengths), dtype=grid.data.dtype), _first(mask), layers)


def _first(mask: torch.Tensor | None) -> torch.Tensor | None:
    return mask[:1] if mask is not None and mask.ndim == 3 else mask


def _jsonable(v: float | torch.Tensor) -> float | list[float]:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        return v.reshape(-1).tolist() if v.numel() > 1 else float(v)
    return float(v)
