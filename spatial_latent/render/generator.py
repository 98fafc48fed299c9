"""``SpatialGenerator``: render a :class:`LatentGrid` with a pretrained StyleGAN2.

Every synthesis layer is modulated per location: the layer's affine map turns each cell's latent
into styles (cheap, at cell resolution), the styles are resampled onto the layer's pixel grid,
activations are modulated per pixel and demodulated per output pixel (see
:mod:`spatial_latent.ops.modconv`). A constant grid reproduces ``G.synthesis(ws)``.

Everything a layer consumes is a function of *global* pixel coordinates: the 4x4 constant input
(tiled periodically), the styles (sampled from cells), the noise (stored maps tiled, hashed
from a seed, or explicit per-layer maps passed to ``forward(noise=...)``). Two padding modes:

* ``'zero'``: what the pretrained network does. Same-size convolutions with zero padding at the
  canvas border, which the network uses as positional information (faces stay faces; good for
  multi-face composition). Renders the whole canvas at once.
* ``'none'``: padding-free. Convolutions are valid; each layer's input window carries exactly the
  margin its outputs need, planned backward from the requested output window. Any output pixel
  then depends only on the global field inside its receptive field, so rendering a sub-window
  equals the same crop of the full render: the basis of seamless tiling. Beyond the grid's
  edges the cells are clamped (edge cells repeat).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import threading
from fractions import Fraction
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InputError
from ..latents.grid import LatentGrid
from ..networks import Generator, SynthesisBlock, SynthesisLayer, check_noise_mode
from .noise import coordinate_noise
from ..ops import bias_act, conv2d_resample, upsample2d
from ..ops.modconv import DEMOD_EPS

log = logging.getLogger(__name__)

PADDING_MODES = ("zero", "none")
RESAMPLE_MODES = ("nearest", "bilinear")
Span = tuple[int, int]  # [start, stop) along one axis, in global pixels of some resolution


@dataclasses.dataclass(frozen=True)
class Window:
    """A rectangle of global pixels ``rows [y0, y1) x cols [x0, x1)`` at some resolution."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def size(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def grow(self, m: int) -> "Window":
        return Window(self.y0 - m, self.y1 + m, self.x0 - m, self.x1 + m)

    def hull(self, other: "Window | None") -> "Window":
        if other is None:
            return self
        return Window(min(self.y0, other.y0), max(self.y1, other.y1), min(self.x0, other.x0), max(self.x1, other.x1))

    def contains(self, other: "Window") -> bool:
        return self.y0 <= other.y0 and other.y1 <= self.y1 and self.x0 <= other.x0 and other.x1 <= self.x1

    def map(self, fy: Any, fx: Any | None = None) -> "Window":
        """Apply a span function to both axes."""
        fx = fx or fy
        (y0, y1), (x0, x1) = fy((self.y0, self.y1)), fx((self.x0, self.x1))
        return Window(y0, y1, x0, x1)


def crop(t: torch.Tensor, have: Window, want: Window) -> torch.Tensor:
    """Slice ``t`` (covering ``have``) down to ``want``."""
    if not have.contains(want):
        raise AssertionError(f"window {want} is not inside {have}")
    if have == want:
        return t
    return t[..., want.y0 - have.y0 : want.y1 - have.y0, want.x0 - have.x0 : want.x1 - have.x0]


# Span arithmetic of the valid (padding-free) ops, derived from their index formulas.
def _valid_conv_out(s: Span) -> Span:  # 3x3
    return s[0] + 1, s[1] - 1


def _valid_upconv_out(s: Span) -> Span:
    # Transposed 3x3 stride 2, then the 4-tap blur. The transposed conv's outermost samples lack
    # the neighbour outside the window, so one more pixel per side is invalid than a plain blur.
    return 2 * s[0] + 2, 2 * s[1] - 2


def _valid_upfir_out(s: Span) -> Span:  # zero-insert 2x, then 4-tap filter
    return 2 * s[0] + 2, 2 * s[1] - 1


def _upconv_in(s: Span) -> Span:
    return math.floor((s[0] - 2) / 2), math.ceil((s[1] + 2) / 2)


def _upfir_in(s: Span) -> Span:
    return math.floor((s[0] - 2) / 2), math.ceil((s[1] + 1) / 2)


def _double(s: Span) -> Span:
    return 2 * s[0], 2 * s[1]


