"""SpatialGenerator: exactness on constant grids, padding-free sub-windows, locality, sizes."""

from __future__ import annotations

import time

import pytest
import torch

from spatial_latent.latents.compose import compose_faces
from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.networks import Generator
from spatial_latent.latents.window import Window
from spatial_latent.render.generator import SpatialGenerator
from spatial_latent.render.plan import LatentPatch, PaddingMode
from support import TINY_CONFIGS, noisy_generator

TOL = 1e-4


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def G(request: pytest.FixtureRequest) -> Generator:
    return noisy_generator(request.param, seed=2)


def labels(G: Generator, n: int) -> torch.Tensor | None:
    return torch.eye(G.c_dim)[torch.arange(n) % G.c_dim] if G.c_dim else None


@torch.no_grad()
@pytest.mark.parametrize("density", [1, 2, 4])
@pytest.mark.parametrize("resample", ["bilinear", "nearest"])
def test_constant_grid_reproduces_synthesis(G: Generator, density: int, resample: str) -> None:
    ws = G.map(torch.randn(2, G.z_dim), labels(G, 2))
    ws = ws + 0.3 * torch.randn_like(ws)  # a different w per layer pins the row -> layer mapping
    grid = LatentGrid.from_w(ws, cells=(density, density), density=density)
    out = SpatialGenerator(G, resample=resample)(grid)
    assert (out - G.synthesis(ws)).abs().max() <= TOL


@torch.no_grad()
def test_w_space_grid_equals_broadcast_w(G: Generator) -> None:
    w = G.mapping(torch.randn(2, G.z_dim), labels(G, 2))  # [2, C]
    out = SpatialGenerator(G)(LatentGrid.from_w(w, cells=(2, 2), density=2))
    assert (out - G.synthesis(w[:, None].repeat(1, G.num_ws, 1))).abs().max() <= TOL


