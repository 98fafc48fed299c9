"""``LatentField``: an unbounded, deterministic, stationary field of latents over cell coordinates.

The latent of cell ``(y, x)`` is a function of ``(seed, y, x)`` only, so any window of the
infinite canvas can be computed on its own and comes out identical whatever the tile size, tile
order or canvas size. Construction (the seed paper's "closer cells are more dependent"):

1. white Gaussian noise in Z per cell, hashed from ``(seed, channel, y, x)``;
2. smoothed by a Gaussian of standard deviation ``correlation`` cells (truncated at 3 sigma) and
   rescaled to unit variance: cells closer than ~``correlation`` are strongly dependent, cells
   more than 6 sigma apart are independent, and the statistics are the same everywhere;
3. mapped cell by cell through the generator's mapping network, then truncated toward ``w_avg``.

Options: ``global_mix`` pulls chosen layers toward one global latent (a consistent palette over
the whole canvas); ``layout`` paints which style goes where (one seed per label, blended softly
across label borders).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from .grid import LatentGrid
from ..networks import Generator
from ..render.noise import coordinate_normals
from .window import Window

FIELD_STREAM = 0x5F1E1D  # keeps field noise independent of synthesis-layer noise streams


def gaussian_taps(sigma: float) -> torch.Tensor:
    """1-D Gaussian taps (radius ceil(3 sigma)) scaled so the 2-D outer product has unit energy."""
    if sigma <= 0:
        return torch.ones(1, dtype=torch.float64)
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.square().sum().sqrt()


class LatentField:
    """Latents for any window of global cells: ``field.cells(Window(x0, y0, x1, y1))`` ->
    ``[1, L, C, y1 - y0, x1 - x0]`` (``L`` = 1 in space 'w', ``num_ws`` in space 'w+').

    ``density`` = cells per native image side, as in :class:`LatentGrid`.
    """

    def __init__(
        self,
        G: Generator,
        seed: int = 0,
        correlation: float = 2.0,
        truncation_psi: float = 1.0,
        density: int = 4,
        global_mix: float = 0.0,
        global_layers: Sequence[int] | None = None,
        layout: torch.Tensor | None = None,
        layout_seeds: Sequence[int] | None = None,
        class_idx: int | None = None,
    ) -> None:
        if not math.isfinite(correlation) or correlation < 0:
            raise InputError(f"correlation must be >= 0 cells, got {correlation}")
        if not 0 <= global_mix <= 1:
            raise InputError(f"global_mix must be in [0, 1], got {global_mix}")
        if density < 1:
            raise InputError(f"density must be >= 1, got {density}")
        self.G, self.seed, self.correlation = G, int(seed), float(correlation)
        self.truncation_psi, self.density = float(truncation_psi), int(density)
        self.global_mix = float(global_mix)
        self.global_layers = list(global_layers) if global_layers is not None else None
        if self.global_layers is not None and any(not 0 <= i < G.num_ws for i in self.global_layers):
            raise InputError(f"global_layers must be in [0, {G.num_ws})")
        self.space = "w+" if self.global_layers is not None and self.global_mix > 0 else "w"
        self.c = self._label(class_idx)
        self.taps = gaussian_taps(self.correlation)
        self.layout, self.layout_seeds = None, None
        if layout is not None:
            if layout.ndim != 2 or layout.dtype not in (torch.int64, torch.int32, torch.uint8):
                raise InputError("layout must be an integer label map [rows, cols] over cells")
            k = int(layout.max()) + 1
            seeds = list(layout_seeds) if layout_seeds is not None else [self.seed + i for i in range(k)]
            if len(seeds) < k or layout.min() < 0:
                raise InputError(f"layout has labels 0..{k - 1}; give one seed per label")
            self.layout, self.layout_seeds = layout.long(), seeds

    def _label(self, class_idx: int | None) -> torch.Tensor | None:
        if self.G.c_dim == 0:
            if class_idx is not None:
                raise InputError("class_idx given, but the generator is not conditional")
            return None
        if class_idx is None or not 0 <= class_idx < self.G.c_dim:
            raise InputError(f"a conditional generator needs class_idx in [0, {self.G.c_dim - 1}]")
        return F.one_hot(torch.tensor([class_idx]), self.G.c_dim).float()

    @property
    def device(self) -> torch.device:
        return self.G.device

    def z(self, win: Window, seed: int) -> torch.Tensor:
        """Correlated unit-variance z ``[z_dim, h, w]`` for the cells of ``win``."""
        r = (len(self.taps) - 1) // 2
        h, w = win.size
        noise = coordinate_normals(seed, FIELD_STREAM, self.G.z_dim, win.y0 - r, win.x0 - r, h + 2 * r, w + 2 * r, self.device)
        if r == 0:
            return noise
        taps = self.taps.to(self.device, torch.float32)
        x = noise[:, None]  # [z_dim, 1, h + 2r, w + 2r]
        x = F.conv2d(x, taps.reshape(1, 1, 1, -1))
        x = F.conv2d(x, taps.reshape(1, 1, -1, 1))
        return x[:, 0]

    @torch.no_grad()
    def map_cells(self, z: torch.Tensor) -> torch.Tensor:
        """``[z_dim, h, w]`` -> W ``[w_dim, h, w]`` through the mapping network and truncation."""
        zd, h, w = z.shape
        flat = z.reshape(zd, h * w).t()
        c = self.c.to(self.device).expand(h * w, -1) if self.c is not None else None
        ws = self.G.mapping(flat, c, truncation_psi=self.truncation_psi)
        return ws.t().reshape(-1, h, w)

    def global_w(self) -> torch.Tensor:
        """The one latent ``[w_dim]`` that ``global_mix`` pulls toward (drawn from the seed)."""
        z = coordinate_normals(self.seed, FIELD_STREAM + 1, self.G.z_dim, 0, 0, 1, 1, self.device)
        return self.map_cells(z)[:, 0, 0]

    def _layout_weights(self, win: Window) -> torch.Tensor:
        """Soft label weights ``[K, h, w]``: one-hot labels (clamped beyond the map) smoothed like z."""
        r = (len(self.taps) - 1) // 2
        rows, cols = self.layout.shape
        ys = torch.arange(win.y0 - r, win.y1 + r).clamp(0, rows - 1)
        xs = torch.arange(win.x0 - r, win.x1 + r).clamp(0, cols - 1)
        labels = self.layout.index_select(0, ys).index_select(1, xs)
        onehot = F.one_hot(labels, len(self.layout_seeds)).permute(2, 0, 1).double()
        if r:
            g = self.taps / self.taps.sum()
            onehot = F.conv2d(onehot[:, None], g.reshape(1, 1, 1, -1))
            onehot = F.conv2d(onehot, g.reshape(1, 1, -1, 1))[:, 0]
        return onehot.to(self.device, torch.float32)

    @torch.no_grad()
    def cells(self, win: Window) -> torch.Tensor:
        """Latents ``[1, L, w_dim, h, w]`` for global cells ``win`` (see class docstring)."""
        if win.size[0] < 1 or win.size[1] < 1:
            raise InputError(f"empty cell window {win}")
        if self.layout is None:
            w = self.map_cells(self.z(win, self.seed))
        else:
            weights = self._layout_weights(win)
            w = sum(weights[k][None] * self.map_cells(self.z(win, s)) for k, s in enumerate(self.layout_seeds))
        w = w[None, None]  # [1, 1, C, h, w]
        if self.global_mix > 0:
            g = self.global_w()[None, None, :, None, None]
            if self.space == "w":
                w = torch.lerp(w, g, self.global_mix)
            else:
                w = w.repeat(1, self.G.num_ws, 1, 1, 1)
                rows = torch.tensor(self.global_layers, device=self.device)
                w[:, rows] = torch.lerp(w[:, rows], g.expand_as(w[:, rows]), self.global_mix)
        return w

    def grid(self, cells: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> LatentGrid:
        """A finite :class:`LatentGrid` cut from the field (for one-shot renders and editing)."""
        h, w = cells
        data = self.cells(Window(origin[1], origin[0], origin[1] + w, origin[0] + h))
        return LatentGrid(data, space=self.space, density=self.density, meta={"field_seed": self.seed, "origin": list(origin)})
