"""copy_and_settle: the copied cells, refined so the grid draws the copy at its new place."""

from __future__ import annotations

import pytest
import torch

from encoders.settle import copy_and_settle, pasted_target
from spatial_latent.checkpoints.loading import load_generator
from spatial_latent.errors import InputError
from spatial_latent.latents.compose import copy_cells
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.render.generator import SpatialGenerator


def test_pasted_target_moves_the_pixels_with_a_soft_edge() -> None:
    img = torch.zeros(1, 3, 32, 32)
    img[..., 4:16, 0:12] = 1.0  # cell (2, 1) of a 4-px grid and a cell around it
    out = pasted_target(img, (1, 2, 2, 3), (5, 5), cell_px=4)
    assert out[..., 20:24, 20:24].min() > 0.99  # the core lands fully at cell (5, 5)
    assert torch.equal(out[..., :16, :], img[..., :16, :])  # the source stays
    assert 0 < float(out[0, 0, 22, 17]) < 1  # feathered margin
    with pytest.raises(InputError, match="outside"):
        pasted_target(img, (0, 0, 1, 1), (5, 5), cell_px=4)  # a margin left of the picture


def test_settling_draws_the_copy_and_leaves_the_rest() -> None:
    G = load_generator("tiny")  # 32 px
    sg = SpatialGenerator(G, padding="zero")
    torch.manual_seed(0)
    grid = LatentGrid(G.mapping.w_avg.view(1, 1, -1, 1, 1) + torch.randn(1, 1, G.w_dim, 8, 8) * 0.8, space="w", density=8)
    src, dst = (1, 1, 3, 3), (4, 4)
    plain, none = copy_and_settle(G, grid, src, dst, steps=0)
    assert none is None and torch.equal(plain.data, copy_cells(grid, src, dst, feather=1.0).data)
    settled, inv = copy_and_settle(G, grid, src, dst, steps=60)
    assert settled.meta["settled_steps"] == 60 and len(settled.noise_maps()) > 0
    with torch.no_grad():
        image = sg(grid)
        target = pasted_target(image, src, dst, cell_px=4)
        got = sg(settled, noise=settled.noise_maps())
        copy = sg(plain)
    region = (..., slice(12, 24), slice(12, 24))
    err_copy = float((copy - target)[region].square().mean())
    err_settled = float((got - target)[region].square().mean())
    assert err_settled < 0.5 * err_copy  # the grid now draws the copied content there
    far = (got - image)[..., :8, 24:].abs().mean()  # a corner away from the destination
    assert far < 0.5 * (got - image)[region].abs().mean()
    with pytest.raises(InputError, match="one grid"):
        copy_and_settle(G, LatentGrid(grid.data.expand(2, -1, -1, -1, -1), space="w", density=8), src, dst)
