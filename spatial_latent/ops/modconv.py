"""Modulated convolution (StyleGAN2) with one style vector per sample.

``y = conv(x, w * s_in) * d_out`` with ``d_out = rsqrt(sum_{in,k} (w * s_in)^2 + eps)``, computed
as ``conv(x * s, w) * d``. Styles that vary per location are the render engine's job
(:mod:`spatial_latent.render.engine`, the one implementation of per-location modulation); with a
constant style it equals this function, which the render tests check.
"""

from __future__ import annotations

import torch

from .conv import conv2d_resample

DEMOD_EPS = 1e-8


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

    ``x``: ``[N, I, H, W]``; ``weight``: ``[O, I, kh, kw]``; ``styles``: ``[N, I]``; ``noise``:
    broadcastable to the output. Returns ``[N, O, H', W']``.
    """
    n, in_ch = x.shape[:2]
    if styles.ndim != 2 or styles.shape != (n, in_ch):
        raise ValueError(f"styles {tuple(styles.shape)} must be [N, I] = [{n}, {in_ch}] for input {tuple(x.shape)}")

    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so that fp16 activations cannot overflow; demodulation cancels the scale.
        kh, kw = weight.shape[2:]
        weight = weight * (1 / (in_ch * kh * kw) ** 0.5 / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)

    x = x * styles.to(x.dtype)[:, :, None, None]
    x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)

    if demodulate:
        w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, kh, kw]
        d = (w.square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt()[:, :, None, None]
        x = x * d.to(x.dtype)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
