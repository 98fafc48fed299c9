"""The window plan: span arithmetic against the ops it describes, plans, cells needed, crops."""

from __future__ import annotations

import pytest
import torch

from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.latents.window import Window
from spatial_latent.networks import Generator
from spatial_latent.ops import conv2d_resample, make_filter, upsample2d
from spatial_latent.render.plan import (
    VALID_UPFIR_PADDING,
    PaddingMode,
    cells_needed,
    crop,
    plan_blocks,
    receptive_margin,
    same_size_plan,
    upconv_in,
    upfir_in,
    valid_conv_out,
    valid_upconv_out,
    valid_upfir_out,
)
from support import TINY_CONFIGS


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def G(request: pytest.FixtureRequest) -> Generator:
    return random_generator(TINY_CONFIGS[request.param], seed=1)


@pytest.mark.parametrize("span", [(0, 6), (-3, 4), (5, 17)])
def test_valid_spans_match_the_output_sizes_of_the_ops(span: tuple[int, int]) -> None:
    n = span[1] - span[0]
    x = torch.randn(1, 2, n, n)
    f = make_filter()
    w = torch.randn(3, 2, 3, 3)
    size = lambda s: s[1] - s[0]  # noqa: E731
    assert conv2d_resample(x, w, padding=0).shape[-1] == size(valid_conv_out(span))
    assert conv2d_resample(x, w, f=f, up=2, padding=-1).shape[-1] == size(valid_upconv_out(span))
    assert upsample2d(x, f, padding=VALID_UPFIR_PADDING).shape[-1] == size(valid_upfir_out(span))
    # the input spans asked for by the backward pass cover what each op needs for its output
    for s_out, s_in, forward in [(span, upconv_in(span), valid_upconv_out), (span, upfir_in(span), valid_upfir_out)]:
        got = forward(s_in)
        assert got[0] <= s_out[0] and s_out[1] <= got[1]


def test_plan_ends_at_the_requested_window_and_nests(G: Generator) -> None:
    out = Window(3, -5, 30, 11)
    plans = plan_blocks(G, out)
    assert len(plans) == len(G.synthesis.blocks())
    assert plans[-1].img == out and plans[-1].x_out.contains(out)
    for block, p in zip(G.synthesis.blocks(), plans):
        assert p.mid.contains(p.x_out)  # conv1 is valid: its input window carries a margin
        if block.num_torgb:
            assert p.x_out.contains(p.img)


def test_same_size_plan_covers_whole_canvases(G: Generator) -> None:
    R = G.img_resolution
    plans = same_size_plan(G, (2 * R, 3 * R))
    for block, p in zip(G.synthesis.blocks(), plans):
        r = block.resolution
        assert p.x_out == Window(0, 0, 3 * r, 2 * r)
        assert p.x_in == (p.x_out if r == 4 else Window(0, 0, 3 * r // 2, r))


def test_cells_needed_and_margin_grow_with_the_window(G: Generator) -> None:
    R = G.img_resolution
    small = cells_needed(G, Window(0, 0, R, R), 4)
    big = cells_needed(G, Window(0, -R, 3 * R, 2 * R), 4)
    assert big.contains(small) and big.size[0] > small.size[0]
    # a one-pixel render reads the 4x4 level at least two 3x3 convs (the 4x4 block's) around it
    assert receptive_margin(G) >= 2


def test_crop() -> None:
    t = torch.arange(30.0).view(5, 6)
    have = Window(-2, 10, 4, 15)
    assert crop(t, have, have) is t
    assert torch.equal(crop(t, have, Window(0, 11, 3, 13)), t[1:3, 2:5])
    with pytest.raises(AssertionError, match="not inside"):
        crop(t, have, Window(0, 9, 1, 12))


def test_padding_mode_values() -> None:
    assert PaddingMode.of("none") is PaddingMode.NONE and PaddingMode.of(PaddingMode.ZERO) is PaddingMode.ZERO
    assert [m.value for m in PaddingMode] == ["zero", "none"]
