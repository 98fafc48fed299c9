"""Optimization-based inversion into grids, W+ and W; noise maps; schedules; determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from encoders.optimize import Inversion, OptimizeConfig, invert, learning_rate
from encoders.noise_maps import const_noise, convert_grid, render
from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.latents.masks import soft_box
from spatial_latent.networks import Generator
from spatial_latent.render.generator import SpatialGenerator


@torch.no_grad()
def composed_target(G: Generator, seed: int = 0) -> torch.Tensor:
    """Two latents side by side in one image (out of W+), clamped like a saved picture: ``[2, 3, R, R]``."""
    g = torch.Generator().manual_seed(seed)
    w = G.mapping(torch.randn([4, G.z_dim], generator=g))
    left = LatentGrid.from_w(w[0::2], cells=(4, 4), density=4)
    right = LatentGrid.from_w(w[1::2], cells=(4, 4), density=4)
    grid = left.blend(right, soft_box((4, 4), (2, 0, 4, 4), feather=1.0))  # box x0, y0, x1, y1: the right half
    return SpatialGenerator(G)(grid).clamp(-1, 1)


def mse_cfg(**kw: object) -> OptimizeConfig:
    base = dict(steps=30, density=4, loss="mse")
    base.update(kw)
    return OptimizeConfig(**base)  # type: ignore[arg-type]


def test_render_with_stored_noise_equals_const_mode(G: Generator) -> None:
    ws = G.map(torch.randn(2, G.z_dim))
    grid = LatentGrid.from_w(ws, cells=(2, 2), density=2)
    sg = SpatialGenerator(G)
    maps = const_noise(G, 2, (G.img_resolution,) * 2)
    assert len(maps) == len(G.synthesis.noise_layers()) == G.num_ws - 1
    with torch.no_grad():
        assert torch.equal(render(sg, grid, maps), sg(grid, noise_mode="const"))
        maps[-1] = torch.randn_like(maps[-1])  # the last layer's noise changes the picture ...
        assert (render(sg, grid, maps) - sg(grid)).abs().max() > 1e-2
        assert torch.equal(sg(grid, noise_mode="const"), render(sg, grid, const_noise(G, 2, (G.img_resolution,) * 2)))  # ... only there
    with pytest.raises(InputError, match="noise maps"):
        render(sg, grid, maps[:-1])


@torch.no_grad()
def test_noise_maps_render_in_either_padding_mode(G: Generator) -> None:
    # The renderer takes per-image maps padding-free as well (windows beyond the canvas read
    # them periodically), so the encoders' render helper must not refuse them.
    grid = LatentGrid.from_w(G.map(torch.randn(2, G.z_dim)), cells=(2, 2), density=2)
    maps = const_noise(G, 2, (G.img_resolution,) * 2)
    free = SpatialGenerator(G, padding="none")
    assert torch.equal(render(free, grid, maps), free(grid, noise=maps))
    maps[-1] = torch.randn_like(maps[-1])
    assert (render(free, grid, maps) - free(grid, noise_mode="const")).abs().max() > 1e-2


def test_grid_inversion_reduces_the_loss_and_keeps_noise_maps(G: Generator) -> None:
    target = composed_target(G)
    inv = invert(G, target, mse_cfg(steps=40))
    assert isinstance(inv, Inversion) and inv.grid.data.shape == (2, G.num_ws, G.w_dim, 4, 4)
    assert inv.grid.space == "w+" and inv.grid.density == 4
    first, last = inv.recon_curve[0], inv.recon_curve[-1]
    assert len(inv.recon_curve) == len(inv.loss_curve) == 40
    assert all(b < 0.5 * a for a, b in zip(first, last))
    # reported metrics describe the returned images
    mse01 = ((inv.images.clamp(-1, 1) - target) / 2).square().flatten(1).mean(1)
    assert torch.allclose(mse01, torch.tensor([m["mse"] for m in inv.metrics]), rtol=1e-5)
    assert all(m["psnr"] == pytest.approx(-10 * torch.log10(v).item(), rel=1e-5) for m, v in zip(inv.metrics, mse01))
    # noise maps: optimized (no longer the stored ones), one per layer, re-normalized
    maps = inv.noise_maps()
    stored = const_noise(G, 2, (G.img_resolution,) * 2)
    assert [m.shape for m in maps] == [s.shape for s in stored]
    assert (maps[-1] - stored[-1]).abs().max() > 1e-3
    for m in maps:
        assert m.mean(dim=(1, 2, 3)).abs().max() < 1e-4 and (m.std(dim=(1, 2, 3)) - 1).abs().max() < 1e-4
    assert inv.grid.meta["generator_fingerprint"] == G.fingerprint() and inv.grid.meta["optimize"]["steps"] == 40


def test_saved_latent_reproduces_the_reconstruction(G: Generator, tmp_path: Path) -> None:
    inv = invert(G, composed_target(G, seed=1), mse_cfg(steps=5))
    inv.grid.save(tmp_path / "x.latent.safetensors")
    back = LatentGrid.load(tmp_path / "x.latent.safetensors")
    assert back.meta["optimize"]["loss"] == "mse"
    with torch.no_grad():
        again = render(SpatialGenerator(G), back, back.noise_maps())
    assert (again - inv.images).abs().max() < 1e-5


def test_deterministic_for_a_seed(G: Generator) -> None:
    target = composed_target(G, seed=2)
    a = invert(G, target, mse_cfg(steps=8, seed=5))
    b = invert(G, target, mse_cfg(steps=8, seed=5))
    c = invert(G, target, mse_cfg(steps=8, seed=6))
    assert torch.equal(a.grid.data, b.grid.data) and torch.equal(a.noise_maps()[3], b.noise_maps()[3])
    assert not torch.equal(a.grid.data, c.grid.data)


def test_spaces_and_equal_step_quality(G: Generator) -> None:
    target = composed_target(G, seed=3)
    results = {}
    for space in ("w", "w+", "grid"):
        inv = invert(G, target, mse_cfg(space=space, steps=30, optimize_noise=False))
        results[space] = sum(m["mse"] for m in inv.metrics)
        expected_layers = {"w": 1, "w+": G.num_ws, "grid": G.num_ws}[space]
        assert inv.grid.data.shape[1] == expected_layers
        assert inv.grid.cells == ((4, 4) if space == "grid" else (1, 1))
    # two latents in one picture: a grid can hold them, one latent per layer cannot
    assert results["grid"] < 0.7 * results["w+"]


def test_convert_grid_against_hand_computed_values() -> None:
    grid = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).view(1, 1, 1, 2, 2)
    # growing 2x2 -> 4x4 samples at cell centres: rows and columns at 0, 1/4, 3/4, 1 of the way
    grown = [[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]]
    out = convert_grid(grid, "w+", 3, (4, 4))
    assert out.shape == (1, 3, 1, 4, 4)  # one shared grid broadcast to every layer
    for layer in range(3):
        assert out[0, layer, 0].tolist() == grown
    # shrinking averages the cells each new cell covers
    fine = torch.arange(16.0).view(1, 1, 1, 4, 4)
    assert convert_grid(fine, "w+", 1, (2, 2))[0, 0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    # 'w' keeps one layer: the mean of the given ones
    layers = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 2.0)]).unsqueeze(0)  # [1, 2, 1, 2, 2]
    assert convert_grid(layers, "w", 2, (2, 2)).flatten().tolist() == [1.0] * 4
    with pytest.raises(InputError, match="latents have 3 layers, the generator needs 8"):
        convert_grid(torch.zeros(1, 3, 1, 2, 2), "w+", 8, (2, 2))


def test_zero_steps_renders_the_start(G: Generator) -> None:
    target = composed_target(G)
    # four different latents in a 2x2 start grid, grown to the 4x4 cells of the run
    start = G.map(torch.randn(8, G.z_dim)).view(2, 2, 2, G.num_ws, G.w_dim).permute(0, 3, 4, 1, 2)
    inv = invert(G, target, mse_cfg(steps=0), init=start)
    rows = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])  # bilinear weights at cell centres
    expected = torch.einsum("ih,nlchw,jw->nlcij", rows, start, rows)
    assert inv.loss_curve == [] and torch.allclose(inv.grid.data, expected, atol=1e-6)
    with torch.no_grad():
        assert (inv.images - SpatialGenerator(G)(inv.grid)).abs().max() < 1e-5
    avg = invert(G, target, mse_cfg(steps=0, space="w"))
    assert torch.allclose(avg.grid.data[:, 0, :, 0, 0], G.mapping.w_avg.expand(2, -1))


def test_regularizers_change_the_result(G: Generator) -> None:
    target = composed_target(G, seed=4)
    plain = invert(G, target, mse_cfg(steps=15, dist_reg=0.0, smooth_reg=0.0))
    smooth = invert(G, target, mse_cfg(steps=15, dist_reg=0.0, smooth_reg=10.0))

    def roughness(inv: Inversion) -> float:
        d = inv.grid.data
        return float((d[..., 1:, :] - d[..., :-1, :]).square().mean() + (d[..., :, 1:] - d[..., :, :-1]).square().mean())

    assert roughness(smooth) < 0.5 * roughness(plain)
    far = G.mapping.w_avg + 6 * torch.randn(G.w_dim, generator=torch.Generator().manual_seed(0))
    start = far.view(1, 1, -1, 1, 1).expand(2, 1, -1, 4, 4)
    free = invert(G, target, mse_cfg(steps=15, dist_reg=0.0, lr=0.02), init=start)
    pulled = invert(G, target, mse_cfg(steps=15, dist_reg=0.5, lr=0.02), init=start)
    dist = lambda inv: float((inv.grid.data - G.mapping.w_avg.view(1, 1, -1, 1, 1)).norm(dim=2).mean())  # noqa: E731
    assert dist(pulled) < dist(free)


def test_learning_rate_schedule() -> None:
    cfg = OptimizeConfig(lr=0.1, lr_rampup=0.05, lr_rampdown=0.25)
    lrs = [learning_rate(s, 100, cfg) for s in range(100)]
    assert lrs[0] == 0 and lrs[2] == pytest.approx(0.1 * 0.4) and lrs[5:75] == [pytest.approx(0.1)] * 70
    assert lrs[75] == pytest.approx(0.1) and lrs[99] < 0.001 and all(a >= b for a, b in zip(lrs[75:], lrs[76:]))


def test_schedule_defaults_follow_the_start(G: Generator) -> None:
    target = composed_target(G, seed=5)
    avg = invert(G, target, mse_cfg(steps=2)).grid.meta["optimize"]
    assert (avg["lr_rampup"], avg["lr_rampdown"], avg["latent_noise"], avg["noise_lr"]) == (0.05, 0.25, 0.05, 1.0)
    start = G.map(torch.randn(2, G.z_dim))[:, :, :, None, None]
    given = invert(G, target, mse_cfg(steps=2), init=start).grid.meta["optimize"]
    assert (given["lr_rampup"], given["lr_rampdown"], given["latent_noise"], given["noise_lr"]) == (0.2, 0.1, 0.0, 0.5)
    chosen = invert(G, target, mse_cfg(steps=2, lr_rampup=0.05, noise_lr=2.0), init=start).grid.meta["optimize"]
    assert (chosen["lr_rampup"], chosen["noise_lr"], chosen["lr_rampdown"]) == (0.05, 2.0, 0.1)  # what is set wins
    # noise_lr scales only the noise maps: at 0 they stay the (re-normalized) stored maps while the latents move
    frozen = invert(G, target, mse_cfg(steps=6, noise_lr=0.0), init=start)
    stored = const_noise(G, 2, (G.img_resolution,) * 2)
    for m, s in zip(frozen.noise_maps(), stored):
        s = (s - s.mean(dim=(1, 2, 3), keepdim=True)) / s.std(dim=(1, 2, 3), keepdim=True)
        assert torch.allclose(m, s, atol=1e-5)
    assert (frozen.grid.data - start.expand(-1, -1, -1, 4, 4)).abs().max() > 1e-3  # the 1x1 start, in every cell
    with pytest.raises(InputError, match="noise_lr"):
        mse_cfg(noise_lr=-1.0).validate()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(space="z"), "unknown space"),
        (dict(loss="l1"), "unknown loss"),
        (dict(steps=-1), "steps"),
        (dict(lr=float("nan")), "lr"),
        (dict(grid_layers="x"), "grid_layers"),
        (dict(lr_rampup=1.5), "lr_rampup is a fraction of the run"),
    ],
)
def test_bad_settings(G: Generator, change: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        invert(G, torch.zeros(1, 3, G.img_resolution, G.img_resolution), mse_cfg(**change))


def test_bad_targets(G: Generator) -> None:
    with pytest.raises(InputError, match="targets must be"):
        invert(G, torch.zeros(1, 3, 16, 16), mse_cfg())
    bad = torch.zeros(1, 3, G.img_resolution, G.img_resolution)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        invert(G, bad, mse_cfg())
