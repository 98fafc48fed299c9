"""Applying directions to latent grids, where the user chooses.

``edit(grid, direction, strength, mask, layers)`` adds ``strength * mask * direction`` to the
grid's cells: ``grid.data [B, L, C, h, w] + strength * mask[h, w] * vectors[L, C, h, w]``.

Masks are per cell, values in ``[0, 1]`` (fractions give soft borders). Build them with
:func:`box_mask` (a pixel or cell box; cells partly inside get their covered fraction),
:func:`image_mask` (an image-sized mask area-averaged onto the cells) or :func:`cell_mask` (a list
of cells); ``edit`` also accepts a tensor of either size directly. ``layers`` confines a
W+ edit to some synthesis layers (coarse ones change structure, fine ones colour and texture).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid

from .direction import Direction


# -- masks ---------------------------------------------------------------------------------------
def cell_mask(cells: tuple[int, int], indices: Iterable[tuple[int, int]]) -> torch.Tensor:
    """``[h, w]`` mask with 1 at the listed ``(row, col)`` cells."""
    h, w = cells
    m = torch.zeros(h, w)
    n = 0
    for r, c in indices:
        if not (0 <= r < h and 0 <= c < w):
            raise InputError(f"cell ({r}, {c}) is outside the {h}x{w} grid")
        m[r, c] = 1
        n += 1
    if n == 0:
        raise InputError("no cells given for the mask")
    return m


def box_mask(cells: tuple[int, int], box: Sequence[float], cell_size: float = 1.0) -> torch.Tensor:
    """``[h, w]`` mask of a box ``(x0, y0, x1, y1)``; coordinates are in units of ``cell_size``
    (1 = cells; ``R / density`` = output pixels). Each cell gets the fraction of its area inside."""
    h, w = cells
    x0, y0, x1, y1 = (float(v) / cell_size for v in box)
    if not (x0 < x1 and y0 < y1):
        raise InputError(f"box {tuple(box)} is empty: need x0 < x1 and y0 < y1")
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise InputError(f"box {tuple(box)} lies outside the grid ({w * cell_size:g} x {h * cell_size:g})")

    def cover(lo: float, hi: float, n: int) -> torch.Tensor:
        edges = torch.arange(n, dtype=torch.float64)
        return (torch.clamp(torch.minimum(edges + 1, torch.tensor(hi)) - torch.maximum(edges, torch.tensor(lo)), min=0)).float()

    return cover(y0, y1, h)[:, None] * cover(x0, x1, w)[None, :]


def image_mask(mask: torch.Tensor, cells: tuple[int, int], image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Image-space mask ``[H, W]`` or ``[B, H, W]`` (bool or values in [0, 1]) -> per-cell
    ``[h, w]`` / ``[B, h, w]`` by area averaging. ``H x W`` must be the canvas (``image_size``
    when given) or any whole multiple ``k*h x k*w`` of the cells."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        raise InputError(f"an image mask must be [H, W] or [B, H, W], got {tuple(getattr(mask, 'shape', ()))}")
    h, w = cells
    H, W = mask.shape[-2:]
    if image_size is not None and (H, W) != tuple(image_size):
        raise InputError(f"mask is {W}x{H} pixels, the image is {image_size[1]}x{image_size[0]}")
    if H % h or W % w or H // h != W // w:
        raise InputError(f"a {W}x{H}-pixel mask does not fit the {w}x{h}-cell grid (need {w}k x {h}k pixels)")
    m = _check_values(mask.float())
    return F.avg_pool2d(m.reshape(-1, 1, H, W), H // h).reshape(*mask.shape[:-2], h, w)


def _check_values(m: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise InputError("mask values must be in [0, 1]")
    return m


def resolve_mask(grid: LatentGrid, mask: torch.Tensor | None) -> torch.Tensor | None:
    """A user mask -> ``[1 or B, 1, 1, h, w]`` on the grid: per-cell ``[h, w]``/``[B, h, w]``
    as is, image-sized ones via :func:`image_mask`."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    if mask.ndim not in (2, 3):
        raise InputError(f"a mask must be [h, w] or [B, h, w] (cells) or an image mask, got {tuple(mask.shape)}")
    if mask.ndim == 3 and mask.shape[0] not in (1, grid.batch):
        raise InputError(f"a mask for {mask.shape[0]} images, the grid holds {grid.batch}")
    if tuple(mask.shape[-2:]) == grid.cells:
        m = _check_values(mask.float())
    else:
        m = image_mask(mask, grid.cells)
    m = m.reshape(-1, 1, 1, *grid.cells)
    return m.to(grid.data.device, grid.data.dtype)


# -- edits ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Edit:
    """One edit: ``direction`` at ``strength`` (a number, or ``[B]`` per grid), inside ``mask``
    (see :func:`resolve_mask`; None = everywhere), on ``layers`` (ws rows; None = all)."""

    direction: Direction
    strength: float | torch.Tensor = 1.0
    mask: torch.Tensor | None = None
    layers: Sequence[int] | None = None


def edit_delta(grid: LatentGrid, e: Edit) -> torch.Tensor:
    """The change one edit makes: ``[B or 1, L, C, h, w]``."""
    d = e.direction
    d.check_grid(grid)
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
