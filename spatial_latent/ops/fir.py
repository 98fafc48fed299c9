"""Upsample, FIR-filter, downsample: the resampling primitive of StyleGAN2.

``upfirdn2d`` zero-inserts ``up - 1`` samples between pixels, pads (negative padding crops),
convolves with a 2-D FIR filter ``f`` and keeps every ``down``-th sample. The reference path is
plain PyTorch and runs everywhere; CUDA tensors may use a compiled kernel (see
:mod:`spatial_latent.ops.cuda_build`), which must agree with the reference.
"""

from __future__ import annotations

from types import ModuleType

import torch
import torch.nn.functional as F

from .cuda_build import ExtensionLoader, check_impl, select_kernel

# The one piece of module state: builds the kernel on the first CUDA call, never at import.
_loader = ExtensionLoader("spatial_latent_upfirdn2d", ["upfirdn2d.cpp", "upfirdn2d.cu"])
_MAX_FILTER_TAPS = 4096  # the kernel keeps the whole filter in shared memory


def _pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def _pad4(p: int | tuple[int, ...] | list[int]) -> tuple[int, int, int, int]:
    """Padding as (x0, x1, y0, y1) from an int, (x, y) or (x0, x1, y0, y1)."""
    if isinstance(p, int):
        return p, p, p, p
    p = [int(v) for v in p]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"padding must have 1, 2 or 4 entries, got {p}")


def make_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1), device: torch.device | None = None) -> torch.Tensor:
    """The separable low-pass FIR filter StyleGAN2 uses, as a normalised 2-D tensor ``[k, k]``."""
    t = torch.as_tensor(taps, dtype=torch.float32, device=device)
    f = torch.outer(t, t)
    return f / f.sum()


def upfirdn2d_reference(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | tuple[int, int] = 1,
    down: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Reference implementation. ``x``: ``[N, C, H, W]``; ``f``: ``[fh, fw]`` (or ``[k]`` separable).

    ``up``/``down`` are ints or ``(x, y)``; ``padding`` is ``(x0, x1, y0, y1)`` applied after
    upsampling. The filter is scaled so that a constant input is multiplied by ``gain``.
    Output: ``[N, C, (H*upy + py0 + py1 - fh) // downy + 1, ...]``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N, C, H, W], got shape {tuple(x.shape)}")
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = _pad4(padding)
    n, c, h, w = x.shape
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)

    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    # conv2d correlates; a true convolution (flip_filter=False) needs the filter flipped.
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)

    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


