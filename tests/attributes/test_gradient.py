"""Gradient directions (attributes.gradient): per location by construction, scaled to the data,
held-out agreement; resampling a direction to other densities and placing it on a composition."""

from __future__ import annotations

import pytest
import torch

from attributes.direction import Direction
from attributes.edits import edit
from attributes.gradient import fit_gradient
from attributes.labelers import RegionLabeler, pixel_stat
from attributes.sampling import sample_grids
from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.render.generator import SpatialGenerator
from tests.support import TINY_CONFIGS


@pytest.fixture(scope="module")
def G():
    G = random_generator(TINY_CONFIGS["skip"], seed=0)
    for name, m in G.named_modules():  # unsaturated brightness (as bench/attributes.py)
        if name.endswith("torgb"):
            m.weight.data *= 0.1
            m.bias.data.zero_()
    return G


def test_left_brightness_lives_on_the_left(G) -> None:
    d = fit_gradient(G, RegionLabeler("brightness", (0, 0, 0.5, 1)), 48, cells=(4, 4), density=4, batch_size=16, cell_mix=0.5)
    assert d.vectors.shape == (1, G.w_dim, 4, 4) and d.meta["method"] == "gradient" and d.metric == "agreement"
    step = d.vectors[0].norm(dim=0)  # [4, 4]
    assert step[:, :2].mean() > 3 * step[:, 3:].mean()  # the far right column barely matters
    assert float(d.held_out[0, :, :2].mean()) > 0.8  # held-out gradients agree where it lives
    # strength 1 = one standard deviation of the samples along the strongest cell's step
    lat = sample_grids(G, 48, (4, 4), 4, cell_mix=0.5).data[:, 0]
    k = int(step.flatten().argmax())
    unit = d.vectors[0].flatten(1)[:, k] / step.flatten()[k]
    assert float((lat.flatten(2)[:, :, k] @ unit).std()) == pytest.approx(float(step.flatten()[k]), rel=1e-4)
    # and the edit does what the labeler measures
    test = sample_grids(G, 8, (4, 4), 4, cell_mix=0.5, seed=9)
    sg = SpatialGenerator(G)
    with torch.no_grad():
        b0, b1 = (pixel_stat(sg(g), "brightness") for g in (test, edit(test, d, 2.0)))
    W = b0.shape[-1]
    assert (b1 - b0)[..., : W // 2].mean() > 2 * (b1 - b0)[..., 3 * W // 4 :].abs().mean()


def test_shared_and_refusals(G) -> None:
    flags = [p.requires_grad for p in G.parameters()]
    d = fit_gradient(G, RegionLabeler("brightness"), 16, cells=(2, 2), density=2, batch_size=8, locations="shared", val_fraction=0)
    assert d.vectors.shape == (1, G.w_dim, 1, 1) and d.held_out is None
    with pytest.raises(InputError, match="not differentiable"):
        fit_gradient(G, lambda x: torch.ones(x.shape[0]), 8, cells=(2, 2), density=2)
    with pytest.raises(InputError, match=r"\[B\]"):
        fit_gradient(G, lambda x: x.mean(dim=1), 8, cells=(2, 2), density=2)
    with pytest.raises(InputError, match="locations"):
        fit_gradient(G, RegionLabeler("brightness"), 8, locations="joint")
    assert [p.requires_grad for p in G.parameters()] == flags  # the generator is left as it was


def test_direction_resampled_to_another_density_and_placed() -> None:
    v = torch.zeros(1, 4, 2, 2)
    v[0, :, 0, 0] = 1.0  # a step in the top-left cell only
    d = Direction("x", v, density=2, held_out=torch.ones(1, 2, 2), metric="accuracy")
    fine = LatentGrid(torch.zeros(1, 1, 4, 4, 4), space="w", density=4)  # same image, 4x4 cells
    r = d.for_grid(fine)
    assert r.vectors.shape == (1, 4, 4, 4) and r.density == 4 and r.held_out.shape == (1, 4, 4)
    assert r.vectors[0, 0, 0, 0] == 1.0 and r.vectors[0, 0, 3, 3] == 0.0  # the step keeps its place
    assert torch.allclose(edit(fine, d, 1.0).data[0, 0, 0], r.vectors[0, 0])
    coarse = LatentGrid(torch.zeros(1, 1, 4, 1, 1), space="w", density=1)
    assert float(d.for_grid(coarse).vectors[0, 0]) == pytest.approx(0.25)  # area average
    with pytest.raises(InputError, match="fitted per location"):
        d.for_grid(LatentGrid(torch.zeros(1, 1, 4, 3, 3), space="w", density=2))  # another image area
    p = d.placed((2, 4), (0, 2))
    assert p.vectors.shape == (1, 4, 2, 4) and p.vectors[0, 0, 0, 2] == 1.0 and p.vectors[0, :, :, :2].abs().sum() == 0
    with pytest.raises(InputError, match="does not fit"):
        d.placed((2, 4), (1, 0))
