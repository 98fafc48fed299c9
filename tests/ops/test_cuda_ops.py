"""CUDA kernels vs the reference ops (forward, backward, double backward). Needs a GPU.

The reference is evaluated in float64 and cast, so the comparison measures the kernel's error
and not cuDNN's (which may use TF32 for float32 convolutions).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from spatial_latent.ops import (
    bias_act,
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
from spatial_latent.ops import activation as bias_act_mod  # the modules defining the two ops
from spatial_latent.ops import fir as upfirdn2d_mod
from spatial_latent.ops.cuda_build import ENV_DISABLE

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


DEV = "cuda"
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3), torch.float64: dict(rtol=1e-10, atol=1e-10)}


@pytest.fixture(autouse=True)
def _kernels_enabled(monkeypatch):
    monkeypatch.delenv(ENV_DISABLE, raising=False)


def test_extensions_build_and_load():
    """Fails loudly (instead of silently comparing the reference with itself) if a build breaks."""
    for mod in (upfirdn2d_mod, bias_act_mod):
        assert mod._loader.get() is not None, mod._loader.failure_reason


# --------------------------------------------------------------------------------------------
# upfirdn2d

UPFIRDN_CASES = [
    # up, down, padding (x0, x1, y0, y1), filter shape ((k,) = separable), flip, gain
    ((1, 1), (1, 1), (0, 0, 0, 0), (3, 3), False, 1.0),
    ((2, 2), (1, 1), (2, 1, 2, 1), (4, 4), False, 4.0),
    ((2, 2), (1, 1), (2, 1, 2, 1), (4,), False, 4.0),
    ((4, 4), (1, 1), (3, 2, 3, 2), (4, 4), True, 16.0),
    ((1, 1), (2, 2), (1, 1, 1, 1), (4, 4), False, 1.0),
    ((1, 1), (2, 2), (1, 1, 1, 1), (4,), True, 1.0),
    ((2, 2), (2, 2), (1, 2, 0, 3), (3, 2), True, 2.0),
    ((1, 1), (1, 1), (-1, -2, 2, -1), (2, 3), False, 0.5),
    ((2, 1), (1, 2), (3, -2, -1, 4), (3, 4), True, 1.5),
    ((4, 2), (2, 1), (-3, 0, 1, -2), (5, 2), False, 1.0),
    ((1, 4), (2, 2), (0, 0, -4, 3), (1, 6), True, 3.0),
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False, 1.0),
]
SHAPES = [(2, 3, 5, 6), (1, 4, 17, 9), (3, 70, 4, 4)]


def _fits(shape, up, pad, fshape) -> bool:
    """Whether the filter fits into the padded input (else both implementations reject it)."""
    (upx, upy), (px0, px1, py0, py1) = up, pad
    fh, fw = (fshape[0], fshape[-1])
    return shape[2] * upy + py0 + py1 >= fh and shape[3] * upx + px0 + px1 >= fw


def _ref_up(x, f, **kw):
    return upfirdn2d_reference(x.double(), f.double(), **kw).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("up,down,pad,fshape,flip,gain", UPFIRDN_CASES)
def test_upfirdn2d_forward_backward(up, down, pad, fshape, flip, gain, dtype):
    torch.manual_seed(0)
    for shape in SHAPES:
        if not _fits(shape, up, pad, fshape):
            continue
        x = torch.randn(shape, device=DEV, dtype=dtype, requires_grad=True)
        f = torch.rand(fshape, device=DEV) + 0.1
        kw = dict(up=up, down=down, padding=pad, flip_filter=flip, gain=gain)
        y = upfirdn2d(x, f, impl="cuda", **kw)
        xr = x.detach().double().requires_grad_()
        yr = upfirdn2d_reference(xr, f.double(), **kw)
        assert y.shape == yr.shape and y.dtype == dtype
        torch.testing.assert_close(y, yr.to(dtype), **TOL[dtype])
        dy = torch.randn_like(y)
        (dx,) = torch.autograd.grad(y, x, dy)
        (dxr,) = torch.autograd.grad(yr, xr, dy.double())
        torch.testing.assert_close(dx, dxr.to(dtype), **TOL[dtype])


@pytest.mark.parametrize("up,down,pad,fshape,flip,gain", UPFIRDN_CASES[:8])
def test_upfirdn2d_gradcheck(up, down, pad, fshape, flip, gain):
    torch.manual_seed(1)
    x = torch.randn(1, 2, 6, 7, device=DEV, dtype=torch.float64, requires_grad=True)
    assert _fits(x.shape, up, pad, fshape)
    f = torch.rand(fshape, device=DEV, dtype=torch.float64) + 0.1

    def fn(x):
        return upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl="cuda")

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_upfirdn2d_realistic_shapes_and_auto_dispatch():
    torch.manual_seed(2)
    f = make_filter(device=DEV)
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(4, 512, 32, 32, device=DEV, dtype=dtype)
        y = upsample2d(x, f)
        torch.testing.assert_close(y, upsample2d(x.double(), f.double(), impl="ref").to(dtype), **TOL[dtype])
        z = downsample2d(x, f)
        torch.testing.assert_close(z, downsample2d(x.double(), f.double(), impl="ref").to(dtype), **TOL[dtype])


def test_upfirdn2d_auto_uses_kernel_and_noncontiguous_input():
    x = torch.randn(2, 8, 12, 10, device=DEV).transpose(2, 3).requires_grad_()
    f = make_filter(device=DEV)
    y = upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4)
    assert "Upfirdn2dCuda" in type(y.grad_fn).__name__
    torch.testing.assert_close(y, _ref_up(x.detach(), f, up=2, padding=(2, 1, 2, 1), gain=4), **TOL[torch.float32])


def test_upfirdn2d_filter_with_grad_uses_reference():
    x = torch.randn(1, 2, 8, 8, device=DEV)
    f = make_filter(device=DEV).requires_grad_()
    y = upfirdn2d(x, f, down=2, padding=1)
    y.sum().backward()
    assert f.grad is not None
    with pytest.raises(RuntimeError, match="filter"):
        upfirdn2d(x, f, down=2, padding=1, impl="cuda")


def test_upfirdn2d_filter_larger_than_input_raises():
    with pytest.raises(ValueError, match="larger than the padded input"):
        upfirdn2d(torch.zeros(1, 1, 2, 2, device=DEV), torch.ones(4, 4, device=DEV), impl="cuda")


# --------------------------------------------------------------------------------------------
# bias_act


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("dim,clamp,use_bias", [(1, None, True), (2, 0.7, True), (0, 256.0, True), (1, None, False)])
def test_bias_act_forward_backward(act, dtype, dim, clamp, use_bias):
    torch.manual_seed(3)
    x = (torch.randn(6, 37, 9, 5, device=DEV) * 3).to(dtype).requires_grad_()
    b = torch.randn(x.shape[dim], device=DEV, dtype=dtype).requires_grad_() if use_bias else None
    y = bias_act(x, b, dim=dim, act=act, clamp=clamp, impl="cuda")
    xr = x.detach().double().requires_grad_()
    br = b.detach().double().requires_grad_() if use_bias else None
    yr = bias_act_reference(xr, br, dim=dim, act=act, clamp=clamp)
    torch.testing.assert_close(y, yr.to(dtype), **TOL[dtype])
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, b] if use_bias else [x], dy)
    grads_r = torch.autograd.grad(yr, [xr, br] if use_bias else [xr], dy.double())
    for g, gr in zip(grads, grads_r):
        # db sums thousands of terms: compare it relative to its own magnitude.
        tol = TOL[dtype] if g.shape == x.shape else dict(rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10 * gr.abs().max().item())
        torch.testing.assert_close(g, gr.to(dtype), **tol)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_gradcheck(act):
    torch.manual_seed(4)
    x = torch.randn(2, 3, 4, device=DEV, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, device=DEV, dtype=torch.float64, requires_grad=True)

    def fn(x, b):
        return bias_act(x, b, dim=1, act=act, alpha=0.3, gain=1.3, clamp=1.5, impl="cuda")

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_alpha_gain_and_noncontiguous():
    x = torch.randn(5, 8, 7, device=DEV).transpose(1, 2)
    b = torch.randn(7, device=DEV)
    y = bias_act(x, b, dim=1, act="lrelu", alpha=0.05, gain=0.7)
    assert "BiasActCuda" in type(y.grad_fn).__name__ or not y.requires_grad
    torch.testing.assert_close(y, bias_act_reference(x.double(), b.double(), dim=1, act="lrelu", alpha=0.05, gain=0.7).float(), **TOL[torch.float32])


# --------------------------------------------------------------------------------------------
# higher-level ops and switches


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
def test_conv2d_resample_and_modconv_auto_vs_ref(up, down):
    torch.manual_seed(5)
    x = torch.randn(2, 16, 16, 16, device=DEV)
    w = torch.randn(8, 16, 3, 3, device=DEV)
    f = make_filter(device=DEV)
    a = conv2d_resample(x.double(), w.double(), f.double(), up=up, down=down, padding=1, impl="auto")
    r = conv2d_resample(x.double(), w.double(), f.double(), up=up, down=down, padding=1, impl="ref")
    torch.testing.assert_close(a, r, **TOL[torch.float64])
    if down == 1:
        s = torch.randn(2, 16, device=DEV) + 1
        a = modulated_conv2d(x.double(), w.double(), s.double(), up=up, padding=1, resample_filter=f.double())
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(ENV_DISABLE, "1")
            r = modulated_conv2d(x.double(), w.double(), s.double(), up=up, padding=1, resample_filter=f.double())
        torch.testing.assert_close(a, r, **TOL[torch.float64])


def test_env_var_switches_to_reference(monkeypatch):
    monkeypatch.setenv(ENV_DISABLE, "1")
    x = torch.randn(1, 2, 8, 8, device=DEV, requires_grad=True)
    y = upfirdn2d(x, make_filter(device=DEV), down=2, padding=1)
    assert "Upfirdn2dCuda" not in type(y.grad_fn).__name__
    z = bias_act(x, act="relu")
    assert "BiasActCuda" not in type(z.grad_fn).__name__
    for call in (lambda: upfirdn2d(x, None, impl="cuda"), lambda: bias_act(x, impl="cuda")):
        with pytest.raises(RuntimeError, match=ENV_DISABLE):
            call()


def test_bfloat16_falls_back_under_auto():
    x = torch.randn(1, 2, 8, 8, device=DEV, dtype=torch.bfloat16)
    torch.testing.assert_close(bias_act(x, act="lrelu"), bias_act_reference(x, act="lrelu"))
    with pytest.raises(RuntimeError, match="dtype"):
        upfirdn2d(x, None, impl="cuda")


def test_kernels_run_on_a_second_stream_and_device_guard():
    s = torch.cuda.Stream()
    x = torch.randn(2, 4, 16, 16, device=DEV)
    f = make_filter(device=DEV)
    with torch.cuda.stream(s):
        y = upsample2d(x, f)
        z = bias_act(y, None, act="lrelu")
    torch.cuda.current_stream().wait_stream(s)
    torch.testing.assert_close(z, bias_act_reference(upsample2d(x.double(), f.double(), impl="ref"), act="lrelu").float(), **TOL[torch.float32])


def test_all_combinations_of_small_up_down_against_reference():
    """A sweep over up/down/padding on one small tensor (cheap, catches index-math slips)."""
    torch.manual_seed(6)
    x = torch.randn(1, 3, 7, 6, device=DEV, dtype=torch.float64)
    f = torch.rand(3, 4, device=DEV, dtype=torch.float64)
    for up, down, p0, p1, flip in itertools.product((1, 2, 3), (1, 2, 3), (-2, 0, 3), (-1, 2), (False, True)):
        if not _fits(x.shape, (up, up), (p0, p1, p1, p0), f.shape):
            continue
        kw = dict(up=up, down=down, padding=(p0, p1, p1, p0), flip_filter=flip, gain=1.3)
        torch.testing.assert_close(upfirdn2d(x, f, impl="cuda", **kw), upfirdn2d_reference(x, f, **kw), **TOL[torch.float64])
