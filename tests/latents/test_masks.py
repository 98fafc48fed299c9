"""Cell masks: boxes (x0, y0, x1, y1, end-exclusive) in cells and pixels, soft boxes, image masks,
cell lists, soft regions, and a user mask shaped for a grid."""

from __future__ import annotations

import pytest
import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.latents.masks import box_mask, check_box, cell_mask, image_mask, resolve_mask, soft_box, soft_regions


def test_box_mask_covers_fractions_of_cells() -> None:
    m = box_mask((2, 4), (0.5, 0, 2, 1))  # x from 0.5 to 2 cells, first row
    assert m.tolist() == [[0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    px = box_mask((2, 4), (8, 0, 32, 16), cell_size=16)  # pixel box on 16-px cells
    assert px.tolist() == [[0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    with pytest.raises(InputError, match="outside"):
        box_mask((2, 4), (5, 0, 6, 1))
    with pytest.raises(InputError, match="empty"):
        box_mask((2, 4), (1, 0, 1, 1))
    with pytest.raises(InputError, match=r"a box is \(x0, y0, x1, y1\)"):
        box_mask((2, 4), (0, 0, 1))


def test_box_order_is_x0_y0_x1_y1_everywhere() -> None:
    """One box, three builders, one answer: columns [1, 3) of rows [0, 2) of a 3x4 grid."""
    box = (1, 0, 3, 2)
    expected = torch.zeros(3, 4)
    expected[0:2, 1:3] = 1
    assert torch.equal(box_mask((3, 4), box), expected)
    assert torch.equal(soft_box((3, 4), box, feather=0), expected)
    g = LatentGrid(torch.arange(12.0).reshape(1, 1, 1, 3, 4), space="w")
    assert torch.equal(g.crop(*box).data[0, 0, 0], g.data[0, 0, 0, 0:2, 1:3])


def test_soft_box_ramps_outside_over_the_feather() -> None:
    m = soft_box((1, 6), (1, 0, 3, 1), feather=2.0)  # cells 1 and 2 inside; centres 3.5, 4.5 outside
    assert m[0].tolist() == [0.75, 1.0, 1.0, 0.75, 0.25, 0.0]
    assert soft_box((1, 6), (1, 0, 3, 1), feather=0)[0].tolist() == [0, 1, 1, 0, 0, 0]


def test_image_mask_is_area_averaged_and_size_checked() -> None:
    img = torch.zeros(6, 8)
    img[:3, :2] = 1  # cell (0, 0) whole, cell (1, 0) half, in a 3x4 grid of 2x2-pixel cells
    m = image_mask(img, (3, 4))
    assert m.shape == (3, 4) and m[0, 0] == 1 and m[1, 0] == 0.5 and m.sum() == 1.5
    assert image_mask(torch.stack([img, 1 - img]), (3, 4)).shape == (2, 3, 4)
    with pytest.raises(InputError, match="does not fit"):
        image_mask(torch.ones(7, 8), (3, 4))
    with pytest.raises(InputError, match="the image is"):
        image_mask(torch.ones(6, 8), (3, 4), image_size=(12, 16))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        image_mask(torch.full((6, 8), 2.0), (3, 4))


def test_cell_mask() -> None:
    m = cell_mask((2, 3), [(0, 1), (1, 2)])  # (row, col)
    assert m.tolist() == [[0, 1, 0], [0, 0, 1]]
    with pytest.raises(InputError, match="outside"):
        cell_mask((2, 3), [(2, 0)])
    with pytest.raises(InputError, match="no cells"):
        cell_mask((2, 3), [])


def test_soft_regions_partition_the_grid() -> None:
    centres = torch.tensor([[0.5, 0.5], [3.5, 5.5]])  # (y, x) at the centres of cells (0, 0) and (3, 5)
    m = soft_regions(centres, (4, 6), softness=0.3)
    assert m.shape == (2, 4, 6) and torch.allclose(m.sum(0), torch.ones(4, 6))
    assert m[0, 0, 0] > 0.99 and m[1, 3, 5] > 0.99  # each centre's cell belongs to it
    with pytest.raises(InputError, match="softness"):
        soft_regions(centres, (4, 6), softness=0)


def test_resolve_mask_shapes_a_user_mask_for_the_grid() -> None:
    g = LatentGrid(torch.zeros(2, 3, 5, 3, 4, dtype=torch.float64), space="w+")
    cells = resolve_mask(g, torch.ones(3, 4))
    assert cells.shape == (1, 1, 1, 3, 4) and cells.dtype == torch.float64
    per_grid = resolve_mask(g, torch.ones(2, 3, 4))
    assert per_grid.shape == (2, 1, 1, 3, 4)
    pixels = resolve_mask(g, torch.ones(6, 8))  # image-sized: area-averaged
    assert torch.equal(pixels, cells)
    assert resolve_mask(g, None) is None
    with pytest.raises(InputError, match="holds 2"):
        resolve_mask(g, torch.ones(3, 3, 4))
    with pytest.raises(InputError, match=r"\[h, w\]"):
        resolve_mask(g, torch.ones(4))


def test_every_package_exports_the_same_builders() -> None:
    import attributes
    import spatial_latent
    from spatial_latent.latents import masks

    for name in ("box_mask", "cell_mask", "image_mask"):
        assert getattr(attributes, name) is getattr(masks, name) is getattr(spatial_latent, name)
    assert spatial_latent.soft_box is masks.soft_box


def test_check_box_wants_four_finite_ordered_numbers() -> None:
    assert check_box([0, 1, 8, 9.5]) == (0.0, 1.0, 8.0, 9.5)
    for bad, why in (([0, 0, float("inf"), 8], "finite"), ([0, 0, 8], "four"), (["0", 0, 8, 8], "four"), ([True, 0, 8, 8], "four"),
                     ("0,0,8,8", "four"), ([8, 0, 4, 8], "empty"), ([0, 8, 8, 8], "empty")):
        with pytest.raises(ValueError, match=why):
            check_box(bad)
