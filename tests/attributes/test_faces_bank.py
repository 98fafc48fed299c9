"""The direction bank shipped for the faces model: it loads by name, its directions live where
their attributes are, and its smile edit works on generated faces (judged by the face labeler)."""

from __future__ import annotations

import pytest
import torch

from attributes.bank import EMBEDDED_BANKS, DirectionBank
from attributes.edits import edit
from attributes.face_labeler import FaceLabeler
from attributes.sampling import sample_grids
from spatial_latent.checkpoints.loading import load_generator
from spatial_latent.latents.masks import box_mask
from spatial_latent.render.generator import SpatialGenerator


@pytest.fixture(scope="module")
def G():
    return load_generator("faces")


@pytest.fixture(scope="module")
def bank():
    return DirectionBank.load("faces")


def test_ships_the_five_directions_for_the_faces_model(G, bank) -> None:
    assert EMBEDDED_BANKS["faces"].stat().st_size < 2**20
    assert {"smile", "eyeglasses", "bangs", "age", "gender"} <= set(bank.names)
    assert bank.generator == G.fingerprint()
    for d in bank:
        assert d.cells == (8, 8) and d.density == 8 and d.meta["method"] == "gradient"
        assert d.meta["held_out_agreement"] > 0.85 and d.meta["default_strength"] > 0
    assert bank["smile"].meta["conditioned_on"] == ["gender", "age"]


@pytest.mark.parametrize("name", ["smile", "eyeglasses", "bangs"])
def test_local_directions_live_in_their_region(bank, name: str) -> None:
    d = bank[name]
    step = d.vectors[0].norm(dim=0)  # [8, 8]
    inside = box_mask((8, 8), d.meta["region"], cell_size=8) > 0.99
    assert step[inside].mean() > 2 * step[~inside].mean()


def test_smile_edit_makes_non_smiling_faces_smile_locally(G, bank) -> None:
    """Thresholds below bench/face_edits.py's measurement on 200 faces (docs/BENCHMARKS.md)."""
    faces = sample_grids(G, 96, (8, 8), 8, cell_mix=0.0, seed=123)
    sg, smile = SpatialGenerator(G), FaceLabeler("Smiling")
    with torch.no_grad():
        before = sg(faces)
        p0 = smile(before)
        keep = p0 < 0.5
        assert keep.sum() >= 16
        d = bank["smile"]
        mask = box_mask((8, 8), d.meta["region"], cell_size=8)
        after = sg(edit(faces.replace(faces.data[keep]), d, d.meta["default_strength"], mask=mask))
    assert float((smile(after) > 0.5).float().mean()) >= 0.7
    change = (after - before[keep]).abs().mean(dim=(0, 1))  # [64, 64]
    x0, y0, x1, y1 = (int(v) for v in d.meta["region"])
    inside = change[y0:y1, x0:x1].mean()
    assert change[: max(0, y0 - 16)].mean() < 0.2 * inside  # the top of the head barely moves
