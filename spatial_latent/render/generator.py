"""``SpatialGenerator``: render a :class:`LatentGrid` with a pretrained StyleGAN2.

Every synthesis layer is modulated per location (the engine, :mod:`.engine`): styles come from
each cell's latent and are resampled onto the layer's pixel grid (:mod:`.styles`). A constant
grid reproduces ``G.synthesis(ws)``. Two padding modes (:class:`~.plan.PaddingMode`):

* ``'zero'``: what the pretrained network does. Same-size convolutions with zero padding at the
  canvas border, which the network uses as positional information (faces stay faces; good for
  multi-face composition). Renders the whole canvas at once.
* ``'none'``: padding-free. Convolutions are valid; each layer's input window carries exactly the
  margin its outputs need, planned backward from the requested output window (:mod:`.plan`). Any
  output pixel then depends only on the global field inside its receptive field, so rendering a
  sub-window equals the same crop of the full render: the basis of seamless tiling. Beyond the
  grid's edges the cells are clamped (edge cells repeat).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InputError
from ..latents.grid import LatentGrid
from ..latents.window import Window
from ..networks import Generator, SynthesisLayer, check_noise_mode
from . import plan as _plan
from .engine import Render, WeightCache, check_memory
from .plan import BlockPlan, LatentPatch, PaddingMode
from .styles import RESAMPLE_MODES

NoiseMaps = Sequence["torch.Tensor | None"]


class SpatialGenerator(nn.Module):
    """A pretrained :class:`Generator` driven by a :class:`LatentGrid`.

    ``forward(grid [B, L, C, h, w]) -> img [B, 3, h/d*R, w/d*R]`` with ``d = grid.density``.
    ``padding``: a :class:`PaddingMode` or its name (``'zero'``, default, or ``'none'``).
    ``resample`` chooses how cells become pixels: ``'bilinear'`` (smooth transitions between
    cells; default) or ``'nearest'`` (each cell's style exactly on its pixels).
    ``max_pixels``: output pixels a single render may hold (default: from free memory).
    """

    def __init__(self, G: Generator, padding: PaddingMode | str = PaddingMode.ZERO, resample: str = "bilinear", max_pixels: int | None = None) -> None:
        super().__init__()
        if resample not in RESAMPLE_MODES:
            raise InputError(f"resample must be one of {RESAMPLE_MODES}, got {resample!r}")
        self.G = G
        self.padding: PaddingMode = PaddingMode.of(padding)
        self.resample = resample
        self.max_pixels = max_pixels
        self._weight_cache = WeightCache()

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike, device: str | torch.device = "cpu", **kwargs: Any) -> "SpatialGenerator":
        """Load any supported checkpoint (see :func:`spatial_latent.load_generator`) and wrap it."""
        from ..checkpoints.loading import load_generator

        return cls(load_generator(path_or_name, device=device), **kwargs)

    num_ws = property(lambda self: self.G.num_ws)
    w_dim = property(lambda self: self.G.w_dim)
    img_resolution = property(lambda self: self.G.img_resolution)

    @property
    def device(self) -> torch.device:
        return self.G.device

    # -- geometry --------------------------------------------------------------------------------
    def canvas_size(self, grid: LatentGrid, res: int | None = None) -> tuple[int, int]:
        """Pixels ``(H, W)`` of ``grid`` at resolution ``res`` (default: the output resolution)."""
        res = res or self.img_resolution
        h, w = grid.cells
        d = grid.density
        for r in (4, res):
            if (h * r) % d or (w * r) % d:
                raise InputError(
                    f"a {h}x{w} grid at density {d} does not give whole pixels at {r}x{r}: "
                    f"use a cell count that is a multiple of {d // math.gcd(d, 4)}"
                )
        return h * res // d, w * res // d

    def noise_layers(self) -> list[SynthesisLayer]:
        """The synthesis layers that take noise, in run order (see
        :meth:`SynthesisNetwork.noise_layers`). Index ``i`` of ``forward(noise=...)`` is layer ``i``."""
        return self.G.synthesis.noise_layers()

    def noise_shapes(self, grid: LatentGrid) -> list[tuple[int, int]]:
        """``(H_i, W_i)`` of each noise layer's map for ``grid``'s canvas: the canvas at that
        layer's resolution (``4 x 4`` per image side at the first layer, ``R x R`` at the last)."""
        return [self.canvas_size(grid, layer.resolution) for layer in self.noise_layers()]

    def plan(self, out: Window) -> list[BlockPlan]:
        """The window every block computes for a padding-free render of ``out`` (see
        :func:`~.plan.plan_blocks`). One entry per block, 4x4 first."""
        return _plan.plan_blocks(self.G, out)

    def receptive_margin(self) -> int:
        """Input margin, in 4x4-level pixels, that a padding-free render adds around its window."""
        return _plan.receptive_margin(self.G)

    def cells_needed(self, window: Window, density: int) -> Window:
        """Global cell range (rows, cols; as a Window in cell units) that a padding-free render of
        ``window`` samples from: the 4x4 input window mapped to cells, plus bilinear neighbours."""
        return _plan.cells_needed(self.G, window, density)

    # -- rendering -------------------------------------------------------------------------------
    def _render(self, patches: list[LatentPatch], density: int, noise_mode: str, noise_seed: int, strict: bool, noise_maps: list[torch.Tensor | None] | None = None) -> Render:
        return Render(
            self.G, patches, density, padding=self.padding, resample=self.resample, noise_mode=noise_mode,
            noise_seed=noise_seed, strict=strict, noise_maps=noise_maps, cache=self._weight_cache,
        )

    def forward(
        self,
        grid: LatentGrid,
        noise_mode: str = "const",
        noise_seed: int = 0,
        window: Window | tuple[int, int, int, int] | None = None,
        noise: NoiseMaps | None = None,
    ) -> torch.Tensor:
        """Render ``grid``; with ``padding='none'`` optionally only ``window`` (a box of global output
        pixels ``(x0, y0, x1, y1)``, end-exclusive, may extend beyond the canvas). Returns
        ``[B, 3, H, W]`` (the canvas, or the window's ``y1 - y0`` by ``x1 - x0``).

        ``noise``: explicit per-layer noise, e.g. maps optimized by an encoder: a list with one
        entry per :meth:`noise_layers` (``num_ws - 1``), each a unit-variance map
        ``[B or 1, 1, H_i, W_i]`` covering the canvas at that layer's resolution
        (:meth:`noise_shapes`; scaled by the layer's ``noise_strength`` here), or None to use
        ``noise_mode`` for that layer. Padding-free windows reaching beyond the canvas read the
        maps periodically (as ``'const'`` does the stored maps). Differentiable w.r.t. the maps.
        """
        grid.check_for(self.num_ws, self.w_dim, finite=False)
        check_noise_mode(noise_mode)
        H, W = self.canvas_size(grid)
        if window is None:
            window = Window(0, 0, W, H)
        elif not isinstance(window, Window):
            window = Window(*window)
        if window.size[0] < 1 or window.size[1] < 1:
            raise InputError(f"empty output window {window}")
        if not self.padding.tileable and window != Window(0, 0, W, H):
            raise InputError("rendering a sub-window needs padding='none' (zero padding depends on the canvas border)")
        maps = self._check_noise(noise, grid) if noise is not None else None
        check_memory(self.G, grid.batch, window, self.max_pixels)
        grid.check_for(self.num_ws, self.w_dim)  # NaN/inf: reads every value, so after the size check
        patch = LatentPatch(grid.layer_data(self.num_ws).to(self.device, torch.float32))
        render = self._render([patch], grid.density, noise_mode, noise_seed, strict=False, noise_maps=maps)
        if self.padding.padding_free:
            return render.valid(window)
        return render.same_size((H, W))

    def _check_noise(self, noise: NoiseMaps, grid: LatentGrid) -> list[torch.Tensor | None]:
        layers = self.noise_layers()
        if isinstance(noise, torch.Tensor) or len(noise) != len(layers):
            n = "a tensor" if isinstance(noise, torch.Tensor) else f"{len(noise)} noise maps"
            raise InputError(f"{n} given: noise must be a list of {len(layers)} noise maps (one per noise layer, None to use noise_mode)")
        out: list[torch.Tensor | None] = []
        for i, (m, shape) in enumerate(zip(noise, self.noise_shapes(grid))):
            if m is None:
                out.append(None)
                continue
            if not isinstance(m, torch.Tensor) or m.ndim != 4 or m.shape[1] != 1 or tuple(m.shape[2:]) != shape or m.shape[0] not in (1, grid.batch):
                got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                raise InputError(f"noise map {i} must be [{grid.batch} or 1, 1, {shape[0]}, {shape[1]}] for this grid, got {got}")
            out.append(m.to(self.device, torch.float32))
        return out

    def render_patches(
        self,
        patches: list[LatentPatch],
        window: Window,
        density: int,
        noise_mode: str = "random",
        noise_seed: int = 0,
    ) -> torch.Tensor:
        """Padding-free render of several patches in one batch: patch ``k`` covers ``window``
        shifted by ``patches[k].shift``. Each patch's cells must cover :meth:`cells_needed`.
        Returns ``[sum of patch batches, 3, *window.size]``, in patch order. Patches whose
        latents have one shape (tiles of one size) run as one batch, without per-patch work."""
        if not self.padding.tileable:
            raise InputError("rendering patches needs padding='none'")
        check_noise_mode(noise_mode)
        if not patches:
            raise InputError("no patches to render")
        step = self.img_resolution // 4
        for p in patches:
            if p.shift[0] % step or p.shift[1] % step:
                raise InputError(f"patch shift {p.shift} must be a multiple of {step} (R/4) pixels")
            if p.latents.ndim != 5 or p.latents.shape[1:3] != (self.num_ws, self.w_dim):
                raise InputError(f"patch latents must be [B, {self.num_ws}, {self.w_dim}, h, w], got {tuple(p.latents.shape)}")
        if len({tuple(p.latents.shape) for p in patches}) > 1:  # differently shaped: one batch each
            return torch.cat([self.render_patches([p], window, density, noise_mode, noise_seed) for p in patches])
        return self._render(patches, density, noise_mode, noise_seed, strict=True).valid(window)
