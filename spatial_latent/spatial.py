"""``SpatialGenerator``: render a :class:`LatentGrid` with a pretrained StyleGAN2.

Every synthesis layer is modulated per location: the layer's affine map turns each cell's latent
into styles (cheap, at cell resolution), the styles are resampled onto the layer's pixel grid,
activations are modulated per pixel and demodulated per output pixel (see
:mod:`spatial_latent.ops.modconv`). A constant grid reproduces ``G.synthesis(ws)``.

Everything a layer consumes is a function of *global* pixel coordinates: the 4x4 constant input
(tiled periodically), the styles (sampled from cells), the noise (stored maps tiled, or hashed
from a seed). Two padding modes:

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

import dataclasses
import logging
import math
import os
from typing import Any

import torch
from torch import nn

from .errors import InputError
from .latent_grid import LatentGrid
from .networks import Generator, SynthesisBlock, SynthesisLayer, check_noise_mode
from .noise import coordinate_noise
from .ops import upfirdn2d, upsample2d

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

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike, device: str | torch.device = "cpu", **kwargs: Any) -> "SpatialGenerator":
        """Load any supported checkpoint (see :func:`spatial_latent.load_generator`) and wrap it."""
        from .loading import load_generator

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
    ) -> torch.Tensor:
        """Render ``grid``; with ``padding='none'`` optionally only ``window`` (global output pixels,
        ``(y0, y1, x0, x1)``, may extend beyond the canvas). Returns ``[B, 3, H, W]``."""
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
        self._check_memory(grid.batch, window)
        grid.check_for(self.num_ws, self.w_dim)  # NaN/inf: reads every value, so after the size check
        patch = LatentPatch(grid.layer_data(self.num_ws).to(self.device, torch.float32))
        render = _Render(self, [patch], grid.density, noise_mode, noise_seed, strict=False)
        if self.padding == "zero":
            return render.same_size((H, W))
        return render.valid(window)

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
        Returns ``[sum of patch batches, 3, *window.size]``, in patch order."""
        if self.padding != "none":
            raise InputError("rendering patches needs padding='none'")
        check_noise_mode(noise_mode)
        step = self.img_resolution // 4
        for p in patches:
            if p.shift[0] % step or p.shift[1] % step:
                raise InputError(f"patch shift {p.shift} must be a multiple of {step} (R/4) pixels")
            if p.latents.ndim != 5 or p.latents.shape[1:3] != (self.num_ws, self.w_dim):
                raise InputError(f"patch latents must be [B, {self.num_ws}, {self.w_dim}, h, w], got {tuple(p.latents.shape)}")
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


class _Render:
    """One render of latent patches through the synthesis blocks (see :class:`LatentPatch`)."""

    def __init__(self, sg: SpatialGenerator, patches: list[LatentPatch], density: int, noise_mode: str, noise_seed: int, strict: bool) -> None:
        self.sg, self.G = sg, sg.G
        self.patches, self.density, self.strict = patches, density, strict
        self.noise_mode, self.noise_seed = noise_mode, noise_seed
        self.valid_mode = sg.padding == "none"
        self.layer_index = 0

    def shifted(self, win: Window, patch: LatentPatch, res: int) -> Window:
        sy, sx = (v * res // self.sg.img_resolution for v in patch.shift)
        return Window(win.y0 + sy, win.y1 + sy, win.x0 + sx, win.x1 + sx)

    def per_patch(self, make: Any, win: Window, res: int) -> torch.Tensor:
        """``make(patch, window)`` -> ``[1 or B_k, ...]`` for each patch, concatenated over the batch."""
        if len(self.patches) == 1:
            return make(self.patches[0], self.shifted(win, self.patches[0], res))
        parts = [make(p, self.shifted(win, p, res)) for p in self.patches]
        return torch.cat([t.expand(p.latents.shape[0], *t.shape[1:]) for t, p in zip(parts, self.patches)])

    # inputs as functions of global coordinates
    def const(self, block: SynthesisBlock, win: Window) -> torch.Tensor:
        r = block.resolution

        def make(patch: LatentPatch, w: Window) -> torch.Tensor:
            ys = torch.arange(w.y0, w.y1, device=block.const.device) % r
            xs = torch.arange(w.x0, w.x1, device=block.const.device) % r
            c = block.const.to(torch.float32).index_select(1, ys).index_select(2, xs)
            return c.unsqueeze(0).expand(patch.latents.shape[0], -1, -1, -1)

        return self.per_patch(make, win, r)

    def noise(self, layer: SynthesisLayer, layer_idx: int, win: Window) -> torch.Tensor | None:
        if self.noise_mode == "none":
            return None
        r = layer.resolution
        dev = layer.noise_const.device

        def make(patch: LatentPatch, w: Window) -> torch.Tensor:
            if self.noise_mode == "const":
                ys = torch.arange(w.y0, w.y1, device=dev) % r
                xs = torch.arange(w.x0, w.x1, device=dev) % r
                return layer.noise_const.index_select(0, ys).index_select(1, xs)[None, None]
            return coordinate_noise(self.noise_seed, layer_idx, w.y0, w.x0, *w.size, device=dev)

        return self.per_patch(make, win, r)

    def styles(self, layer: nn.Module, row: int, res: int, win: Window) -> torch.Tensor:
        def make(patch: LatentPatch, w: Window) -> torch.Tensor:
            cells = layer.styles(patch.latents[:, row])  # [B, I, h, w]: affine commutes with resampling
            return sample_cells(cells, self.density, res, w, self.sg.resample, patch.origin, self.strict)

        return self.per_patch(make, win, res)

    def conv(self, layer: SynthesisLayer, row: int, x: torch.Tensor, win: Window, gain: float = 1.0) -> tuple[torch.Tensor, Window]:
        """Run one synthesis layer on ``x`` covering ``win``; returns the output and its window."""
        res_in = layer.resolution // layer.up
        if self.valid_mode:
            out = win.map(_valid_upconv_out if layer.up > 1 else _valid_conv_out)
            padding = -1 if layer.up > 1 else 0  # -1 crops the up-conv's two invalid edge pixels
        else:
            out = win.map(_double) if layer.up > 1 else win
            padding = None
        idx = self.layer_index
        self.layer_index += 1
        styles = self.styles(layer, row, res_in, win)
        y = layer.forward_styles(x, styles, noise=self.noise(layer, idx, out), gain=gain, padding=padding)
        return y, out

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
                rgb = block.torgb.forward_styles(xr, self.styles(block.torgb, row + block.num_conv, block.resolution, p.img))
                img = rgb if img is None else crop(img, img_win, p.img) + rgb
                img_win = p.img
            row += block.num_conv
        return img
