"""The render engine, the one implementation of per-location modulation.

Constant styles must give StyleGAN2's modulated convolution exactly (``ops.modulated_conv2d``,
through ``SynthesisLayer.forward_styles``); varying styles must follow the per-pixel formula of
NOTES section 2, computed here directly: ``y = conv(x * s, w) * rsqrt(sum_i s_i^2 sum_k w^2 + eps)``
with ``s`` gathered per pixel (``sample_cells``), not through the engine's weight matrices.
"""

from __future__ import annotations

import pytest
import torch

from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.errors import InputError
from spatial_latent.latents.window import Window
from spatial_latent.networks import Generator, SynthesisLayer
from spatial_latent.ops import bias_act, conv2d_resample
from spatial_latent.ops.modconv import DEMOD_EPS
from spatial_latent.render.engine import Render, WeightCache, check_memory
from spatial_latent.render.plan import LatentPatch, PaddingMode, double, valid_conv_out, valid_upconv_out
from spatial_latent.render.styles import sample_cells
from support import TINY_CONFIGS

# (block resolution, layer name): the 4x4 conv, an upsampling conv, a plain conv at 16 px
LAYERS = [(4, "conv1"), (8, "conv0"), (16, "conv1")]


@pytest.fixture(scope="module", params=["skip", "orig"])
def G(request: pytest.FixtureRequest) -> Generator:
    return random_generator(TINY_CONFIGS[request.param], seed=4)


def layer_of(G: Generator, res: int, name: str) -> tuple[SynthesisLayer, int]:
    """The layer and its ws row."""
    layer = getattr(getattr(G.synthesis, f"b{res}"), name)
    return layer, G.synthesis.noise_layers().index(layer)


def engine(G: Generator, latents: torch.Tensor, density: int, padding: PaddingMode, resample: str = "bilinear") -> Render:
    return Render(G, [LatentPatch(latents)], density, padding=padding, resample=resample, noise_mode="none")


def out_window(layer: SynthesisLayer, win: Window, padding: PaddingMode) -> Window:
    if padding.padding_free:
        return win.map(valid_upconv_out if layer.up > 1 else valid_conv_out)
    return win.map(double) if layer.up > 1 else win


def conv_padding(layer: SynthesisLayer, padding: PaddingMode) -> int:
    if padding.padding_free:
        return -1 if layer.up > 1 else 0
    return layer.padding


@torch.no_grad()
@pytest.mark.parametrize("padding", list(PaddingMode))
@pytest.mark.parametrize("res,name", LAYERS)
def test_constant_styles_equal_stylegan2_modulated_conv(G: Generator, res: int, name: str, padding: PaddingMode) -> None:
    layer, row = layer_of(G, res, name)
    gen = torch.Generator().manual_seed(res)
    w = torch.randn(2, G.num_ws, G.w_dim, generator=gen)
    latents = w[..., None, None].expand(-1, -1, -1, 3, 2)  # the same latent in every cell
    res_in = layer.resolution // layer.up
    win = Window(0, 0, res_in, 3 * res_in // 2)  # density 2: the canvas at res_in
    x = torch.randn(2, layer.in_channels, *win.size, generator=gen)
    got, out = engine(G, latents, 2, padding).conv(layer, row, x, win)
    assert out == out_window(layer, win, padding)
    ref = layer.forward_styles(x, layer.styles(w[:, row]), noise=None, padding=conv_padding(layer, padding))
    assert got.shape == ref.shape == (2, layer.out_channels, *out.size)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def per_pixel_reference(layer: SynthesisLayer, latents: torch.Tensor, row: int, density: int, x: torch.Tensor, win: Window, out: Window, padding: PaddingMode, mode: str) -> torch.Tensor:
    """NOTES section 2, pixel by pixel: latents gathered onto the input pixels, then the affine map."""
    res_in = layer.resolution // layer.up
    s = layer.styles(sample_cells(latents[:, row], density, res_in, win, mode))  # [N, I, *win.size]
    y = conv2d_resample(x * s, layer.weight, f=layer.resample_filter, up=layer.up, padding=conv_padding(layer, padding))
    wsq = layer.weight.square().sum(dim=[2, 3])
    d = (torch.einsum("oi,nihw->nohw", wsq, s.square()) + DEMOD_EPS).rsqrt()
    ys = torch.div(torch.arange(out.y0, out.y1), layer.up, rounding_mode="floor") - win.y0  # output pixel -> input pixel under it
    xs = torch.div(torch.arange(out.x0, out.x1), layer.up, rounding_mode="floor") - win.x0
    y = y * d[:, :, ys][..., xs]
    clamp = layer.conv_clamp
    return bias_act(y, layer.bias, act="lrelu", gain=layer.act_gain, clamp=clamp)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding", list(PaddingMode))
@pytest.mark.parametrize("density", [2, 8])  # finer and coarser than the 4x4 layers
@pytest.mark.parametrize("res,name", LAYERS)
def test_varying_styles_follow_the_per_pixel_formula(G: Generator, res: int, name: str, density: int, padding: PaddingMode, mode: str) -> None:
    layer, row = layer_of(G, res, name)
    gen = torch.Generator().manual_seed(7 * res + density)
    cells = (8, 12) if density == 8 else (3, 2)  # at least 4 pixels a side at 4x4: valid convs shrink it
    latents = torch.randn(2, G.num_ws, G.w_dim, *cells, generator=gen).requires_grad_()
    res_in = layer.resolution // layer.up
    win = Window(0, 0, cells[1] * res_in // density, cells[0] * res_in // density)
    x = torch.randn(2, layer.in_channels, *win.size, generator=gen).requires_grad_()
    got, out = engine(G, latents, density, padding, mode).conv(layer, row, x, win)
    ref = per_pixel_reference(layer, latents, row, density, x, win, out, padding, mode)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # gradients (what inversion and training follow) agree too
    probe = torch.randn(got.shape, generator=gen)
    g_got = torch.autograd.grad((got * probe).sum(), (latents, x))
    g_ref = torch.autograd.grad((ref * probe).sum(), (latents, x))
    for a, b in zip(g_got, g_ref):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_weight_cache_is_bounded_oldest_out() -> None:
    cache = WeightCache(max_bytes=800)
    cpu = torch.device("cpu")
    cache.put(("big",), torch.zeros(26))  # 104 bytes: more than an eighth of the budget, not kept
    assert cache.get(("big",), cpu) is None
    small = [torch.full((10,), float(i)) for i in range(25)]  # 40 bytes each, 1000 in all
    for i, t in enumerate(small):
        cache.put((i,), t)
    assert 760 <= cache.bytes <= 800
    assert cache.get((0,), cpu) is None  # the oldest went first
    assert torch.equal(cache.get((24,), cpu), small[24])
    assert cache.get((24,), torch.device("meta")) is None  # keyed by device too


def test_check_memory_refuses_before_any_work(G: Generator) -> None:
    check_memory(G, 1, Window(0, 0, 10, 10), max_pixels=100)
    with pytest.raises(InputError, match="TileSampler"):
        check_memory(G, 2, Window(0, 0, 10, 10), max_pixels=100)
