"""LatentField: deterministic per cell, correlated nearby, independent far away, stationary."""

from __future__ import annotations

import pytest
import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.field import LatentField
from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.latents.window import Window
from support import TINY_CONFIGS


@pytest.fixture(scope="module")
def G():
    return random_generator(TINY_CONFIGS["skip"])


def test_cells_depend_only_on_coordinates(G) -> None:
    f = LatentField(G, seed=4, correlation=2.5)
    big = f.cells(Window(-20, -10, 25, 30))
    small = f.cells(Window(0, 3, 7, 9))
    assert (big[..., 13:19, 20:27] - small).abs().max() < 1e-5
    assert torch.equal(f.cells(Window(0, 3, 7, 9)), small)
    assert (LatentField(G, seed=5, correlation=2.5).cells(Window(0, 3, 7, 9)) - small).abs().mean() > 1e-2


def test_z_is_correlated_nearby_and_independent_far_away(G) -> None:
    sigma = 3.0
    z = LatentField(G, seed=1, correlation=sigma).z(Window(0, 0, 160, 160), seed=1)
    assert abs(z.std().item() - 1) < 0.05 and abs(z.mean().item()) < 0.05

    def corr(d: int) -> float:
        return (z[:, :, d:] * z[:, :, :-d]).mean().item()

    # Gaussian-smoothed white noise has autocorrelation exp(-d^2 / (4 sigma^2)).
    for d in (1, 3, 6):
        expect = torch.exp(torch.tensor(-(d**2) / (4 * sigma**2))).item()
        assert abs(corr(d) - expect) < 0.08, (d, corr(d), expect)
    assert abs(corr(6 * int(sigma) + 1)) < 0.05
    white = LatentField(G, seed=1, correlation=0).z(Window(0, 0, 100, 100), seed=1)
    assert abs((white[:, :, 1:] * white[:, :, :-1]).mean().item()) < 0.03


def test_field_is_stationary(G) -> None:
    f = LatentField(G, seed=2, correlation=2)
    a, b = f.cells(Window(0, 0, 40, 40)), f.cells(Window(-9000, 5000, -8960, 5040))
    assert (a.mean() - b.mean()).abs() < 0.1 * a.std()
    assert abs(a.std().item() / b.std().item() - 1) < 0.1


def test_truncation_and_global_mix(G) -> None:
    win = Window(0, 0, 6, 6)
    f1 = LatentField(G, seed=3, correlation=1, truncation_psi=0.0).cells(win)
    assert torch.allclose(f1, G.mapping.w_avg[None, None, :, None, None].expand_as(f1), atol=1e-6)
    mixed = LatentField(G, seed=3, correlation=1, global_mix=1.0)
    cells = mixed.cells(win)
    assert torch.allclose(cells, mixed.global_w()[None, None, :, None, None].expand_as(cells), atol=1e-6)
    partial = LatentField(G, seed=3, correlation=1, global_mix=0.5, global_layers=[0, 1])
    c = partial.cells(win)
    plain = LatentField(G, seed=3, correlation=1).cells(win)
    assert c.shape[1] == G.num_ws and partial.space == "w+"
    assert torch.allclose(c[:, 5], plain[:, 0]) and not torch.allclose(c[:, 0], plain[:, 0])


def test_layout_paints_styles(G) -> None:
    layout = torch.zeros(20, 40, dtype=torch.int64)
    layout[:, 20:] = 1
    f = LatentField(G, seed=0, correlation=1.0, layout=layout, layout_seeds=[11, 22])
    cells = f.cells(Window(0, 0, 40, 20))
    left = LatentField(G, seed=11, correlation=1.0).cells(Window(0, 0, 40, 20))
    right = LatentField(G, seed=22, correlation=1.0).cells(Window(0, 0, 40, 20))
    assert (cells[..., :15] - left[..., :15]).abs().max() < 1e-4
    assert (cells[..., 25:] - right[..., 25:]).abs().max() < 1e-4
    seam = cells[..., 20]
    assert (seam - left[..., 20]).abs().mean() > 1e-3 and (seam - right[..., 20]).abs().mean() > 1e-3


def test_bad_field_options(G) -> None:
    with pytest.raises(InputError, match="correlation must be >= 0 cells, got -1"):
        LatentField(G, correlation=-1)
    with pytest.raises(InputError, match=r"global_mix must be in \[0, 1\], got 2"):
        LatentField(G, global_mix=2)
    with pytest.raises(InputError, match=r"layout has labels 0\.\.2; give one seed per label"):
        LatentField(G, layout=torch.zeros(3, 3, dtype=torch.int64) + 2, layout_seeds=[1])
    with pytest.raises(InputError, match="conditional"):
        LatentField(G, class_idx=1)
