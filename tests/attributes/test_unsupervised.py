"""Unsupervised directions: per-location PCA recovers planted axes with aligned signs; SeFa equals
the eigenvectors of the stacked affine weights and uses the right ws rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attributes.unsupervised import modulated_layers, pca_directions, sefa_directions, sefa_matrix
from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.checkpoints.loading import random_generator
from support import TINY_CONFIGS


def test_pca_per_cell_recovers_the_dominant_axis_and_its_spread() -> None:
    gen = torch.Generator().manual_seed(0)
    n, C, h, w = 2000, 6, 2, 2
    axes = torch.nn.functional.normalize(torch.randn(C, h, w, generator=gen), dim=0)
    x = 0.2 * torch.randn(n, 1, C, h, w, generator=gen) + 3.0 * torch.randn(n, 1, 1, h, w, generator=gen) * axes
    dirs = pca_directions(LatentGrid(x, space="w", density=2), num_components=2)
    assert [d.name for d in dirs] == ["pca0", "pca1"] and dirs[0].metric == "explained_variance"
    v = dirs[0].vectors[0]  # [C, h, w]
    for i in range(h):
        for j in range(w):
            c = torch.nn.functional.cosine_similarity(v[:, i, j], axes[:, i, j], dim=0)
            assert abs(float(c)) > 0.999
            assert abs(float(v[:, i, j].norm()) - 3.0) < 0.2  # one standard deviation along it
    expected = 9.0 / (9.0 + C * 0.04)
    assert torch.allclose(dirs[0].held_out, torch.full_like(dirs[0].held_out, expected), atol=0.02)


def test_pca_signs_agree_across_cells() -> None:
    gen = torch.Generator().manual_seed(1)
    axis = torch.nn.functional.normalize(torch.randn(5, generator=gen), dim=0)
    x = 0.1 * torch.randn(500, 1, 5, 3, 3, generator=gen) + 2 * torch.randn(500, 1, 1, 3, 3, generator=gen) * axis[:, None, None]
    v = pca_directions(LatentGrid(x, space="w", density=3), 1)[0].vectors[0]  # [5, 3, 3]
    dots = torch.einsum("chw,c->hw", v, axis)
    assert (dots > 0).all() or (dots < 0).all()  # eigh alone picks a sign per cell at random


def test_pca_shared_is_global() -> None:
    x = torch.randn(100, 1, 4, 2, 2)
    d = pca_directions(LatentGrid(x, space="w", density=2), 1, per_location=False)[0]
    assert d.is_global and d.vectors.shape == (1, 4, 1, 1)
    with pytest.raises(InputError, match="num_components"):
        pca_directions(LatentGrid(x, space="w", density=2), 5)


@pytest.fixture(scope="module")
def G():
    return random_generator(TINY_CONFIGS["skip"], seed=3)


def test_modulated_layers_read_the_ws_row_synthesis_gives_them(G) -> None:
    # Give ws row r the constant value r, run the ordinary synthesis and record what each
    # affine layer receives: that must be the row modulated_layers names.
    seen = {}
    hooks = [layer.affine.register_forward_hook(lambda m, inp, out, name=name: seen.__setitem__(name, inp[0].mean().item())) for _, name, layer in modulated_layers(G)]
    ws = torch.arange(G.num_ws, dtype=torch.float32)[None, :, None].expand(1, -1, G.w_dim)
    with torch.no_grad():
        G.synthesis(ws.contiguous())
    for h in hooks:
        h.remove()
    rows = {name: r for r, name, _ in modulated_layers(G)}
    assert seen and all(abs(seen[name] - rows[name]) < 1e-6 for name in rows)


def test_sefa_equals_eigenvectors_of_the_stacked_affine_weights(G) -> None:
    # Independent path: every conv affine weight from the state dict, times 1/sqrt(in).
    sd = G.state_dict()
    mats = [sd[k].double().numpy() / math.sqrt(sd[k].shape[1]) for k in sd if k.endswith("affine.weight") and "torgb" not in k]
    a = np.concatenate(mats)
    val, vec = np.linalg.eigh(a.T @ a)
    dirs = sefa_directions(G, 3, scale_samples=0)
    for k, d in enumerate(dirs):
        v = d.vectors[0, :, 0, 0].double().numpy()
        assert abs(abs(v @ vec[:, -1 - k]) - 1) < 1e-6  # unit length and the k-th eigenvector
        assert v[np.abs(v).argmax()] > 0  # sign fixed
        assert d.is_global and d.space == "w" and d.meta["eigenvalue"] == pytest.approx(val[-1 - k], rel=1e-6)
    # The first direction changes the styles more than any random direction does.
    top = np.linalg.norm(a @ dirs[0].vectors[0, :, 0, 0].double().numpy())
    rand = np.random.default_rng(0).normal(size=(200, G.w_dim))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    assert top > np.linalg.norm(rand @ a.T, axis=1).max()


def test_sefa_layers_confine_the_direction(G) -> None:
    d = sefa_directions(G, 1, layers=[0, 1], scale_samples=500)[0]
    assert d.space == "w+" and d.vectors.shape == (G.num_ws, G.w_dim, 1, 1)
    assert d.vectors[2:].abs().max() == 0 and d.vectors[:2].norm() > 0
    assert torch.equal(d.vectors[0], d.vectors[1])
    # Scaled to one standard deviation of mapped latents along it.
    w = G.mapping(torch.randn(4000, G.z_dim, generator=torch.Generator().manual_seed(9)))
    u = d.vectors[0, :, 0, 0]
    assert abs(float((w @ (u / u.norm())).std()) / float(u.norm()) - 1) < 0.1
    # Row 0 is the 4x4 conv alone (its toRGB shares row 1 and is left out by default).
    assert sefa_matrix(G, [0]).shape == (G.synthesis.b4.conv1.in_channels, G.w_dim)
    assert sefa_matrix(G, [1], include_torgb=True).shape[0] == G.synthesis.b8.conv0.in_channels + G.synthesis.b4.torgb.affine.out_features
    with pytest.raises(InputError, match="do not exist"):
        sefa_directions(G, 1, layers=[G.num_ws + 3])