VALID_UPFIR_PADDING = (-2, -1, -2, -1)  # cancels the same-size padding upsample2d/skip add


def sample_cells(
    cells: torch.Tensor,
    density: int,
    res: int,
    window: Window,
    mode: str = "bilinear",
    origin: tuple[int, int] = (0, 0),
    strict: bool = False,
) -> torch.Tensor:
    """Resample a cell map onto a layer's pixel window.

    ``cells``: ``[B, C, h, w]``, cell ``(i, j)`` at global cell ``(origin[0] + i, origin[1] + j)``;
    one native image side holds ``density`` cells and ``res`` pixels. Returns ``[B, C, *window.size]``.
    Pixels finer than cells use ``mode`` (nearest, or bilinear between cell centres); pixels
    coarser than cells average the cells they cover. Indices outside the array are clamped (a
    finite grid's edge cells repeat); with ``strict`` they are an error instead (a patch cut from
    an unbounded field must cover everything it is sampled at).
    Each output pixel depends only on its global coordinates, never on the window.
    """
    x = _sample_axis(cells, 3, density, res, (window.x0, window.x1), mode, origin[1], strict)
    return _sample_axis(x, 2, density, res, (window.y0, window.y1), mode, origin[0], strict)


def _sample_axis(t: torch.Tensor, dim: int, density: int, res: int, span: Span, mode: str, origin: int, strict: bool) -> torch.Tensor:
    n = t.shape[dim]
    dev = t.device
    p = torch.arange(span[0], span[1], device=dev, dtype=torch.float64)

    def take(idx: torch.Tensor) -> torch.Tensor:
        idx = idx - origin
        if strict and (idx.min() < 0 or idx.max() >= n):
            raise AssertionError(f"latent patch of {n} cells from {origin} does not cover cells {idx.min().item() + origin}..{idx.max().item() + origin}")
        return t.index_select(dim, idx.clamp(0, n - 1))

    if res < density:  # each pixel covers k whole cells
        k = density // res
        if k * res != density:
            raise InputError(f"grid density {density} is not a multiple of layer resolution {res}")
        first = torch.arange(span[0], span[1], device=dev, dtype=torch.int64) * k
        acc = take(first)
        for j in range(1, k):
            acc = acc + take(first + j)
        return acc / k
    u = (p + 0.5) * density / res  # position in cell units
    if mode == "nearest":
        return take(torch.floor(u).to(torch.int64))
    u = u - 0.5
    i0 = torch.floor(u)
    frac = (u - i0).to(t.dtype)
    i0 = i0.to(torch.int64)
    shape = [1] * t.ndim
    shape[dim] = -1
    return torch.lerp(take(i0), take(i0 + 1), frac.reshape(shape))


# -- resampling as matrices ----------------------------------------------------------------------
# The render samples cells with small dense weight matrices instead of gathers: a style map is
# ``A_y @ cells @ A_x^T`` (two batched matmuls, each about one pass over the output), and the
# demodulation map is the same product with "pair" weights (see _pair_products). Every weight is
# a function of global pixel coordinates only, so windows and tiles stay consistent.


