"""The per-patch render engine: latent patches through the synthesis blocks, styles per pixel.

This is the one implementation of per-location modulation (see ``../shared/NOTES.md`` section 2
and :mod:`spatial_latent.ops.modconv` for the global-style form it reduces to). Each synthesis
layer's affine map turns each cell's latent into styles (cheap, at cell resolution), the styles
are resampled onto the layer's pixel grid (:mod:`.styles`), activations are modulated per pixel,
``y = conv(x * s, w)``, and demodulated per output pixel, ``d(p) = rsqrt(sum_i s_i(p)^2
sum_k w[o, i, k]^2 + eps)``. With a constant style this is StyleGAN2's modulated convolution.

Everything a layer consumes is a function of *global* pixel coordinates: the 4x4 constant input
(tiled periodically), the styles (sampled from cells), the noise (stored maps tiled, hashed from a
seed, or explicit per-layer maps). Which pixels each block computes comes from :mod:`.plan`.
"""

from __future__ import annotations

import collections
import math
import os
import threading
from fractions import Fraction

import torch
from torch import nn

from ..errors import InputError
from ..latents.window import Span, Window
from ..networks import Generator, SynthesisBlock, SynthesisLayer
from ..ops import bias_act, conv2d_resample, upsample2d
from ..ops.modconv import DEMOD_EPS
from .noise import coordinate_noise
from .plan import (
    VALID_UPFIR_PADDING,
    BlockPlan,
    LatentPatch,
    PaddingMode,
    crop,
    double,
    plan_blocks,
    same_size_plan,
    valid_conv_out,
    valid_upconv_out,
    valid_upfir_out,
)
from .styles import axis_weights, pair_products, resample_cells


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA: free device memory; CPU: available RAM, 8 GiB if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_memory(G: Generator, batch: int, window: Window, max_pixels: int | None = None) -> None:
    """Raise :class:`InputError` before any work when rendering ``batch`` images of ``window``
    at once would not fit (``max_pixels``: the limit in output pixels; default from free memory)."""
    pixels = batch * window.size[0] * window.size[1]
    limit = max_pixels
    if limit is None:
        # Largest activation ~ B * C_R * H * W floats, a few alive at once; keep well inside memory.
        c = max(G.config.channels[G.img_resolution], 32)
        limit = available_bytes(G.device) // (4 * c * 8)
    if pixels > limit:
        raise InputError(
            f"rendering {batch} x {window.size[0]}x{window.size[1]} pixels at once would not fit in memory "
            f"(limit about {limit} pixels here); render tiles with spatial_latent.render.tiles.TileSampler"
        )


class WeightCache:
    """Resampling weights by relative geometry (see :meth:`Render.weights`), bounded in bytes."""

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


