"""A constant LatentGrid through SpatialGenerator reproduces the original code's images.

Compared directly with the reference outputs in ../shared/fixtures/stylegan2 (every fixture
generator: rosinality, NVIDIA skip, NVIDIA conditional resnet, TensorFlow).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_latent.latents.grid import LatentGrid
from spatial_latent.checkpoints.loading import load_generator
from spatial_latent.render.generator import SpatialGenerator
from support import FIXTURE_SETS, fixture_set_dir


@torch.no_grad()
@pytest.mark.parametrize("name", sorted(FIXTURE_SETS))
def test_constant_grid_matches_reference_images(name: str) -> None:
    d = fixture_set_dir(name)
    G = load_generator(d / FIXTURE_SETS[name][0])
    ws_mixed = torch.from_numpy(np.load(d / "ws_mixed.npy"))  # a different w per layer
    expect = torch.from_numpy(np.load(d / "img_from_ws_mixed.npy"))
    for density, resample in [(1, "bilinear"), (4, "nearest"), (8, "bilinear")]:
        grid = LatentGrid.from_w(ws_mixed, cells=(density, density), density=density)
        out = SpatialGenerator(G, resample=resample)(grid, noise_mode="const")
        assert (out - expect).abs().max().item() <= 1e-4, (density, resample)