def _axis_taps(density: int, res: int, pix: torch.Tensor, mode: str, origin: torch.Tensor, n: int, strict: bool) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Cell taps of pixels ``pix`` (int64 global pixel coordinates at resolution ``res``,
    ``[P, len]``, one row per patch) along one axis of patches of ``n`` cells starting at global
    cells ``origin`` (int64 ``[P]``).

    Returns ``(idx [P, len, k] int64, w [P, len, k] float64, coarse)``: for pixels finer than
    cells ``k = 2`` (bilinear between cell centres) or ``k = 1`` (nearest); for pixels coarser
    than cells ``k = density // res`` taps of weight ``1/k``. Indices are local to each patch and
    clamped to it (edge cells repeat) or, with ``strict``, checked.
    """
    dev = pix.device

    def local(idx: torch.Tensor) -> torch.Tensor:
        idx = idx - origin.view(-1, *[1] * (idx.ndim - 1))
        if strict and (idx.min() < 0 or idx.max() >= n):
            lo, hi = (idx + origin.view(-1, *[1] * (idx.ndim - 1))).aminmax()
            raise AssertionError(f"latent patch of {n} cells from {origin.tolist()} does not cover cells {lo.item()}..{hi.item()}")
        return idx.clamp(0, n - 1)

    if res < density:
        k = density // res
        if k * res != density:
            raise InputError(f"grid density {density} is not a multiple of layer resolution {res}")
        idx = local(pix[..., None] * k + torch.arange(k, device=dev))
        return idx, torch.full(idx.shape, 1.0 / k, dtype=torch.float64, device=dev), True
    u = (pix.to(torch.float64) + 0.5) * density / res  # position in cell units
    if mode == "nearest":
        idx = local(torch.floor(u).to(torch.int64))[..., None]
        return idx, torch.ones(idx.shape, dtype=torch.float64, device=dev), False
    u = u - 0.5
    i0 = torch.floor(u)
    frac = u - i0
    i0 = i0.to(torch.int64)
    return torch.stack([local(i0), local(i0 + 1)], dim=-1), torch.stack([1 - frac, frac], dim=-1), False


def axis_weights(
    density: int,
    res: int,
    pix: torch.Tensor,
    mode: str,
    origin: torch.Tensor,
    n: int,
    strict: bool = False,
    pairs: bool = False,
) -> torch.Tensor | None:
    """Dense resampling weights of one axis for pixels ``pix [P, len]`` of patches whose cell 0
    is global cell ``origin [P]``: ``[P, len, n]`` (linear: ``styles = A_y @ cells @ A_x^T``) or,
    with ``pairs``, ``[P, len, 2n - 1]`` over the cell pairs ``(i, i)`` (column ``2i``) and
    ``(i, i+1)`` (column ``2i + 1``): the weights of the *squared* styles (see
    :func:`_pair_products`); None with ``pairs`` for layers coarser than the grid."""
    idx, w, coarse = _axis_taps(density, res, pix, mode, origin, n, strict)
    p, length = pix.shape
    if not pairs:
        out = torch.zeros(p, length, n, dtype=torch.float64, device=pix.device)
        return out.scatter_add_(2, idx, w).to(torch.float32)
    if coarse:
        return None
    out = torch.zeros(p, length, 2 * n - 1, dtype=torch.float64, device=pix.device)
    if idx.shape[-1] == 1:  # nearest: one cell, squared weight 1
        return out.scatter_(2, 2 * idx, 1.0).to(torch.float32)
    i0, i1 = idx[..., 0], idx[..., 1]
    a0, a1 = w[..., 0], w[..., 1]
    cols = torch.stack([2 * i0, 2 * i0 + 1, 2 * i0 + 2], dim=-1).clamp(max=2 * n - 2)
    sq = torch.stack([a0 * a0, 2 * a0 * a1, a1 * a1], dim=-1)
    edge = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, device=pix.device)
    sq = torch.where((i0 == i1)[..., None], edge, sq)  # clamped at an edge: one cell, weight 1
    return out.scatter_add_(2, cols, sq).to(torch.float32)


def _resample(cells: torch.Tensor, ay: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
    """``cells [P*B, C, h, w]``, per-patch weights ``ay [P, H, h]``, ``ax [P, W, w]`` ->
    ``[P*B, C, H, W]`` = ``ay @ cells @ ax^T`` for each patch's samples.

    Arranged as two large matrix products per patch (rows = every sample, channel and row),
    never as many tiny ones: first along y at cell width, then a small transpose, then along x
    straight into the output layout."""
    p = ay.shape[0]
    pb, c, h, w = cells.shape
    H, W = ay.shape[1], ax.shape[1]
    t = cells.reshape(p, -1, h, w).transpose(-1, -2).reshape(p, -1, h)  # [P, M*w, h]
    u = torch.matmul(t, ay.transpose(1, 2))  # [P, M*w, H]
    u = u.view(p, -1, w, H).transpose(-1, -2).reshape(p, -1, w)  # [P, M*H, w]
    return torch.matmul(u, ax.transpose(1, 2)).view(pb, c, H, W)


def _pair_products(s: torch.Tensor) -> torch.Tensor:
    """Products of neighbouring cell styles: ``s [N, I, h, w] -> [N, I, 2h-1, 2w-1]``.

    With bilinear (or nearest) weights ``a`` a pixel's style is ``sum_c a_c s_c`` over at most
    2x2 neighbouring cells, so its square is ``sum_{c,c'} a_c a_c' s_c s_c'``: a fixed quadratic
    form. Entry ``(2i + di, 2j + dj)`` holds the (symmetrised) product for the row pair
    ``(i, i + di)`` and column pair ``(j, j + dj)``; resampling it with the separable pair weights
    of :func:`axis_weights` gives the squared style map exactly, without forming it per pixel.
    """
    n, c, h, w = s.shape
    out = s.new_zeros(n, c, 2 * h - 1, 2 * w - 1)
    out[..., 0::2, 0::2] = s * s
    if w > 1:
        out[..., 0::2, 1::2] = s[..., :, :-1] * s[..., :, 1:]
    if h > 1:
        out[..., 1::2, 0::2] = s[..., :-1, :] * s[..., 1:, :]
    if h > 1 and w > 1:
        out[..., 1::2, 1::2] = 0.5 * (s[..., :-1, :-1] * s[..., 1:, 1:] + s[..., :-1, 1:] * s[..., 1:, :-1])
    return out


@dataclasses.dataclass
class BlockPlan:
    """Windows one synthesis block reads and writes (global pixels at the block's resolutions)."""

    x_in: Window | None  # features read, at res/2 (the const window for the 4x4 block)
    mid: Window | None  # conv0 output kept, at res
    x_out: Window  # features kept after conv1, at res
    img: Window | None  # image kept after this block's toRGB, at res


@dataclasses.dataclass
class LatentPatch:
    """Latents for a group of samples rendered together.

    ``latents`` ``[B, num_ws, C, h, w]`` has its cell ``(0, 0)`` at global cell ``origin``; the
    group's output window is the render window shifted by ``shift`` output pixels (a multiple of
    R/4, so that every layer shifts by whole pixels). Tiles at different places of one canvas
    are different patches of one batch.
    """

    latents: torch.Tensor
    origin: tuple[int, int] = (0, 0)
    shift: tuple[int, int] = (0, 0)


NoiseMaps = Sequence["torch.Tensor | None"]


class SpatialGenerator(nn.Module):
    """A pretrained :class:`Generator` driven by a :class:`LatentGrid`.

    ``forward(grid [B, L, C, h, w]) -> img [B, 3, h/d*R, w/d*R]`` with ``d = grid.density``.
    ``resample`` chooses how cells become pixels: ``'bilinear'`` (smooth transitions between
    cells; default) or ``'nearest'`` (each cell's style exactly on its pixels).
    """

    def __init__(self, G: Generator, padding: str = "zero", resample: str = "bilinear", max_pixels: int | None = None) -> None:
        super().__init__()
        if padding not in PADDING_MODES:
            raise InputError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
        if resample not in RESAMPLE_MODES:
            raise InputError(f"resample must be one of {RESAMPLE_MODES}, got {resample!r}")
        self.G = G
        self.padding = padding
        self.resample = resample
        self.max_pixels = max_pixels
        self._weight_cache = _WeightCache()

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
        return self.G.mapping.w_avg.device

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
        """The synthesis layers that take noise, in the order they run (4x4 conv first): one per
        ws row but the last, ``num_ws - 1`` in all. Index ``i`` of ``forward(noise=...)`` is layer ``i``."""
        layers = []
        for block in self.G.synthesis.blocks():
            if block.in_channels != 0:
                layers.append(block.conv0)
            layers.append(block.conv1)
        return layers

    def noise_shapes(self, grid: LatentGrid) -> list[tuple[int, int]]:
        """``(H_i, W_i)`` of each noise layer's map for ``grid``'s canvas: the canvas at that
        layer's resolution (``4 x 4`` per image side at the first layer, ``R x R`` at the last)."""
        return [self.canvas_size(grid, layer.resolution) for layer in self.noise_layers()]

    def plan(self, out: Window) -> list[BlockPlan]:
        """Backward pass over the network: the window every block must compute so that the
        image covers ``out`` (padding-free mode). One entry per block, 4x4 first."""
        blocks = self.G.synthesis.blocks()
        plans: list[BlockPlan] = []
        img_need: Window | None = out
        x_next: Window | None = None
        resnet = self.G.config.architecture == "resnet"
        for block in reversed(blocks):
            x_out = x_next
            if block.num_torgb:
                x_out = img_need.hull(x_out)
            mid = x_out.grow(1)
            if block.in_channels == 0:
                x_in = mid.grow(1)
            else:
                x_in = mid.map(_upconv_in)
                if resnet:
                    x_in = x_in.hull(x_out.map(_upfir_in))
            plans.append(BlockPlan(x_in=x_in, mid=mid, x_out=x_out, img=img_need if block.num_torgb else None))
            x_next = x_in
            img_need = img_need.map(_upfir_in) if (block.num_torgb and self.G.config.architecture == "skip") else None
        return plans[::-1]

    def receptive_margin(self) -> int:
        """Input margin, in 4x4-level pixels, that a padding-free render adds around its window."""
        p = self.plan(Window(0, 1, 0, 1))[0]
        return max(-p.x_in.y0, p.x_in.y1 - 1)

    # -- rendering -------------------------------------------------------------------------------
    def forward(
        self,
        grid: LatentGrid,
        noise_mode: str = "const",
        noise_seed: int = 0,
        window: Window | tuple[int, int, int, int] | None = None,
        noise: NoiseMaps | None = None,
    ) -> torch.Tensor:
        """Render ``grid``; with ``padding='none'`` optionally only ``window`` (global output pixels,
        ``(y0, y1, x0, x1)``, may extend beyond the canvas). Returns ``[B, 3, H, W]``.

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
            window = Window(0, H, 0, W)
        elif not isinstance(window, Window):
            window = Window(*window)
        if window.size[0] < 1 or window.size[1] < 1:
            raise InputError(f"empty output window {window}")
        if self.padding == "zero" and window != Window(0, H, 0, W):
            raise InputError("rendering a sub-window needs padding='none' (zero padding depends on the canvas border)")
        maps = self._check_noise(noise, grid) if noise is not None else None
        self._check_memory(grid.batch, window)
        grid.check_for(self.num_ws, self.w_dim)  # NaN/inf: reads every value, so after the size check
        patch = LatentPatch(grid.layer_data(self.num_ws).to(self.device, torch.float32))
        render = _Render(self, [patch], grid.density, noise_mode, noise_seed, strict=False, noise_maps=maps)
        if self.padding == "zero":
            return render.same_size((H, W))
        return render.valid(window)

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
        if self.padding != "none":
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
        render = _Render(self, patches, density, noise_mode, noise_seed, strict=True)
        return render.valid(window)

    def cells_needed(self, window: Window, density: int) -> Window:
        """Global cell range (rows, cols; as a Window in cell units) that a padding-free render of
        ``window`` samples from: the 4x4 input window mapped to cells, plus bilinear neighbours."""
        p = self.plan(window)[0].x_in
        return Window(
            math.floor(p.y0 * density / 4) - 1,
            math.ceil(p.y1 * density / 4) + 1,
            math.floor(p.x0 * density / 4) - 1,
            math.ceil(p.x1 * density / 4) + 1,
        )

    def _check_memory(self, batch: int, window: Window) -> None:
        pixels = batch * window.size[0] * window.size[1]
        limit = self.max_pixels
        if limit is None:
            # Largest activation ~ B * C_R * H * W floats, a few alive at once; keep well inside memory.
            c = max(self.G.config.channels[self.img_resolution], 32)
            limit = _available_bytes(self.device) // (4 * c * 8)
        if pixels > limit:
            raise InputError(
                f"rendering {batch} x {window.size[0]}x{window.size[1]} pixels at once would not fit in memory "
                f"(limit about {limit} pixels here); render tiles with spatial_latent.tiling.TileSampler"
            )


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class _WeightCache:
    """Resampling weights by relative geometry (see :meth:`_Render.weights`), bounded in bytes."""

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.items: collections.OrderedDict[tuple, torch.Tensor | None] = collections.OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple, device: torch.device) -> torch.Tensor | None:
        with self.lock:
            t = self.items.get(key + (str(device),))
            if t is not None:
                self.items.move_to_end(key + (str(device),))
            return t

    def put(self, key: tuple, t: torch.Tensor) -> None:
        size = t.numel() * t.element_size()
        if size > self.max_bytes // 8:  # one-off giant canvases are not worth keeping
            return
        with self.lock:
            k = key + (str(t.device),)
            if k in self.items:
                return
            self.items[k] = t
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self.items.popitem(last=False)
                self.bytes -= old.numel() * old.element_size()


class _Render:
    """One render of latent patches through the synthesis blocks (see :class:`LatentPatch`).

    All patches share one latent shape ``[B, L, C, h, w]``; they are stacked into one batch
    ``[P*B, ...]`` (patch-major) and every per-patch quantity (weights, constant, noise) is
    stacked along a leading patch axis, so the cost does not grow with a Python loop over patches.
    """

    def __init__(
        self,
        sg: SpatialGenerator,
        patches: list[LatentPatch],
        density: int,
        noise_mode: str,
        noise_seed: int,
        strict: bool,
        noise_maps: list[torch.Tensor | None] | None = None,
    ) -> None:
        self.sg, self.G = sg, sg.G
        self.patches, self.density, self.strict = patches, density, strict
        self.noise_mode, self.noise_seed = noise_mode, noise_seed
        self.noise_maps = noise_maps
        self.valid_mode = sg.padding == "none"
        self.layer_index = 0
        self.P = len(patches)
        self.B = patches[0].latents.shape[0]
        self.latents = patches[0].latents if self.P == 1 else torch.cat([p.latents for p in patches])
        self.cells = tuple(patches[0].latents.shape[-2:])
        self.device = self.latents.device
        self.origins = [torch.tensor([p.origin[a] for p in patches], device=self.device) for a in (0, 1)]
        # In-place arithmetic on fresh temporaries saves memory traffic; not while autograd records.
        self.inplace = not torch.is_grad_enabled()
        self._weights: dict[tuple, torch.Tensor | None] = {}

    # per-patch geometry
    def shifts(self, res: int, axis: int) -> list[int]:
        return [p.shift[axis] * res // self.sg.img_resolution for p in self.patches]

    def weights(self, res: int, span: Span, axis: int, up: int = 1, pairs: bool = False) -> torch.Tensor | None:
        """Stacked ``[P, len, n]`` weights of one axis for the pixels ``span`` (global, at
        ``res * up``; sampled at ``res`` with nearest-neighbour ``up``-sampling).

        A patch's weights depend only on where its cells sit relative to its pixels, so they are
        kept in the generator's :class:`_WeightCache`: tiles of one size at different places of
        a canvas reuse them instead of rebuilding them for every batch."""
        key = (res, span, axis, up, pairs)
        if key in self._weights:
            return self._weights[key]
        n = self.cells[axis]
        shifts = self.shifts(res, axis)
        origins = [p.origin[axis] for p in self.patches]
        common = (res, span, up, pairs, n, self.sg.resample, self.density, self.strict)
        keys = [common + (Fraction(s * self.density, res) - o,) for s, o in zip(shifts, origins)]
        cache = self.sg._weight_cache
        found = [cache.get(k, self.device) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            # pixels at res*up read res-pixel floor(p / up); shifts are whole pixels at every res
            sh = torch.tensor([shifts[i] for i in missing], device=self.device)
            pix = torch.div(torch.arange(span[0], span[1], device=self.device), up, rounding_mode="floor")[None] + sh[:, None]
            org = torch.tensor([origins[i] for i in missing], device=self.device)
            new = axis_weights(self.density, res, pix, self.sg.resample, org, n, self.strict, pairs)
            if new is None:
                self._weights[key] = None
                return None
            for j, i in enumerate(missing):
                found[i] = new[j]
                cache.put(keys[i], new[j])
        out = found[0][None] if self.P == 1 else torch.stack(found)  # type: ignore[index]
        self._weights[key] = out
        return out

    def per_patch_add(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``y [P*B, C, H, W] + t [P, C', H, W]`` (``C'`` 1 or C), each patch's ``t`` over its samples."""
        if self.P == 1:
            return y.add_(t) if self.inplace else y + t
        v = y.view(self.P, self.B, *y.shape[1:])
        v = v.add_(t[:, None]) if self.inplace else v + t[:, None]
        return v.view(y.shape)

    # inputs as functions of global coordinates
    def const(self, block: SynthesisBlock, win: Window) -> torch.Tensor:
        r = block.resolution
        c = block.const.to(torch.float32)
        parts = []
        for sy, sx in zip(self.shifts(r, 0), self.shifts(r, 1)):
            ys = torch.arange(win.y0 + sy, win.y1 + sy, device=c.device) % r
            xs = torch.arange(win.x0 + sx, win.x1 + sx, device=c.device) % r
            parts.append(c.index_select(1, ys).index_select(2, xs))
        x = torch.stack(parts)[:, None].expand(-1, self.B, -1, -1, -1)
        return x.reshape(self.P * self.B, *x.shape[2:])

    def noise(self, layer: SynthesisLayer, layer_idx: int, win: Window) -> torch.Tensor | None:
        """Unit-variance noise for the layer output ``win``: ``[B or 1, 1, H, W]`` for one patch,
        ``[P, 1, H, W]`` stacked per patch otherwise."""
        if self.noise_maps is not None and self.noise_maps[layer_idx] is not None:
            m = self.noise_maps[layer_idx]
            h, w = m.shape[2:]
            if (win.y0, win.x0, win.size) == (0, 0, (h, w)):
                return m
            ys = torch.arange(win.y0, win.y1, device=m.device) % h
            xs = torch.arange(win.x0, win.x1, device=m.device) % w
            return m.index_select(2, ys).index_select(3, xs)
        if self.noise_mode == "none":
            return None
        r = layer.resolution
        dev = layer.noise_const.device
        parts = []
        for sy, sx in zip(self.shifts(r, 0), self.shifts(r, 1)):
            if self.noise_mode == "const":
                ys = torch.arange(win.y0 + sy, win.y1 + sy, device=dev) % r
                xs = torch.arange(win.x0 + sx, win.x1 + sx, device=dev) % r
                parts.append(layer.noise_const.index_select(0, ys).index_select(1, xs)[None, None])
            else:
                parts.append(coordinate_noise(self.noise_seed, layer_idx, win.y0 + sy, win.x0 + sx, *win.size, device=dev))
        return parts[0] if self.P == 1 else torch.cat(parts)

    def style_cells(self, layer: nn.Module, row: int) -> torch.Tensor:
        """The layer's styles at every cell ``[P*B, I, h, w]`` (the affine map is linear, so
        resampling these equals the styles of resampled latents)."""
        return layer.styles(self.latents[:, row])

    def style_map(self, cells: torch.Tensor, res: int, win: Window) -> torch.Tensor:
        """Styles on the pixels ``win`` at resolution ``res``: ``[P*B, I, *win.size]``."""
        return _resample(cells, self.weights(res, (win.y0, win.y1), 0), self.weights(res, (win.x0, win.x1), 1))

    def demodulation(self, layer: SynthesisLayer, cells: torch.Tensor, s: torch.Tensor, win: Window, out: Window) -> torch.Tensor:
        """Per-output-pixel demodulation ``[P*B, O, *out.size]`` of a layer whose input ``win``
        (at ``res_in``) carries the style map ``s``: ``rsqrt(sum_i w2[o, i] s_i(p)^2 + eps)`` at the
        input pixel under each output pixel (nearest for upsampling layers)."""
        res_in = layer.resolution // layer.up
        wsq = layer.weight.to(torch.float32).square().sum(dim=[2, 3])  # [O, I]
        qy = self.weights(res_in, (out.y0, out.y1), 0, up=layer.up, pairs=True)
        if qy is not None:
            qx = self.weights(res_in, (out.x0, out.x1), 1, up=layer.up, pairs=True)
            pairs = _pair_products(cells)  # [P*B, I, 2h-1, 2w-1]
            m = torch.matmul(wsq, pairs.flatten(2)).view(pairs.shape[0], -1, *pairs.shape[2:])
            d = _resample(m, qy, qx)
        else:  # layer coarser than the grid: few pixels, square the style map directly
            d = torch.matmul(wsq, s.square().flatten(2)).view(s.shape[0], -1, *s.shape[2:])
            ys = torch.div(torch.arange(out.y0, out.y1, device=d.device), layer.up, rounding_mode="floor") - win.y0
            xs = torch.div(torch.arange(out.x0, out.x1, device=d.device), layer.up, rounding_mode="floor") - win.x0
            d = d.index_select(2, ys).index_select(3, xs)
        if self.inplace:
            return d.clamp_(min=0).add_(DEMOD_EPS).rsqrt_()
        return (d.clamp(min=0) + DEMOD_EPS).rsqrt()  # rounding may leave a tiny negative sum

    def conv(self, layer: SynthesisLayer, row: int, x: torch.Tensor, win: Window, gain: float = 1.0) -> tuple[torch.Tensor, Window]:
        """Run one synthesis layer on ``x`` covering ``win``; returns the output and its window.

        The same computation as :meth:`SynthesisLayer.forward_styles` with per-pixel styles:
        ``y = conv(x * s, w) * d + noise * strength``, then bias, leaky ReLU, gain and clamp."""
        res_in = layer.resolution // layer.up
        if self.valid_mode:
            out = win.map(_valid_upconv_out if layer.up > 1 else _valid_conv_out)
            padding = -1 if layer.up > 1 else 0  # -1 crops the up-conv's two invalid edge pixels
        else:
            out = win.map(_double) if layer.up > 1 else win
            padding = layer.padding
        idx = self.layer_index
        self.layer_index += 1
        cells = self.style_cells(layer, row)
        s = self.style_map(cells, res_in, win)
        d = self.demodulation(layer, cells, s, win, out)
        xs = s.mul_(x) if self.inplace else s * x
        y = conv2d_resample(xs, layer.weight.to(x.dtype), f=layer.resample_filter, up=layer.up, padding=padding)
        y = y.mul_(d) if self.inplace else y * d
        n = self.noise(layer, idx, out)
        if n is not None:
            n = n * layer.noise_strength
            y = self.per_patch_add(y, n) if n.shape[0] == self.P and self.P > 1 else (y.add_(n) if self.inplace else y + n)
        clamp = layer.conv_clamp * gain if layer.conv_clamp is not None else None
        return bias_act(y, layer.bias, act="lrelu", gain=layer.act_gain * gain, clamp=clamp), out

    def to_rgb(self, block: SynthesisBlock, row: int, x: torch.Tensor, win: Window) -> torch.Tensor:
        torgb = block.torgb
        s = self.style_map(self.style_cells(torgb, row), block.resolution, win)
        xs = s.mul_(x) if self.inplace else s * x
        y = torch.nn.functional.conv2d(xs, torgb.weight.to(x.dtype))
        return bias_act(y, torgb.bias, clamp=torgb.conv_clamp)

    def upsample_img(self, block: SynthesisBlock, img: torch.Tensor, win: Window) -> tuple[torch.Tensor, Window]:
        if self.valid_mode:
            return upsample2d(img, block.resample_filter, padding=VALID_UPFIR_PADDING), win.map(_valid_upfir_out)
        return upsample2d(img, block.resample_filter), win.map(_double)

    def skip(self, block: SynthesisBlock, x: torch.Tensor, win: Window) -> tuple[torch.Tensor, Window]:
        if self.valid_mode:
            return block.skip(x, gain=math.sqrt(0.5), padding=VALID_UPFIR_PADDING), win.map(_valid_upfir_out)
        return block.skip(x, gain=math.sqrt(0.5)), win.map(_double)

    # the two drivers
    def same_size(self, size: tuple[int, int]) -> torch.Tensor:
        plans = []
        for block in self.G.synthesis.blocks():
            r = block.resolution
            full = Window(0, size[0] * r // self.sg.img_resolution, 0, size[1] * r // self.sg.img_resolution)
            half = Window(0, full.y1 // 2, 0, full.x1 // 2) if r > 4 else full
            plans.append(BlockPlan(x_in=half, mid=full, x_out=full, img=full if block.num_torgb else None))
        return self.run(plans)

    def valid(self, window: Window) -> torch.Tensor:
        return self.run(self.sg.plan(window))

    def run(self, plans: list[BlockPlan]) -> torch.Tensor:
        row = 0
        x = img = None
        x_win = img_win = None
        for block, p in zip(self.G.synthesis.blocks(), plans):
            if block.in_channels == 0:
                x, x_win = self.conv(block.conv1, row, self.const(block, p.x_in), p.x_in)
                x = crop(x, x_win, p.x_out)
            else:
                x = crop(x, x_win, p.x_in)
                if block.architecture == "resnet":
                    y, y_win = self.skip(block, x, p.x_in)
                    y = crop(y, y_win, p.x_out)
                mid, mid_win = self.conv(block.conv0, row, x, p.x_in)
                mid = crop(mid, mid_win, p.mid)
                gain = math.sqrt(0.5) if block.architecture == "resnet" else 1.0
                x, x_win = self.conv(block.conv1, row + 1, mid, p.mid, gain=gain)
                x = crop(x, x_win, p.x_out)
                if block.architecture == "resnet":
                    x = y + x
            x_win = p.x_out
            if img is not None:
                img, img_win = self.upsample_img(block, img, img_win)
            if block.num_torgb:
                xr = crop(x, x_win, p.img)
                rgb = self.to_rgb(block, row + block.num_conv, xr, p.img)
                img = rgb if img is None else crop(img, img_win, p.img) + rgb
                img_win = p.img
            row += block.num_conv
        return img
