"""``Direction``: one named edit direction, possibly different at every grid location.

A direction holds ``vectors [L, C, h, w]``: the latent step that strength 1 adds to a grid
``[B, L, C, h, w]``.

* ``L = 1`` (space ``'w'``): one step shared by every synthesis layer; it applies to ``'w'`` grids
  and, broadcast over the layers, to ``'w+'`` grids.
* ``L = num_ws`` (space ``'w+'``): a step per layer (zero in layers the direction leaves alone).
* ``(h, w) = (1, 1)``: the same step at every cell (a *global* direction, e.g. SeFa), usable on a
  grid of any size; otherwise one step per cell, usable on grids of exactly those cells and
  density, or of the same image at another density (the steps are resampled to its cells:
  :meth:`Direction.for_grid`), or on one face of a composition (:meth:`Direction.placed`).

Fitted directions are scaled so that strength 1 is one standard deviation of the training
latents along the direction (per location), so strengths of -3..3 span the data.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import SPACES, LatentGrid

# Keys under which a latent file's meta records ``Generator.fingerprint()`` (the encode tool and
# this package write the first).
GRID_FINGERPRINT_KEYS = ("generator_fingerprint", "fingerprint")


def grid_fingerprint(meta: dict[str, Any]) -> str | None:
    """The generator fingerprint a latent grid's ``meta`` records, or None."""
    for key in GRID_FINGERPRINT_KEYS:
        if meta.get(key):
            return str(meta[key])
    return None


@dataclasses.dataclass
class Direction:
    """A named edit direction ``vectors [L, C, h, w]`` (see the module docstring).

    ``layer_groups``: the ``[start, stop)`` layer ranges fitted separately (w+ directions).
    ``held_out``: ``[G, h, w]`` quality per layer group and cell (``metric`` says which: held-out
    ``'accuracy'``, held-out ``'r2'``, ``'explained_variance'``), or None.
    ``density``: cells per native image side of the grids it was fitted on.
    ``meta``: JSON-able notes (how it was fitted, labeler, sample count, generator fingerprint ...).
    """

    name: str
    vectors: torch.Tensor
    space: str = "w"
    density: int = 1
    layer_groups: list[tuple[int, int]] | None = None
    held_out: torch.Tensor | None = None
    metric: str = ""
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError("a direction needs a non-empty name")
        v = self.vectors
        if not isinstance(v, torch.Tensor) or v.ndim != 4 or min(v.shape) < 1:
            raise InputError(f"direction vectors must be [L, C, h, w], got {tuple(getattr(v, 'shape', ()))}")
        if self.space not in SPACES:
            raise InputError(f"unknown latent space {self.space!r}; expected one of {SPACES}")
        if self.space == "w" and v.shape[0] != 1:
            raise InputError(f"a 'w' direction has L = 1, got L = {v.shape[0]}")
        if not torch.isfinite(v).all():
            raise InputError(f"direction {self.name!r} contains NaN or inf")
        if int(self.density) != self.density or self.density < 1:
            raise InputError(f"density must be a positive integer, got {self.density}")
        if self.layer_groups is not None:
            self.layer_groups = [(int(a), int(b)) for a, b in self.layer_groups]
        if self.held_out is not None and (self.held_out.ndim != 3 or tuple(self.held_out.shape[1:]) != self.cells):
            raise InputError(f"held_out must be [G, {self.cells[0]}, {self.cells[1]}], got {tuple(self.held_out.shape)}")

    num_layers = property(lambda self: self.vectors.shape[0])
    channels = property(lambda self: self.vectors.shape[1])
    cells = property(lambda self: (self.vectors.shape[2], self.vectors.shape[3]))

    @property
    def is_global(self) -> bool:
        """True when the same step applies at every cell (``h = w = 1``)."""
        return self.cells == (1, 1)

    def replace(self, **changes: Any) -> "Direction":
        return dataclasses.replace(self, **changes)

    def summary(self) -> str:
        """One line for listings: name, shape, how fitted, quality."""
        kind = "global" if self.is_global else f"{self.cells[0]}x{self.cells[1]} cells @ density {self.density}"
        q = ""
        if self.held_out is not None and self.metric:
            vals = self.held_out[torch.isfinite(self.held_out)]
            if vals.numel():
                label = self.metric.replace("_", " ") if self.metric == "explained_variance" else f"held-out {self.metric}"
                q = f", {label} {vals.mean():.3f} (min {vals.min():.3f}, max {vals.max():.3f})"
        return f"{self.name}: {self.space}, {kind}, {self.meta.get('method', '?')}{q}"

    # -- compatibility -----------------------------------------------------------------------------
    def check_grid(self, grid: LatentGrid) -> None:
        """Raise :class:`InputError` unless this direction can be added to ``grid``."""
        if grid.channels != self.channels:
            raise InputError(f"direction {self.name!r} has {self.channels} channels, the grid has {grid.channels} (another generator?)")
        if self.space == "w+":
            if grid.space != "w+":
                raise InputError(
                    f"direction {self.name!r} is per layer (w+) but the grid is in 'w': convert it with grid.to_space('w+', num_ws)"
                )
            if grid.num_layers != self.num_layers:
                raise InputError(f"direction {self.name!r} has {self.num_layers} layers, the grid has {grid.num_layers} (another generator?)")
        if not self.is_global and (grid.cells != self.cells or grid.density != self.density) and not self._same_area(grid):
            raise InputError(
                f"direction {self.name!r} was fitted per location on {self.cells[0]}x{self.cells[1]}-cell grids at density "
                f"{self.density}; this grid is {grid.cells[0]}x{grid.cells[1]} cells at density {grid.density}"
            )

    def _same_area(self, grid: LatentGrid) -> bool:
        """True when ``grid`` covers the image this direction was fitted on at another density
        (e.g. a 16x16-cell grid at density 16 for an 8x8 direction at density 8)."""
        h, w = self.cells
        return grid.cells[0] * self.density == h * grid.density and grid.cells[1] * self.density == w * grid.density

    def for_grid(self, grid: LatentGrid) -> "Direction":
        """This direction on ``grid``'s cells: itself, or (same image area, other density) its
        steps resampled to the grid's cells, so a step keeps its place in the picture. Bilinear
        between cell centres going finer, area averages going coarser."""
        self.check_grid(grid)
        if self.is_global or grid.cells == self.cells:
            return self
        import torch.nn.functional as F

        finer = grid.cells[0] >= self.cells[0]
        v = F.interpolate(self.vectors.float(), size=grid.cells, mode="bilinear" if finer else "area", align_corners=False if finer else None)
        held = None if self.held_out is None else F.interpolate(self.held_out[None].float(), size=grid.cells, mode="nearest")[0]
        return self.replace(vectors=v.to(self.vectors.dtype), density=grid.density, held_out=held)

    def placed(self, cells: tuple[int, int], offset: tuple[int, int]) -> "Direction":
        """This per-location direction put at ``offset = (row, col)`` on a larger grid of
        ``cells`` (zero steps elsewhere): to edit one face of a composition."""
        if self.is_global:
            raise InputError(f"direction {self.name!r} is global: it needs no placing")
        (h, w), (r, c) = self.cells, offset
        if r < 0 or c < 0 or r + h > cells[0] or c + w > cells[1]:
            raise InputError(f"a {h}x{w}-cell direction at row {r}, column {c} does not fit a {cells[0]}x{cells[1]} grid")
        v = self.vectors.new_zeros(self.num_layers, self.channels, *cells)
        v[:, :, r : r + h, c : c + w] = self.vectors
        return self.replace(vectors=v, held_out=None)

    def layer_vectors(self, num_layers: int) -> torch.Tensor:
        """Steps for a grid with ``num_layers`` layer slots: ``[num_layers, C, h, w]`` (broadcast view)."""
        if self.num_layers == num_layers:
            return self.vectors
        if self.num_layers == 1:
            return self.vectors.expand(num_layers, -1, -1, -1)
        raise InputError(f"direction {self.name!r} has {self.num_layers} layers, the grid has {num_layers}")


