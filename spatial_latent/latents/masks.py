"""Cell masks: which cells of a latent grid an edit, a blend or a composition touches, and how much.

A cell mask is ``[h, w]`` (or ``[B, h, w]``, one per grid) with values in ``[0, 1]``; fractions
give soft borders. Every builder of one lives here:

* :func:`cell_mask` — 1 at a list of cells;
* :func:`box_mask` — the fraction of each cell inside a box (in cells or pixels);
* :func:`soft_box` — 1 inside a box of cells, fading out linearly over a feather width;
* :func:`image_mask` — an image-sized mask area-averaged onto the cells;
* :func:`soft_regions` — soft Voronoi regions around centre points, one mask per region;
* :func:`resolve_mask` — any of the above (or an image mask) shaped to broadcast over a grid.

Conventions, the same in every module of the toolkit:

* **A box is** ``(x0, y0, x1, y1)``: left, top, right, bottom, end-exclusive, so it covers columns
  ``[x0, x1)`` and rows ``[y0, y1)`` (like PIL's ``Image.crop`` box). Its units (cells, pixels,
  fractions of the image) are said where it is taken.
* **A cell is** ``(row, col)``: an index into the grid, ``data[..., row, col]``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError

if TYPE_CHECKING:
    from .grid import LatentGrid

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), end-exclusive


def cell_mask(cells: tuple[int, int], indices: Iterable[tuple[int, int]]) -> torch.Tensor:
    """Mask ``[h, w]`` for a grid of ``cells = (h, w)``: 1 at the listed ``(row, col)`` cells, 0 elsewhere."""
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


def check_box(box: object) -> tuple[float, float, float, float]:
    """``box`` as ``(x0, y0, x1, y1)`` floats if it is four finite numbers with ``x0 < x1`` and
    ``y0 < y1``; otherwise ``ValueError`` saying which (the caller names the box)."""
    def number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(number(v) for v in box):
        raise ValueError("want four finite numbers x0,y0,x1,y1")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x0 < x1 and y0 < y1):
        raise ValueError("empty: need x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def box_mask(cells: tuple[int, int], box: Sequence[float], cell_size: float = 1.0) -> torch.Tensor:
    """Mask ``[h, w]`` of a box ``(x0, y0, x1, y1)`` (end-exclusive) on a grid of ``cells = (h, w)``.

    Coordinates are in units of ``cell_size``: 1 = cells, ``R / density`` = output pixels of an
    ``R``-pixel generator. Each cell gets the fraction of its area inside the box, so a box
    between cell borders gives a soft edge.
    """
    h, w = cells
    if len(box) != 4:
        raise InputError(f"a box is (x0, y0, x1, y1), got {tuple(box)}")
    x0, y0, x1, y1 = (float(v) / cell_size for v in box)
    if not (x0 < x1 and y0 < y1):
        raise InputError(f"box {tuple(box)} is empty: need x0 < x1 and y0 < y1 (a box is x0,y0,x1,y1)")
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise InputError(f"box {tuple(box)} lies outside the grid ({w * cell_size:g} x {h * cell_size:g})")

    def cover(lo: float, hi: float, n: int) -> torch.Tensor:
        edges = torch.arange(n, dtype=torch.float64)
        return (torch.clamp(torch.minimum(edges + 1, torch.tensor(hi)) - torch.maximum(edges, torch.tensor(lo)), min=0)).float()

    return cover(y0, y1, h)[:, None] * cover(x0, x1, w)[None, :]


def soft_box(cells: tuple[int, int], box: Sequence[float], feather: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Mask ``[h, w]`` for a grid of ``cells = (h, w)``: 1 inside ``box = (x0, y0, x1, y1)``
    (cells, end-exclusive), ramping linearly to 0 over ``feather`` cells outside it (``feather = 0``:
    a hard box). Distances are measured from cell centres."""
    h, w = cells
    x0, y0, x1, y1 = box
    ys = torch.arange(h, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=device, dtype=torch.float32) + 0.5

    def ramp(p: torch.Tensor, a: float, b: float) -> torch.Tensor:
        dist = torch.clamp(torch.maximum(a - p, p - b), min=0)  # distance outside [a, b]
        if feather <= 0:
            return (dist == 0).float()
        return torch.clamp(1 - dist / feather, min=0)

    return ramp(ys, y0, y1)[:, None] * ramp(xs, x0, x1)[None, :]


def image_mask(mask: torch.Tensor, cells: tuple[int, int], image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Image-space mask ``[H, W]`` or ``[B, H, W]`` (bool or values in [0, 1]) -> per-cell
    ``[h, w]`` / ``[B, h, w]`` by area averaging. ``H x W`` must be the canvas (``image_size =
    (H, W)`` when given) or any whole multiple ``k*h x k*w`` of the cells."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        raise InputError(f"an image mask must be [H, W] or [B, H, W], got {tuple(getattr(mask, 'shape', ()))}")
    h, w = cells
    H, W = mask.shape[-2:]
    if image_size is not None and (H, W) != tuple(image_size):
        raise InputError(f"mask is {W}x{H} pixels, the image is {image_size[1]}x{image_size[0]}")
    if H % h or W % w or H // h != W // w:
        raise InputError(f"a {W}x{H}-pixel mask does not fit the {w}x{h}-cell grid (need {w}k x {h}k pixels)")
    m = check_values(mask.float())
    return F.avg_pool2d(m.reshape(-1, 1, H, W), H // h).reshape(*mask.shape[:-2], h, w)


def soft_regions(centres: torch.Tensor, cells: tuple[int, int], softness: float) -> torch.Tensor:
    """Soft Voronoi regions: ``centres [K, 2]`` as ``(y, x)`` in cells -> masks ``[K, h, w]`` that
    sum to 1 at every cell; each cell leans to its nearest centre, the seams ``softness`` cells wide
    (a softmax over minus the distance to each centre, divided by ``softness``)."""
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise InputError(f"centres must be [K, 2] (y, x), got {tuple(centres.shape)}")
    if not softness > 0:
        raise InputError(f"softness must be > 0, got {softness}")
    h, w = cells
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    dist = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    return torch.softmax(-dist.sqrt() / softness, dim=0)


def check_values(m: torch.Tensor) -> torch.Tensor:
    """``m`` itself, after checking that every value is finite and in ``[0, 1]``."""
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise InputError("mask values must be in [0, 1]")
    return m


def resolve_mask(grid: "LatentGrid", mask: torch.Tensor | None) -> torch.Tensor | None:
    """A user mask -> ``[1 or B, 1, 1, h, w]`` on ``grid`` (``data [B, L, C, h, w]``), on its device
    and dtype: per-cell ``[h, w]`` / ``[B, h, w]`` as is, image-sized ones via :func:`image_mask`.
    None stays None (everywhere)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    if mask.ndim not in (2, 3):
        raise InputError(f"a mask must be [h, w] or [B, h, w] (cells) or an image mask, got {tuple(mask.shape)}")
    if mask.ndim == 3 and mask.shape[0] not in (1, grid.batch):
        raise InputError(f"a mask for {mask.shape[0]} images, the grid holds {grid.batch}")
    if tuple(mask.shape[-2:]) == grid.cells:
        m = check_values(mask.float())
    else:
        m = image_mask(mask, grid.cells)
    m = m.reshape(-1, 1, 1, *grid.cells)
    return m.to(grid.data.device, grid.data.dtype)
