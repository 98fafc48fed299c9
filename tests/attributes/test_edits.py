"""Edits: exact masked arithmetic, cell and image masks, layers, several edits, and the evidence
that a fitted direction is local and strong on a real (tiny) generator. The mask builders
themselves are tested in tests/latents/test_masks.py."""

from __future__ import annotations

import pytest
import torch

from attributes.direction import Direction
from attributes.edits import Edit, apply_edits, edit, strength_series
from attributes.labelers import MapLabeler, pixel_stat
from attributes.supervised import AttributeModel
from attributes.sampling import sample_grids, sample_labeled
from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.latents.masks import box_mask, cell_mask, image_mask
from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.render.generator import SpatialGenerator
from support import TINY_CONFIGS


def grid_w(b: int = 2, cells: tuple[int, int] = (3, 4), C: int = 5) -> LatentGrid:
    return LatentGrid(torch.randn(b, 1, C, *cells), space="w", density=cells[0])


def test_edit_adds_strength_times_mask_times_direction() -> None:
    g = grid_w()
    d = Direction("a", torch.randn(1, 5, 3, 4), density=3)
    m = torch.zeros(3, 4)
    m[1, 2], m[0, 0] = 1.0, 0.25
    out = edit(g, d, 2.5, m)
    assert torch.allclose(out.data - g.data, 2.5 * m * d.vectors[None], atol=1e-6)
    assert torch.equal(out.data[..., 2, :], g.data[..., 2, :])  # unmasked cells are untouched, bit for bit
    assert out.meta["edits"] == [dict(name="a", strength=2.5, masked=True, layers=None)]
    full = edit(g, d, -1.0)
    assert torch.allclose(full.data, g.data - d.vectors[None])


def test_image_sized_masks_are_area_averaged_onto_the_cells() -> None:
    img = torch.zeros(6, 8)
    img[:3, :2] = 1  # cell (0, 0) whole, cell (1, 0) half, in a 3x4 grid of 2x2-pixel cells
    g = grid_w()
    d = Direction("a", torch.ones(1, 5, 1, 1))
    assert torch.allclose(edit(g, d, 1.0, img).data, edit(g, d, 1.0, image_mask(img, (3, 4))).data)
    with pytest.raises(InputError, match="does not fit"):
        edit(g, d, 1.0, torch.ones(7, 8))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        edit(g, d, 1.0, torch.full((3, 4), 2.0))


def test_layers_confine_the_edit_to_some_rows() -> None:
    g = LatentGrid(torch.randn(1, 6, 5, 2, 2), space="w+", density=2)
    d = Direction("a", torch.randn(1, 5, 1, 1))  # a 'w' direction on a w+ grid: every chosen row
    out = edit(g, d, 1.0, layers=[1, 4])
    changed = (out.data - g.data).abs().amax(dim=(0, 2, 3, 4))
    assert (changed > 0).tolist() == [False, True, False, False, True, False]
    with pytest.raises(InputError, match="w\\+ grid"):
        edit(grid_w(), d, 1.0, layers=[0])
    with pytest.raises(InputError, match="not in 0..5"):
        edit(g, d, 1.0, layers=[6])


def test_several_edits_add_up_and_per_sample_strengths() -> None:
    g = grid_w(b=3)
    a = Direction("a", torch.randn(1, 5, 3, 4), density=3)
    b = Direction("b", torch.randn(1, 5, 1, 1))
    both = apply_edits(g, [Edit(a, 1.5, box_mask((3, 4), (0, 0, 2, 3))), Edit(b, -2.0)])
    one_by_one = edit(edit(g, b, -2.0), a, 1.5, box_mask((3, 4), (0, 0, 2, 3)))
    assert torch.allclose(both.data, one_by_one.data, atol=1e-6)
    s = torch.tensor([0.0, 1.0, -2.0])
    per = edit(g, b, s)
    assert torch.allclose(per.data - g.data, s[:, None, None, None, None] * b.vectors[None], atol=1e-6)
    with pytest.raises(InputError, match="strength"):
        edit(g, b, torch.ones(2))


