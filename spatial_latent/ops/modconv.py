"""Modulated convolution (StyleGAN2), with global or per-location styles.

Global styles ``[N, I]`` give exactly StyleGAN2's modulation and demodulation. Per-location
styles ``[N, I, H, W]`` fold the modulation into the activations, ``y = conv(x * s, w)``, and
demodulate per output pixel with ``d = rsqrt(conv1x1(s^2, sum_k w^2) + eps)``; with a constant
``s`` both forms are equal (up to float rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .conv import conv2d_resample

DEMOD_EPS = 1e-8


def demodulation_map(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Per-location demodulation coefficients.

    ``weight``: ``[O, I, kh, kw]``; ``styles``: ``[N, I, H, W]`` -> ``[N, O, H, W]``.
    """
    wsq = weight.square().sum(dim=[2, 3])  # [O, I]
    return (F.conv2d(styles.square(), wsq[:, :, None, None]) + DEMOD_EPS).rsqrt()


def align_map(m: torch.Tensor, up: int, out_hw: tuple[int, int]) -> torch.Tensor:
    """Bring a map defined on a layer's input grid ``[N, C, H, W]`` onto its output grid.

    Nearest-neighbour upsampling by ``up``, then a centred crop (valid convolutions shrink the
    output) to ``out_hw``. The same rule everywhere keeps sub-window renders consistent.
    """
    if up > 1:
        m = m.repeat_interleave(up, dim=2).repeat_interleave(up, dim=3)
    dh, dw = m.shape[2] - out_hw[0], m.shape[3] - out_hw[1]
    if dh < 0 or dw < 0:
        raise ValueError(f"map {tuple(m.shape[2:])} is smaller than the output {out_hw}")
    if dh or dw:
        m = m[:, :, dh // 2 : dh // 2 + out_hw[0], dw // 2 : dw // 2 + out_hw[1]]
    return m


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int | tuple[int, ...] = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution.

    ``x``: ``[N, I, H, W]``; ``weight``: ``[O, I, kh, kw]``; ``styles``: ``[N, I]`` or
    ``[N, I, H, W]`` (per location, on ``x``'s grid); ``noise``: broadcastable to the output.
    Returns ``[N, O, H', W']``.
    """
    n, in_ch = x.shape[:2]
    if styles.shape[:2] != (n, in_ch):
        raise ValueError(f"styles {tuple(styles.shape)} do not match input {tuple(x.shape)}")
    spatial = styles.ndim == 4
    if spatial and styles.shape[2:] != x.shape[2:]:
        raise ValueError(f"per-location styles {tuple(styles.shape)} must be on the input grid {tuple(x.shape[2:])}")

    if x.dtype == torch.float16 and demodulate and not spatial:
        # Pre-normalise so that fp16 activations cannot overflow; demodulation cancels the scale.
        kh, kw = weight.shape[2:]
        weight = weight * (1 / (in_ch * kh * kw) ** 0.5 / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)

    s = styles.to(x.dtype)
    x = x * (s if spatial else s[:, :, None, None])
    x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)

    if demodulate:
        if spatial:
            d = align_map(demodulation_map(weight, styles), up, (x.shape[2], x.shape[3]))
        else:
            w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, kh, kw]
            d = (w.square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt()[:, :, None, None]
        x = x * d.to(x.dtype)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