class Render:
    """One render of latent patches through the synthesis blocks (see :class:`LatentPatch`).

    All patches share one latent shape ``[B, L, C, h, w]``; they are stacked into one batch
    ``[P*B, ...]`` (patch-major) and every per-patch quantity (weights, constant, noise) is
    stacked along a leading patch axis, so the cost does not grow with a Python loop over patches.
    ``noise_maps``: one entry per noise layer (``[B or 1, 1, H_i, W_i]`` over the canvas, or None
    for ``noise_mode``); ``strict``: patches must cover every cell they are sampled at.
    """

    def __init__(
        self,
        G: Generator,
        patches: list[LatentPatch],
        density: int,
        *,
        padding: PaddingMode,
        resample: str,
        noise_mode: str,
        noise_seed: int = 0,
        strict: bool = False,
        noise_maps: list[torch.Tensor | None] | None = None,
        cache: WeightCache | None = None,
    ) -> None:
        self.G = G
        self.patches, self.density, self.strict = patches, density, strict
        self.resample = resample
        self.noise_mode, self.noise_seed = noise_mode, noise_seed
        self.noise_maps = noise_maps
        self.cache = cache if cache is not None else WeightCache()
        self.valid_mode = PaddingMode.of(padding).padding_free
        self.layer_index = 0
        self.P = len(patches)
        self.B = patches[0].latents.shape[0]
        self.latents = patches[0].latents if self.P == 1 else torch.cat([p.latents for p in patches])
        self.cells = tuple(patches[0].latents.shape[-2:])
        self.device = self.latents.device
        # In-place arithmetic on fresh temporaries saves memory traffic; not while autograd records.
        self.inplace = not torch.is_grad_enabled()
        self._weights: dict[tuple, torch.Tensor | None] = {}

    # per-patch geometry
    def shifts(self, res: int, axis: int) -> list[int]:
        return [p.shift[axis] * res // self.G.img_resolution for p in self.patches]

    def weights(self, res: int, span: Span, axis: int, up: int = 1, pairs: bool = False) -> torch.Tensor | None:
        """Stacked ``[P, len, n]`` weights of one axis for the pixels ``span`` (global, at
        ``res * up``; sampled at ``res`` with nearest-neighbour ``up``-sampling).

        A patch's weights depend only on where its cells sit relative to its pixels, so they are
        kept in the generator's :class:`WeightCache`: tiles of one size at different places of
        a canvas reuse them instead of rebuilding them for every batch."""
        key = (res, span, axis, up, pairs)
        if key in self._weights:
            return self._weights[key]
        n = self.cells[axis]
        shifts = self.shifts(res, axis)
        origins = [p.origin[axis] for p in self.patches]
        common = (res, span, up, pairs, n, self.resample, self.density, self.strict)
        keys = [common + (Fraction(s * self.density, res) - o,) for s, o in zip(shifts, origins)]
        found = [self.cache.get(k, self.device) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            # pixels at res*up read res-pixel floor(p / up); shifts are whole pixels at every res
            sh = torch.tensor([shifts[i] for i in missing], device=self.device)
            pix = torch.div(torch.arange(span[0], span[1], device=self.device), up, rounding_mode="floor")[None] + sh[:, None]
            org = torch.tensor([origins[i] for i in missing], device=self.device)
            new = axis_weights(self.density, res, pix, self.resample, org, n, self.strict, pairs)
            if new is None:
                self._weights[key] = None
                return None
            for j, i in enumerate(missing):
                found[i] = new[j]
                self.cache.put(keys[i], new[j])
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
        """The 4x4 constant tiled periodically over ``win``: ``[P*B, C, *win.size]``."""
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
        return resample_cells(cells, self.weights(res, (win.y0, win.y1), 0), self.weights(res, (win.x0, win.x1), 1))

    def demodulation(self, layer: SynthesisLayer, cells: torch.Tensor, s: torch.Tensor, win: Window, out: Window) -> torch.Tensor:
        """Per-output-pixel demodulation ``[P*B, O, *out.size]`` of a layer whose input ``win``
        (at ``res_in``) carries the style map ``s``: ``rsqrt(sum_i w2[o, i] s_i(p)^2 + eps)`` at the
        input pixel under each output pixel (nearest for upsampling layers)."""
        res_in = layer.resolution // layer.up
        wsq = layer.weight.to(torch.float32).square().sum(dim=[2, 3])  # [O, I]
        qy = self.weights(res_in, (out.y0, out.y1), 0, up=layer.up, pairs=True)
        if qy is not None:
            qx = self.weights(res_in, (out.x0, out.x1), 1, up=layer.up, pairs=True)
            pairs = pair_products(cells)  # [P*B, I, 2h-1, 2w-1]
            m = torch.matmul(wsq, pairs.flatten(2)).view(pairs.shape[0], -1, *pairs.shape[2:])
            d = resample_cells(m, qy, qx)
        else:  # layer coarser than the grid: few pixels, square the style map directly
            d = torch.matmul(wsq, s.square().flatten(2)).view(s.shape[0], -1, *s.shape[2:])
            ys = torch.div(torch.arange(out.y0, out.y1, device=d.device), layer.up, rounding_mode="floor") - win.y0
            xs = torch.div(torch.arange(out.x0, out.x1, device=d.device), layer.up, rounding_mode="floor") - win.x0
            d = d.index_select(2, ys).index_select(3, xs)
        if self.inplace:
            return d.clamp_(min=0).add_(DEMOD_EPS).rsqrt_()
        return (d.clamp(min=0) + DEMOD_EPS).rsqrt()  # rounding may leave a tiny negative sum

    def conv(self, layer: SynthesisLayer, row: int, x: torch.Tensor, win: Window, gain: float = 1.0) -> tuple[torch.Tensor, Window]:
        """Run one synthesis layer on ``x [P*B, I, *win.size]`` covering ``win``; returns the
        output ``[P*B, O, *out.size]`` and its window ``out``.

        The same computation as :meth:`SynthesisLayer.forward_styles` with per-pixel styles:
        ``y = conv(x * s, w) * d + noise * strength``, then bias, leaky ReLU, gain and clamp."""
        res_in = layer.resolution // layer.up
        if self.valid_mode:
            out = win.map(valid_upconv_out if layer.up > 1 else valid_conv_out)
            padding = -1 if layer.up > 1 else 0  # -1 crops the up-conv's two invalid edge pixels
        else:
            out = win.map(double) if layer.up > 1 else win
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
        """The block's toRGB (modulated per pixel, not demodulated): ``[P*B, 3, *win.size]``."""
        torgb = block.torgb
        s = self.style_map(self.style_cells(torgb, row), block.resolution, win)
        xs = s.mul_(x) if self.inplace else s * x
        y = torch.nn.functional.conv2d(xs, torgb.weight.to(x.dtype))
        return bias_act(y, torgb.bias, clamp=torgb.conv_clamp)

    def upsample_img(self, block: SynthesisBlock, img: torch.Tensor, win: Window) -> tuple[torch.Tensor, Window]:
        if self.valid_mode:
            return upsample2d(img, block.resample_filter, padding=VALID_UPFIR_PADDING), win.map(valid_upfir_out)
        return upsample2d(img, block.resample_filter), win.map(double)

    def skip(self, block: SynthesisBlock, x: torch.Tensor, win: Window) -> tuple[torch.Tensor, Window]:
        if self.valid_mode:
            return block.skip(x, gain=math.sqrt(0.5), padding=VALID_UPFIR_PADDING), win.map(valid_upfir_out)
        return block.skip(x, gain=math.sqrt(0.5)), win.map(double)

    # the two drivers
    def same_size(self, size: tuple[int, int]) -> torch.Tensor:
        """Zero-padded render of a whole canvas of ``size`` output pixels: ``[P*B, 3, *size]``."""
        return self.run(same_size_plan(self.G, size))

    def valid(self, window: Window) -> torch.Tensor:
        """Padding-free render of ``window`` (output pixels): ``[P*B, 3, *window.size]``."""
        return self.run(plan_blocks(self.G, window))

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