@torch.no_grad()
@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_padding_free_sub_windows_equal_crops_of_full_render(G: Generator, noise_mode: str) -> None:
    sg = SpatialGenerator(G, padding="none")
    grid = LatentGrid(torch.randn(2, G.num_ws, G.w_dim, 3, 5), density=2)
    full = sg(grid, noise_mode=noise_mode, noise_seed=7)
    H, W = full.shape[2:]
    assert (H, W) == (3 * G.img_resolution // 2, 5 * G.img_resolution // 2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        y0 = int(torch.randint(-8, H - 1, (1,), generator=gen))
        x0 = int(torch.randint(-8, W - 1, (1,), generator=gen))
        y1 = int(torch.randint(y0 + 1, H + 8, (1,), generator=gen))
        x1 = int(torch.randint(x0 + 1, W + 8, (1,), generator=gen))
        sub = sg(grid, noise_mode=noise_mode, noise_seed=7, window=(x0, y0, x1, y1))
        assert sub.shape[2:] == (y1 - y0, x1 - x0)
        a, b = max(y0, 0), max(x0, 0)
        c, d = min(y1, H), min(x1, W)
        ref = full[..., a:c, b:d]
        got = sub[..., a - y0 : c - y0, b - x0 : d - x0]
        assert (ref - got).abs().max() <= TOL, (y0, y1, x0, x1)


@torch.no_grad()
def test_padding_free_render_is_local() -> None:
    # Pixels farther from a style boundary than the receptive field do not see the other style.
    G = noisy_generator("skip")
    sg = SpatialGenerator(G, padding="none", resample="nearest")
    a, b = torch.randn(2, G.num_ws, G.w_dim)
    cells = (2, 8)
    left = LatentGrid.from_w(a[None], cells=cells, density=1)
    mixed = left.data.clone()
    mixed[..., 4:] = b[:, :, None, None]
    img_a, img_mix = sg(left), sg(left.replace(mixed))
    R = G.img_resolution
    boundary = 4 * R
    reach = sg.receptive_margin() * R // 4 + R  # margin at 4x4 scaled to output, plus slack
    far = boundary - reach
    assert far > R
    assert (img_a[..., :far] - img_mix[..., :far]).abs().max() <= TOL
    assert (img_a[..., boundary:] - img_mix[..., boundary:]).abs().mean() > 1e-2


@torch.no_grad()
def test_arrangement_of_faces_has_proportional_size_and_recognisable_faces() -> None:
    G = noisy_generator("skip", seed=5)
    R = G.img_resolution
    ws = G.map(torch.randn(6, G.z_dim), truncation_psi=0.5)
    grid = compose_faces(ws, grid_shape=(2, 3), density=4, feather=0)
    img = SpatialGenerator(G)(grid)
    assert img.shape == (1, 3, 2 * R, 3 * R)
    singles = G.synthesis(ws)
    # Each block's centre must be closest to its own standalone image, not any other's.
    m = R // 4
    for i in range(6):
        r, c = divmod(i, 3)
        block = img[0, :, r * R + m : (r + 1) * R - m, c * R + m : (c + 1) * R - m]
        dists = [(block - singles[j, :, m : R - m, m : R - m]).abs().mean().item() for j in range(6)]
        assert min(range(6), key=dists.__getitem__) == i, dists


@torch.no_grad()
def test_non_square_grid_sizes() -> None:
    G = noisy_generator("orig")
    sg = SpatialGenerator(G)
    for cells, density in [((1, 3), 1), ((6, 2), 2), ((3, 12), 4)]:
        grid = LatentGrid(torch.randn(1, 1, G.w_dim, *cells), space="w", density=density)
        out = sg(grid)
        assert out.shape[2:] == (cells[0] * 16 // density, cells[1] * 16 // density)
        assert torch.isfinite(out).all()


@torch.no_grad()
def test_noise_is_seeded_by_position() -> None:
    G = noisy_generator("skip")
    sg = SpatialGenerator(G, padding="none")
    grid = LatentGrid(torch.randn(1, 1, G.w_dim, 2, 2), space="w", density=1)
    a = sg(grid, noise_mode="random", noise_seed=1)
    assert torch.equal(a, sg(grid, noise_mode="random", noise_seed=1))
    assert (a - sg(grid, noise_mode="random", noise_seed=2)).abs().max() > 1e-3


def test_bad_grids_are_clear_errors() -> None:
    G = noisy_generator("skip")
    sg = SpatialGenerator(G)
    with pytest.raises(InputError, match="w_dim"):
        sg(LatentGrid(torch.randn(1, 1, G.w_dim + 1, 2, 2), space="w"))
    with pytest.raises(InputError, match="layers"):
        sg(LatentGrid(torch.randn(1, G.num_ws - 1, G.w_dim, 2, 2)))
    nan = torch.randn(1, 1, G.w_dim, 2, 2)
    nan[0, 0, 3, 1, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        sg(LatentGrid(nan, space="w"))
    with pytest.raises(InputError, match="empty"):
        LatentGrid(torch.randn(1, 1, G.w_dim, 0, 2), space="w")
    with pytest.raises(InputError, match="whole pixels"):
        sg(LatentGrid(torch.randn(1, 1, G.w_dim, 3, 3), space="w", density=8))
    with pytest.raises(InputError, match="padding='none'"):
        sg(LatentGrid(torch.randn(1, 1, G.w_dim, 2, 2), space="w"), window=(0, 0, 4, 4))
    with pytest.raises(InputError, match="padding"):
        SpatialGenerator(G, padding="reflect")


def test_absurd_sizes_fail_fast_before_any_work() -> None:
    G = noisy_generator("skip")
    # A 200k x 200k-cell grid would be a ~6.4 Mpx-per-side image; only a view is allocated here.
    huge = LatentGrid(torch.zeros(1, 1, G.w_dim, 1, 1).expand(1, 1, G.w_dim, 200_000, 200_000), space="w")
    t = time.perf_counter()
    with pytest.raises(InputError, match="TileSampler"):
        SpatialGenerator(G, padding="none")(huge, window=(0, 0, 10**6, 10**6))
    assert time.perf_counter() - t < 5.0


@torch.no_grad()
def test_explicit_noise_maps(G: Generator) -> None:
    sg = SpatialGenerator(G)
    grid = LatentGrid(torch.randn(2, G.num_ws, G.w_dim, 2, 4), density=2)
    shapes = sg.noise_shapes(grid)
    R = G.img_resolution
    assert len(shapes) == G.num_ws - 1 and shapes[0] == (4, 8) and shapes[-1] == (R, 2 * R)
    const = sg(grid, noise_mode="const")
    # None entries fall back to noise_mode; the stored maps tiled over the canvas equal 'const'
    assert torch.equal(sg(grid, noise=[None] * len(shapes)), const)
    tiled = [layer.noise_const[torch.arange(h) % layer.resolution][:, torch.arange(w) % layer.resolution][None, None] for layer, (h, w) in zip(sg.noise_layers(), shapes)]
    assert (sg(grid, noise=tiled) - const).abs().max() <= 1e-6
    maps = [torch.randn(2, 1, h, w) for h, w in shapes]
    a = sg(grid, noise=maps)
    assert (a - const).abs().max() > 1e-2
    one = sg(grid, noise=[m[:1] for m in maps])  # a batch-1 map is shared by every sample
    assert (one[0] - a[0]).abs().max() <= 1e-6 and (one[1] - a[1]).abs().max() > 1e-3
    # padding-free: a sub-window equals the crop of the full render with the same maps
    free = SpatialGenerator(G, padding="none")
    full = free(grid, noise=maps)
    sub = free(grid, noise=maps, window=(R // 2, 3, 2 * R, R))
    assert (sub - full[..., 3:R, R // 2 :]).abs().max() <= TOL
    with pytest.raises(InputError, match="noise maps"):
        sg(grid, noise=maps[:-1])
    with pytest.raises(InputError, match="noise map 0 must be"):
        sg(grid, noise=[torch.randn(2, 1, 3, 3)] + maps[1:])


def test_noise_maps_get_gradients() -> None:
    G = noisy_generator("skip")
    sg = SpatialGenerator(G)
    grid = LatentGrid(torch.randn(1, G.num_ws, G.w_dim, 2, 2, requires_grad=True), density=2)
    maps = [torch.randn(1, 1, h, w, requires_grad=True) for h, w in sg.noise_shapes(grid)]
    sg(grid, noise=maps).square().mean().backward()
    assert grid.data.grad is not None and grid.data.grad.abs().sum() > 0
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)


@torch.no_grad()
def test_batched_patches_equal_separate_renders() -> None:
    G = noisy_generator("resnet")
    sg = SpatialGenerator(G, padding="none")
    step = G.img_resolution // 4
    win = Window(0, 0, 3 * step, 2 * step)
    patches = []
    for k, (y, x) in enumerate([(0, 0), (step, 5 * step), (-3 * step, 2 * step)]):
        need = sg.cells_needed(Window(x, y, x + win.size[1], y + win.size[0]), 4)
        lat = torch.randn(2, G.num_ws, G.w_dim, *need.size, generator=torch.Generator().manual_seed(k))
        patches.append(LatentPatch(lat, origin=(need.y0, need.x0), shift=(y, x)))
    together = sg.render_patches(patches, win, 4, "random", 5)
    for k, p in enumerate(patches):
        alone = sg.render_patches([p], win, 4, "random", 5)
        assert (together[2 * k : 2 * k + 2] - alone).abs().max() <= 1e-5
    # differently shaped patches (one with a spare cell column) render one batch each, in order
    wide = LatentPatch(torch.cat([patches[0].latents, patches[0].latents[..., -1:]], dim=-1), patches[0].origin, patches[0].shift)
    mixed = sg.render_patches([patches[1], wide], win, 4, "random", 5)
    assert (mixed - torch.cat([together[2:4], together[0:2]])).abs().max() <= 1e-5
    small = LatentPatch(patches[0].latents[..., :-1, :], patches[0].origin, patches[0].shift)
    with pytest.raises(AssertionError, match="does not cover"):
        sg.render_patches([small], win, 4)


def test_padding_is_a_typed_mode_that_accepts_its_names() -> None:
    G = noisy_generator("skip")
    for given, mode in [("zero", PaddingMode.ZERO), ("none", PaddingMode.NONE), (PaddingMode.NONE, PaddingMode.NONE)]:
        sg = SpatialGenerator(G, padding=given)
        assert sg.padding is mode and sg.padding == mode.value
    assert SpatialGenerator(G).padding is PaddingMode.ZERO
    assert PaddingMode.NONE.padding_free and PaddingMode.NONE.tileable
    assert not PaddingMode.ZERO.padding_free and not PaddingMode.ZERO.tileable
    with pytest.raises(InputError, match=r"padding must be one of \('zero', 'none'\), got 'valid'"):
        SpatialGenerator(G, padding="valid")
