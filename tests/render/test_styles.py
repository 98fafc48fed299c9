"""Style resampling: window independence, and the render's weight matrices against the gather."""

from __future__ import annotations

import pytest
import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.window import Window
from spatial_latent.render.styles import axis_weights, pair_products, resample_cells, sample_cells


def test_sample_cells_is_window_independent() -> None:
    cells = torch.randn(1, 3, 5, 7)
    for res, density in [(16, 4), (4, 16), (8, 8), (2, 4)]:
        for mode in ("nearest", "bilinear"):
            full = sample_cells(cells, density, res, Window(-2, -3, 40, 30), mode)
            part = sample_cells(cells, density, res, Window(9, 4, 20, 11), mode)
            assert torch.equal(full[..., 7:14, 11:22], part)


def test_sample_cells_by_hand() -> None:
    # One row of 3 cells, 2 pixels per cell: pixel centres sit at cell units 0.25, 0.75, 1.25, ...
    cells = torch.tensor([[[[0.0, 4.0, 8.0]]]])
    near = sample_cells(cells, 1, 2, Window(0, 0, 6, 1), "nearest")
    assert near.flatten().tolist() == [0, 0, 4, 4, 8, 8]
    lin = sample_cells(cells, 1, 2, Window(0, 0, 6, 1), "bilinear")
    assert lin.flatten().tolist() == [0, 1, 3, 5, 7, 8]  # edge pixels clamp to the edge cell
    coarse = sample_cells(torch.tensor([[[[1.0, 3.0, 5.0, 7.0]]]]), 4, 2, Window(0, 0, 2, 1), "bilinear")
    assert coarse.flatten().tolist() == [2, 6]  # a coarse pixel averages the cells it covers


def test_strict_sampling_refuses_cells_outside_the_patch() -> None:
    cells = torch.randn(1, 2, 3, 3)
    with pytest.raises(AssertionError, match="does not cover"):
        sample_cells(cells, 1, 1, Window(0, 0, 4, 3), "nearest", strict=True)
    with pytest.raises(InputError, match="not a multiple"):
        sample_cells(cells, 3, 2, Window(0, 0, 1, 1))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_matrix_resampling_equals_sample_cells_and_squares(mode: str) -> None:
    # The render resamples with dense weight matrices; styles must equal sample_cells, and the
    # demodulation sum from pair products must equal the sum of the squared style map.
    gen = torch.Generator().manual_seed(3)
    cells = torch.randn(2, 5, 3, 4, generator=gen)
    wsq = torch.rand(6, 5, generator=gen)
    for res, density, win, origin in [(16, 4, Window(-3, -5, 21, 19), (0, 0)), (8, 2, Window(0, 3, 14, 9), (1, -2)), (4, 8, Window(-1, 0, 3, 2), (0, 0))]:
        def w(axis: int, span: tuple[int, int], up: int = 1, pairs: bool = False) -> torch.Tensor | None:
            pix = torch.div(torch.arange(*span), up, rounding_mode="floor")[None]
            return axis_weights(density, res, pix, mode, torch.tensor([origin[axis]]), cells.shape[2 + axis], pairs=pairs)

        s = resample_cells(cells, w(0, (win.y0, win.y1)), w(1, (win.x0, win.x1)))
        ref = sample_cells(cells, density, res, win, mode, origin)
        assert (s - ref).abs().max() <= 1e-5
        direct = torch.einsum("oi,nihw->nohw", wsq, ref.square())
        qy = w(0, (win.y0, win.y1), pairs=True)
        if res < density:
            assert qy is None  # coarse layers square the (small) style map directly
            continue
        pair_sum = resample_cells(torch.einsum("oi,nihw->nohw", wsq, pair_products(cells)), qy, w(1, (win.x0, win.x1), pairs=True))
        assert (pair_sum - direct).abs().max() <= 1e-4 * direct.abs().max()
        # upsampling layers: output pixel Y reads input pixel floor(Y / 2)
        up = Window(2 * win.x0, 2 * win.y0 + 1, 2 * win.x1, 2 * win.y1 - 1)
        pair_up = resample_cells(torch.einsum("oi,nihw->nohw", wsq, pair_products(cells)), w(0, (up.y0, up.y1), 2, True), w(1, (up.x0, up.x1), 2, True))
        ys = torch.div(torch.arange(up.y0, up.y1), 2, rounding_mode="floor") - win.y0
        xs = torch.div(torch.arange(up.x0, up.x1), 2, rounding_mode="floor") - win.x0
        assert (pair_up - direct[:, :, ys][..., xs]).abs().max() <= 1e-4 * direct.abs().max()


def test_pair_products_by_hand() -> None:
    s = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    p = pair_products(s)[0, 0]
    assert p.shape == (3, 3)
    assert p[0::2, 0::2].flatten().tolist() == [1, 4, 9, 25]  # squares at even entries
    assert p[0, 1] == 2 and p[2, 1] == 15  # horizontal neighbours
    assert p[1, 0] == 3 and p[1, 2] == 10  # vertical neighbours
    assert p[1, 1] == 0.5 * (1 * 5 + 2 * 3)  # diagonal pairs, symmetrised
