"""LatentGrid: constructors, editing, spaces, files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spatial_latent.latents.compose import compose_faces, copy_cells
from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.checkpoints.loading import random_generator
from support import TINY_CONFIGS


def test_from_w_and_spaces() -> None:
    w = torch.randn(2, 8)
    g = LatentGrid.from_w(w, cells=(3, 4), density=2)
    assert g.space == "w" and g.data.shape == (2, 1, 8, 3, 4)
    assert torch.equal(g.data[1, 0, :, 2, 3], w[1])
    plus = g.to_space("w+", num_ws=5)
    assert plus.data.shape == (2, 5, 8, 3, 4) and torch.equal(plus.data[:, 4], g.data[:, 0])
    assert torch.allclose(plus.to_space("w").data, g.data)
    assert g.layer_data(5).shape == (2, 5, 8, 3, 4)


def test_from_z_grid_maps_each_cell() -> None:
    G = random_generator(TINY_CONFIGS["skip"])
    z = torch.randn(2, G.z_dim, 2, 3)
    g = LatentGrid.from_z_grid(G, z, truncation_psi=0.8, density=1)
    expect = G.mapping(z[:, :, 1, 2], truncation_psi=0.8)
    assert torch.allclose(g.data[:, 0, :, 1, 2], expect, atol=1e-6)


def test_from_layout_majority_label() -> None:
    labels = torch.zeros(8, 8, dtype=torch.int64)
    labels[:, 7:] = 1  # a quarter of the right cells: the minority
    lat = torch.stack([torch.zeros(4), torch.ones(4)])
    g = LatentGrid.from_layout(labels, lat, cells=(2, 2))
    assert g.data[0, 0, 0].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    labels[:, 5:] = 1  # three quarters: the majority
    g = LatentGrid.from_layout(labels, lat, cells=(2, 2))
    assert g.data[0, 0, 0].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    with pytest.raises(InputError, match=r"labels must be in \[0, 2\) for 2 latents"):
        LatentGrid.from_layout(labels + 5, lat, cells=(2, 2))


def test_from_layer_grids_coarse_to_fine() -> None:
    coarse, fine = torch.randn(1, 4, 1, 1), torch.randn(1, 4, 4, 4)
    g = LatentGrid.from_layer_grids([coarse, fine], [3, 5], cells=(4, 4))
    assert g.data.shape == (1, 8, 4, 4, 4)
    assert torch.equal(g.data[0, 2, :, 3, 3], coarse[0, :, 0, 0]) and torch.equal(g.data[0, 7], fine[0])


def test_crop_paste_blend_concat_tile() -> None:
    a = LatentGrid(torch.randn(1, 2, 3, 4, 6))
    b = LatentGrid(torch.randn(1, 2, 3, 4, 6))
    piece = a.crop(2, 1, 5, 3)  # box x0, y0, x1, y1: rows 1-2, columns 2-4
    assert piece.cells == (2, 3)
    pasted = b.paste(piece, 2, 0)
    assert torch.equal(pasted.data[..., 2:4, 0:3], a.data[..., 1:3, 2:5])
    assert torch.equal(pasted.data[..., :2, :], b.data[..., :2, :])
    mask = torch.zeros(4, 6)
    mask[:, 3:] = 1
    mask[:, 2] = 0.5
    mixed = a.blend(b, mask)
    assert torch.equal(mixed.data[..., :2], a.data[..., :2]) and torch.equal(mixed.data[..., 3:], b.data[..., 3:])
    assert torch.allclose(mixed.data[..., 2], 0.5 * (a.data[..., 2] + b.data[..., 2]))
    assert LatentGrid.concat([a, b], dim="w").cells == (4, 12)
    assert LatentGrid.concat([a, b], dim="h").cells == (8, 6)
    assert a.tile(2, 3).cells == (8, 18)
    with pytest.raises(InputError, match=r"a 2x3 grid does not fit at .*3, ?0.* in a 4x6 grid"):
        a.paste(piece, 3, 0)
    with pytest.raises(InputError, match="is outside the 4x6 grid"):
        a.crop(0, 0, 1, 5)  # five rows of four
    with pytest.raises(InputError, match=r"incompatible grids: w\+/1/\(1, 2, 3\) vs w\+/1/\(1, 2, 4\)"):
        LatentGrid.concat([a, LatentGrid(torch.randn(1, 2, 4, 4, 6))])


def test_save_load_round_trip(tmp_path: Path) -> None:
    g = LatentGrid(torch.randn(2, 3, 5, 4, 4), density=4, meta={"generator": "abc123", "steps": 10}, extras={"noise.0": torch.randn(1, 1, 4, 4)})
    path = g.save(tmp_path / "latent.safetensors")
    back = LatentGrid.load(path)
    assert torch.equal(back.data, g.data) and back.space == "w+" and back.density == 4
    assert back.meta == g.meta and torch.equal(back.extras["noise.0"], g.extras["noise.0"])
    assert [p.name for p in tmp_path.iterdir()] == ["latent.safetensors"]


def test_load_rejects_foreign_and_corrupt_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not a spatial-latent grid"):
        LatentGrid.load(tmp_path / "other.safetensors")
    good = LatentGrid(torch.randn(1, 1, 4, 2, 2), space="w").save(tmp_path / "g.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:50])
    with pytest.raises(InputError, match="corrupt"):
        LatentGrid.load(tmp_path / "cut.safetensors")
    with pytest.raises(InputError, match="not found"):
        LatentGrid.load(tmp_path / "missing.safetensors")


def test_compose_faces_places_and_blends() -> None:
    lat = torch.arange(3, dtype=torch.float32)[:, None].repeat(1, 4)  # latent i is all i
    g = compose_faces(lat, positions=[(0, 0), (0, 4), (4, 0)], density=4, cells=(8, 8), background=torch.full((4,), 9.0), feather=0)
    d = g.data[0, 0, 0]
    assert d[:4, :4].eq(0).all() and d[:4, 4:].eq(1).all() and d[4:, :4].eq(2).all() and d[4:, 4:].eq(9).all()
    soft = compose_faces(lat, positions=[(0, 0), (0, 4), (4, 0)], density=4, cells=(8, 8), feather=2.0)
    s = soft.data[0, 0, 0]
    assert s[1, 1] == 0 and 0 < s[1, 4] < 1  # seams mix neighbours
    arranged = compose_faces(torch.randn(5, 2, 4), density=2)
    assert arranged.cells == (4, 6) and arranged.space == "w+"


def test_copy_cells_third_eye() -> None:
    g = LatentGrid(torch.randn(1, 1, 4, 8, 8), space="w", density=8)
    moved = copy_cells(g, (1, 3, 3, 5), (1, 3))  # box x0, y0, x1, y1 -> top-left cell (row, col)
    assert torch.equal(moved.data[..., 1:3, 3:5], g.data[..., 3:5, 1:3])
    soft = copy_cells(g, (1, 3, 3, 5), (1, 3), feather=1.5)
    assert torch.allclose(soft.data[..., 1:3, 3:5], g.data[..., 3:5, 1:3])
    assert torch.equal(soft.data[..., 6:, :], g.data[..., 6:, :])