class _Upfirdn2dCuda(torch.autograd.Function):
    """The CUDA kernel with its gradient, itself an upfirdn2d (so double backward works too).

    Forward: ``y[o] = sum_i g[i] * U[o*down + i - p0]`` with ``U`` the zero-inserted input
    (``U[k*up] = x[k]``) and ``g`` the effective filter. Each input sample ``x[k]`` therefore
    receives ``dx[k] = sum_i g[i] * dY[k*up + p0 - i]``, ``dY`` being ``dy`` zero-inserted by
    ``down``. Substituting ``i' = fh - 1 - i`` turns this into an upfirdn2d of ``dy`` with up and
    down swapped, the filter flipped, ``p0' = fh - 1 - p0`` and ``p1'`` chosen so that exactly
    ``H`` samples come out: ``p1' = H*up - H_out*down + p0 - up + 1`` (per axis). The filter
    itself gets no gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        f: torch.Tensor,
        mod: ModuleType,
        up: tuple[int, int],
        down: tuple[int, int],
        pad: tuple[int, int, int, int],
        flip_filter: bool,
        gain: float,
    ) -> torch.Tensor:
        (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
        y = mod.upfirdn2d(x.contiguous(), f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain)
        ctx.save_for_backward(f)
        ctx.mod, ctx.up, ctx.down, ctx.pad = mod, up, down, pad
        ctx.flip_filter, ctx.gain = flip_filter, gain
        ctx.in_hw, ctx.out_hw = tuple(x.shape[2:]), tuple(y.shape[2:])
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, dy: torch.Tensor):  # type: ignore[override]
        (f,) = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            pad = _grad_padding(ctx.in_hw, ctx.out_hw, (f.shape[0], f.shape[-1]), ctx.up, ctx.down, ctx.pad)
            dx = _Upfirdn2dCuda.apply(dy, f, ctx.mod, ctx.down, ctx.up, pad, not ctx.flip_filter, ctx.gain)
        return dx, None, None, None, None, None, None, None


def _grad_padding(
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    f_hw: tuple[int, int],
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
) -> tuple[int, int, int, int]:
    """Padding ``(x0, x1, y0, y1)`` of the upfirdn2d that computes the input gradient.

    With up/down swapped and the filter flipped (see :class:`_Upfirdn2dCuda`), it maps a
    gradient of shape ``out_hw`` back to exactly ``in_hw``.
    """
    (h, w), (oh, ow), (fh, fw) = in_hw, out_hw, f_hw
    (upx, upy), (downx, downy), (px0, _, py0, _) = up, down, pad
    return (
        fw - 1 - px0,
        w * upx - ow * downx + px0 - upx + 1,
        fh - 1 - py0,
        h * upy - oh * downy + py0 - upy + 1,
    )


def _filter_problem(f: torch.Tensor | None) -> str | None:
    """Why the kernel cannot take the filter ``f`` (``[fh, fw]`` or ``[k]``), or ``None``."""
    if f is not None and (f.ndim not in (1, 2) or f.numel() > _MAX_FILTER_TAPS or f.numel() == 0):
        return f"filter of shape {tuple(f.shape)} is not supported by the kernel"
    if f is not None and f.requires_grad and torch.is_grad_enabled():
        return "the kernel computes no gradient for the filter f"
    return None


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | tuple[int, int] = 1,
    down: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: str = "auto",
) -> torch.Tensor:
    """Dispatching entry point: the CUDA kernel for CUDA tensors when it builds, else the reference.

    ``x`` ``[N, C, H, W]``, ``f`` ``[fh, fw]`` (or ``[k]``, separable) -> ``[N, C, H', W']`` with
    ``H' = (H*up + py0 + py1 - fh) // down + 1`` (likewise ``W'``); see :func:`upfirdn2d_reference`.
    ``impl`` is ``'auto'``, ``'ref'`` or ``'cuda'`` (``'cuda'`` raises if the kernel is unavailable). The kernel path is differentiable in ``x`` (not in
    ``f``; with a filter that requires grad, ``'auto'`` uses the reference).
    """
    check_impl("upfirdn2d", impl)
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N, C, H, W], got shape {tuple(x.shape)}")
    mod = select_kernel("upfirdn2d", _loader, x, impl, lambda: _filter_problem(f))
    if mod is None:
        return upfirdn2d_reference(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)

    upx, upy = _pair(up)
    downx, downy = _pair(down)
    pad = _pad4(padding)
    if min(upx, upy, downx, downy) < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    # The kernel accumulates in float32 (float64 for float64 input) and wants the filter so.
    f = f.to(device=x.device, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32).contiguous()
    fh, fw = f.shape[0], f.shape[-1]
    if x.shape[2] * upy + pad[2] + pad[3] < fh or x.shape[3] * upx + pad[0] + pad[1] < fw:
        raise ValueError(f"upfirdn2d: filter {tuple(f.shape)} is larger than the padded input (x {tuple(x.shape)}, up {up}, padding {pad})")
    return _Upfirdn2dCuda.apply(x, f, mod, (upx, upy), (downx, downy), pad, bool(flip_filter), float(gain))


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, padding: int | tuple[int, ...] = 0, gain: float = 1.0, impl: str = "auto") -> torch.Tensor:
    """Upsample ``[N, C, H, W]`` by ``up`` with filter ``f`` -> ``[N, C, H*up, W*up]`` (plus padding)."""
    fw = f.shape[-1]
    px0, px1, py0, py1 = _pad4(padding)
    pad = (px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fw + up - 1) // 2, py1 + (fw - up) // 2)
    return upfirdn2d(x, f, up=up, padding=pad, gain=gain * up * up, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2, padding: int | tuple[int, ...] = 0, gain: float = 1.0, impl: str = "auto") -> torch.Tensor:
    """Downsample ``[N, C, H, W]`` by ``down`` with filter ``f`` -> ``[N, C, H//down, W//down]``."""
    fw = f.shape[-1]
    px0, px1, py0, py1 = _pad4(padding)
    pad = (px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fw - down + 1) // 2, py1 + (fw - down) // 2)
    return upfirdn2d(x, f, down=down, padding=pad, gain=gain, impl=impl)