def test_edit_is_differentiable_in_grid_and_strength() -> None:
    g = grid_w()
    g.data.requires_grad_(True)
    s = torch.tensor(0.5, requires_grad=True)
    d = Direction("a", torch.randn(1, 5, 3, 4), density=3)
    edit(g, d, s, cell_mask((3, 4), [(0, 0)])).data.sum().backward()
    assert torch.allclose(s.grad, d.vectors[..., 0, 0].sum() * 2)
    assert torch.equal(g.data.grad, torch.ones_like(g.data))


def test_strength_series_is_linear() -> None:
    g = grid_w(b=2)
    d = Direction("a", torch.randn(1, 5, 3, 4), density=3)
    s = strength_series(g, d, [-3, 0, 3])
    assert s.batch == 3 and torch.equal(s.data[1], g.data[0])
    assert torch.allclose(s.data[2] - s.data[1], 3 * d.vectors, atol=1e-6)


def test_incompatible_directions_are_refused() -> None:
    g = grid_w(cells=(3, 4))
    with pytest.raises(InputError, match="per layer"):
        edit(g, Direction("a", torch.randn(6, 5, 1, 1), space="w+"), 1.0)
    with pytest.raises(InputError, match="3x3-cell grids"):
        edit(g, Direction("a", torch.randn(1, 5, 3, 3), density=3), 1.0)
    with pytest.raises(InputError, match="channels"):
        edit(g, Direction("a", torch.randn(1, 6, 1, 1)), 1.0)
    with pytest.raises(InputError, match="mask"):
        edit(g, Direction("a", torch.randn(1, 5, 1, 1)), 1.0, torch.ones(3, 3, 4))


# -- evidence ------------------------------------------------------------------------------------
# A fitted "brightness" direction, applied inside a box of cells with strength 3, must raise the
# mean brightness inside the box by at least MIN_GAIN standard deviations of that brightness
# over samples (measured: 4.6), while pixels farther than the receptive field from the box change
# by less than EPS (measured: exactly 0).
EPS = 1e-5
MIN_GAIN = 3.0
STRENGTH = 3.0


def measurable_generator():
    """The tiny generator with its toRGB outputs scaled down, so that images are mostly inside
    [-1, 1] and brightness is not saturated (an untrained generator's images are clipped noise)."""
    G = random_generator(TINY_CONFIGS["skip"], seed=0)
    for name, m in G.named_modules():
        if name.endswith("torgb"):
            m.weight.data *= 0.1
            m.bias.data.zero_()
    return G


@torch.no_grad()
def test_fitted_direction_moves_the_attribute_inside_the_mask_and_nothing_outside() -> None:
    G = measurable_generator()
    cells, density = (4, 12), 4  # 32 x 96 px canvas of 8-px cells
    grids, maps = sample_labeled(G, MapLabeler("brightness"), 300, cells, density, cell_mix=1.0, padding="none", batch_size=100)
    d = AttributeModel(method="logistic").fit(grids, maps, name="brightness")
    assert d.meta["locations"] == "independent" and d.held_out.mean() > 0.65

    sg = SpatialGenerator(G, padding="none")
    test = sample_grids(G, 16, cells, density, cell_mix=1.0, seed=99)
    box = (0, 0, 2, 4)  # x0, y0, x1, y1: cell columns 0-1, all rows: image columns 0-15
    before = sg(test)
    after = sg(edit(test, d, STRENGTH, box_mask(cells, box)))

    cell_px = G.img_resolution // density
    inside = slice(0, box[2] * cell_px)
    b0, b1 = pixel_stat(before, "brightness"), pixel_stat(after, "brightness")
    gain = float((b1 - b0)[:, :, inside].mean())
    spread = float(b0[:, :, inside].mean(dim=(1, 2)).std())
    assert gain > MIN_GAIN * spread and gain > 0.05

    # Receptive field of a padding-free render (at the 4x4 level, scaled to pixels) plus one cell
    # that bilinear style sampling reaches beyond the box.
    dilation = sg.receptive_margin() * G.img_resolution // 4 + cell_px
    start = box[2] * cell_px + dilation
    assert before.shape[-1] - start >= 16  # a real outside region is checked
    outside = (after - before)[..., start:].abs().max().item()
    assert outside < EPS
    # ...and the edit does reach beyond the box itself (the dilation is not an empty promise).
    assert (after - before)[..., inside.stop :].abs().max().item() > 1e-3