def conditional(primary: Direction, others: Sequence[Direction], name: str | None = None) -> Direction:
    """Project the ``others`` out of ``primary`` at every cell (InterFaceGAN's conditional edit).

    At each cell (and layer group) the primary step ``v`` becomes ``v - A^T (A A^T)^+ A v`` with
    the others' steps as rows of ``A``, so moving along it leaves the others' linear scores
    unchanged; its length is kept. Global others apply at every cell; per-location others must
    have the primary's cells. Returns a new :class:`Direction`.
    """
    if not others:
        return primary
    v = primary.vectors
    rows = []
    for o in others:
        if o.channels != primary.channels:
            raise InputError(f"cannot condition {primary.name!r} on {o.name!r}: {o.channels} vs {primary.channels} channels")
        if not o.is_global and o.cells != primary.cells:
            raise InputError(f"cannot condition {primary.name!r} ({primary.cells} cells) on {o.name!r} ({o.cells} cells)")
        if o.num_layers == v.shape[0]:
            ov = o.vectors
        elif o.num_layers == 1:
            ov = o.vectors.expand(v.shape[0], -1, -1, -1)
        elif v.shape[0] == 1:
            # A 'w' step moves every layer alike, so it changes a w+ score through the layer sum.
            ov = o.vectors.mean(dim=0, keepdim=True)
        else:
            raise InputError(f"cannot condition {primary.name!r} on {o.name!r}: {v.shape[0]} vs {o.num_layers} layers")
        rows.append(ov.expand(-1, -1, *primary.cells))
    out = project_out(v, torch.stack(rows))
    # Keep each cell's length: only the orientation changes.
    norm_in = v.flatten(0, 1).norm(dim=0)
    norm_out = out.flatten(0, 1).norm(dim=0)
    out = out * torch.where(norm_out > 0, norm_in / norm_out.clamp_min(1e-12), torch.zeros_like(norm_out))
    meta = dict(primary.meta, conditioned_on=[o.name for o in others])
    return primary.replace(name=name or primary.name, vectors=out, meta=meta)


def project_out(v: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Remove from ``v [L, C, h, w]`` its component in the span of ``others [K, L, C, h, w]``,
    separately at every cell (vectors of length ``L * C``). Returns ``[L, C, h, w]``."""
    L, C, h, w = v.shape
    x = v.reshape(L * C, h * w).T.double()  # [cells, D]
    a = others.reshape(others.shape[0], L * C, h * w).permute(2, 0, 1).double()  # [cells, K, D]
    gram = a @ a.transpose(1, 2)  # [cells, K, K]
    coef = torch.linalg.pinv(gram) @ (a @ x[:, :, None])  # [cells, K, 1]
    x = x - (a.transpose(1, 2) @ coef)[:, :, 0]
    return x.T.reshape(L, C, h, w).to(v.dtype)
