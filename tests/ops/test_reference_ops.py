"""CPU checks of the reference ops against independently written naive versions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spatial_latent.ops import (
    bias_act_reference,
    conv2d_resample,
    downsample2d,
    make_filter,
    modulated_conv2d,
    upfirdn2d,
    upfirdn2d_reference,
    upsample2d,
)
from spatial_latent.ops.activation import ACTIVATIONS
from spatial_latent.ops.fir import _grad_padding


# --------------------------------------------------------------------------------------------
# upfirdn2d


def naive_upfirdn2d(x: np.ndarray, f: np.ndarray, up: tuple[int, int], down: tuple[int, int],
                    pad: tuple[int, int, int, int], flip: bool, gain: float) -> np.ndarray:
    """Textbook upfirdn with explicit loops: zero-insert, pad/crop, true 2-D convolution, decimate.

    ``x``: ``[N, C, H, W]``; ``f``: ``[fh, fw]``; ``up``/``down``: ``(x, y)``; ``pad``: ``(x0, x1, y0, y1)``.
    """
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * upy, w * upx))
    u[:, :, ::upy, ::upx] = x
    ph, pw = h * upy + py0 + py1, w * upx + px0 + px1
    p = np.zeros((n, c, ph, pw))
    for r in range(ph):
        for s in range(pw):
            a, b = r - py0, s - px0
            if 0 <= a < u.shape[2] and 0 <= b < u.shape[3]:
                p[:, :, r, s] = u[:, :, a, b]
    fh, fw = f.shape
    k = f * gain
    if not flip:  # a true convolution reads the filter backwards
        k = k[::-1, ::-1]
    full = np.zeros((n, c, ph - fh + 1, pw - fw + 1))
    for r in range(full.shape[2]):
        for s in range(full.shape[3]):
            full[:, :, r, s] = (p[:, :, r : r + fh, s : s + fw] * k).sum(axis=(2, 3))
    return full[:, :, ::downy, ::downx]


UPFIRDN_CASES = [
    # up, down, padding (x0, x1, y0, y1), filter shape, flip, gain
    ((1, 1), (1, 1), (0, 0, 0, 0), (3, 3), False, 1.0),
    ((2, 2), (1, 1), (2, 1, 2, 1), (4, 4), False, 4.0),
    ((4, 4), (1, 1), (3, 2, 3, 2), (4, 4), True, 16.0),
    ((1, 1), (2, 2), (1, 1, 1, 1), (4, 4), False, 1.0),
    ((2, 2), (2, 2), (1, 2, 0, 3), (3, 2), True, 2.0),
    ((1, 1), (1, 1), (-1, -2, 2, -1), (2, 3), False, 0.5),
    ((2, 1), (1, 2), (3, -2, -1, 4), (3, 4), True, 1.5),
    ((4, 2), (2, 1), (-3, 0, 1, -2), (5, 2), False, 1.0),
    ((1, 4), (2, 2), (0, 0, -4, 3), (1, 6), True, 3.0),
]


@pytest.mark.parametrize("up,down,pad,fshape,flip,gain", UPFIRDN_CASES)
def test_upfirdn2d_reference_matches_naive_loops(up, down, pad, fshape, flip, gain):
    g = torch.Generator().manual_seed(hash((up, down, pad)) % 2**31)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    f = torch.randn(*fshape, generator=g, dtype=torch.float64)
    y = upfirdn2d_reference(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain)
    expect = naive_upfirdn2d(x.numpy(), f.numpy(), up, down, pad, flip, gain)
    assert y.shape == expect.shape
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-10, atol=1e-12)
    # The CPU dispatcher must give the very same result for every impl that runs on CPU.
    torch.testing.assert_close(upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain), y, rtol=0, atol=0)


def test_upfirdn2d_int_arguments_and_shape_formula():
    x = torch.randn(1, 2, 7, 5)
    y = upfirdn2d_reference(x, make_filter(), up=2, down=1, padding=1)
    assert y.shape == (1, 2, (7 * 2 + 2 - 4) + 1, (5 * 2 + 2 - 4) + 1)


@pytest.mark.parametrize("up,down,pad,flip,gain", [(1, 1, (1, 2, 0, 1), False, 1.0), (2, 1, (2, 1, 2, 1), True, 4.0), (1, 2, (1, 1, 1, 1), False, 2.0)])
def test_separable_filter_equals_outer_product(up, down, pad, flip, gain):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 7, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64) + 0.1
    a = upfirdn2d_reference(x, t, up=up, down=down, padding=pad, flip_filter=flip, gain=gain)
    b = upfirdn2d_reference(x, torch.outer(t, t), up=up, down=down, padding=pad, flip_filter=flip, gain=gain)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_resample_preserves_constant_interior(factor, gain):
    x = torch.full((1, 2, 16, 16), 3.0, dtype=torch.float64)
    # Every polyphase component of the filter must sum to 1/factor (per axis) for a flat output.
    f = make_filter((1, 3, 3, 1) if factor == 2 else (1, 2, 3, 4, 4, 3, 2, 1)).double()
    border = f.shape[-1]
    up = upsample2d(x, f, up=factor, gain=gain)
    assert up.shape[2:] == (16 * factor, 16 * factor)
    torch.testing.assert_close(up[:, :, border:-border, border:-border], torch.full_like(up[:, :, border:-border, border:-border], 3.0 * gain))
    down = downsample2d(x, f, down=factor, gain=gain)
    assert down.shape[2:] == (16 // factor, 16 // factor)
    torch.testing.assert_close(down[:, :, 2:-2, 2:-2], torch.full_like(down[:, :, 2:-2, 2:-2], 3.0 * gain))


def test_grad_padding_formula_gives_the_autograd_gradient():
    """The CUDA backward is an upfirdn2d with swapped up/down, flipped filter, ``_grad_padding``;
    evaluated with the reference it must equal autograd through the reference."""
    cases = [((2, 2), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1)), ((2, 4), (3, 1), (-1, 3, 2, -2)),
             ((1, 1), (1, 1), (-2, 1, 0, -1)), ((4, 1), (2, 2), (5, 0, -1, 1))]
    torch.manual_seed(2)
    for (up, down, pad), flip in itertools.product(cases, (False, True)):
        x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
        f = torch.randn(3, 4, dtype=torch.float64)
        y = upfirdn2d_reference(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=1.7)
        dy = torch.randn_like(y)
        (expect,) = torch.autograd.grad(y, x, dy)
        gpad = _grad_padding(tuple(x.shape[2:]), tuple(y.shape[2:]), (3, 4), up, down, pad)
        got = upfirdn2d_reference(dy, f, up=down, down=up, padding=gpad, flip_filter=not flip, gain=1.7)
        torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-12)


def test_dispatch_rejects_unknown_impl():
    with pytest.raises(ValueError, match="impl"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, impl="fast")


# --------------------------------------------------------------------------------------------
# bias_act

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
FORMULAS = {
    "linear": lambda s, a: s,
    "relu": lambda s, a: torch.where(s > 0, s, torch.zeros_like(s)),
    "lrelu": lambda s, a: torch.where(s > 0, s, a * s),
    "tanh": lambda s, a: (torch.exp(s) - torch.exp(-s)) / (torch.exp(s) + torch.exp(-s)),
    "sigmoid": lambda s, a: 1 / (1 + torch.exp(-s)),
    "elu": lambda s, a: torch.where(s > 0, s, torch.exp(s) - 1),
    "selu": lambda s, a: SELU_SCALE * torch.where(s > 0, s, SELU_ALPHA * (torch.exp(s) - 1)),
    "softplus": lambda s, a: torch.log(1 + torch.exp(s)),
    "swish": lambda s, a: s / (1 + torch.exp(-s)),
}
DEFAULT_GAINS = {"relu": math.sqrt(2), "lrelu": math.sqrt(2), "swish": math.sqrt(2)}


def test_every_activation_has_a_formula():
    assert set(FORMULAS) == set(ACTIVATIONS)


@pytest.mark.parametrize("act", sorted(FORMULAS))
@pytest.mark.parametrize("dim,clamp", [(1, None), (2, 0.7), (0, 256.0)])
def test_bias_act_reference_matches_formulas(act, dim, clamp):
    torch.manual_seed(3)
    x = torch.randn(3, 4, 5, 2, dtype=torch.float64) * 3
    b = torch.randn(x.shape[dim], dtype=torch.float64)
    shape = [-1 if i == dim else 1 for i in range(x.ndim)]
    s = x + b.reshape(shape)
    alpha = ACTIVATIONS[act].alpha
    expect = FORMULAS[act](s, alpha) * DEFAULT_GAINS.get(act, 1.0)
    if clamp is not None:
        expect = torch.minimum(torch.maximum(expect, torch.tensor(-clamp, dtype=expect.dtype)), torch.tensor(clamp, dtype=expect.dtype))
    got = bias_act_reference(x, b, dim=dim, act=act, clamp=clamp)
    torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-12)
    # Explicit alpha/gain override the defaults.
    got2 = bias_act_reference(x, b, dim=dim, act=act, alpha=0.3, gain=0.5)
    torch.testing.assert_close(got2, FORMULAS[act](s, 0.3 if act == "lrelu" else alpha) * 0.5, rtol=1e-10, atol=1e-12)


def test_bias_act_without_bias_and_errors():
    x = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(bias_act_reference(x, act="relu", gain=1.0), x.clamp_min(0))
    with pytest.raises(ValueError, match="bias"):
        bias_act_reference(x, torch.zeros(4), dim=1)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act_reference(x, act="gelu")


# --------------------------------------------------------------------------------------------
# conv2d_resample


@pytest.mark.parametrize("padding", [0, 1, (1, 0, 2, 1)])
def test_conv2d_resample_up2_matches_upsample_then_convolve(padding):
    """Up path = zero-insert + FIR (gain 4), then a *true* convolution with ``w``: StyleGAN2's
    upsampling conv is a transposed convolution (``flip_weight=False`` in stylegan2-ada)."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    f = make_filter().double()
    px0, px1, py0, py1 = (padding,) * 4 if isinstance(padding, int) else padding
    pad = (px0 + 2, px1 + 1, py0 + 2, py1 + 1)  # (fw + up - 1) // 2, (fw - up) // 2 for fw=4, up=2
    expect = F.conv2d(naive_upfirdn2d_t(x, f, (2, 2), (1, 1), pad, 4.0), w.flip([2, 3]))
    got = conv2d_resample(x, w, f, up=2, padding=padding)
    torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padding", [0, 1, (1, 0, 2, 1)])
def test_conv2d_resample_down2_matches_filter_then_strided_conv(padding):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    f = make_filter().double()
    px0, px1, py0, py1 = (padding,) * 4 if isinstance(padding, int) else padding
    pad = (px0 + 1, px1 + 1, py0 + 1, py1 + 1)  # (fw - down + 1) // 2, (fw - down) // 2
    expect = F.conv2d(naive_upfirdn2d_t(x, f, (1, 1), (1, 1), pad, 1.0), w, stride=2)
    got = conv2d_resample(x, w, f, down=2, padding=padding)
    torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2)])
def test_conv2d_resample_1x1(up, down):
    torch.manual_seed(6)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    w = torch.randn(2, 3, 1, 1, dtype=torch.float64)
    f = make_filter().double()
    got = conv2d_resample(x, w, f, up=up, down=down)
    filt = upsample2d(x, f, up=2) if up > 1 else downsample2d(x, f, down=2)
    torch.testing.assert_close(got, F.conv2d(filt, w), rtol=1e-10, atol=1e-10)


def naive_upfirdn2d_t(x: torch.Tensor, f: torch.Tensor, up, down, pad, gain) -> torch.Tensor:
    return torch.from_numpy(naive_upfirdn2d(x.numpy(), f.numpy(), up, down, pad, False, gain).copy())


# --------------------------------------------------------------------------------------------
# modulated_conv2d


# Per-location styles are the render engine's (tests/render/test_engine.py checks them against
# this op); here the global form against StyleGAN2's own recipe: per-sample weights, grouped conv.


@pytest.mark.parametrize("padding", [1, 0])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modconv_equals_per_sample_modulated_weights(padding, demodulate):
    torch.manual_seed(7)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    s = torch.randn(2, 4, dtype=torch.float64) + 1.0
    wm = w[None] * s[:, None, :, None, None]  # [N, O, I, kh, kw]
    if demodulate:
        wm = wm * (wm.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    ref = F.conv2d(x.reshape(1, 8, 8, 8), wm.reshape(10, 4, 3, 3), padding=padding, groups=2)  # [1, N*O, H', W']
    ref = ref.reshape(2, 5, *ref.shape[2:])
    got = modulated_conv2d(x, w, s, padding=padding, demodulate=demodulate)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_modconv_takes_one_style_vector_per_sample():
    x, w = torch.randn(2, 4, 8, 8), torch.randn(5, 4, 3, 3)
    with pytest.raises(ValueError, match=r"must be \[N, I\]"):
        modulated_conv2d(x, w, torch.randn(2, 4, 8, 8))
