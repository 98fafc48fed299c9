"""AttributeModel on synthetic latents with planted directions: recovery, scaling, selection,
held-out scores, layer groups, conditional directions, bad labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attributes.direction import Direction, conditional
from attributes.supervised import AttributeModel, _select
from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    return float(a @ b / (a.norm() * b.norm()))


def planted(n: int = 600, L: int = 1, C: int = 8, cells: tuple[int, int] = (2, 2), seed: int = 0) -> tuple[LatentGrid, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, L, C, *cells, generator=gen) * 0.7 + 0.3
    d = torch.randn(L, C, *cells, generator=gen)
    return LatentGrid(x, space="w" if L == 1 else "w+", density=cells[0]), d


@pytest.mark.parametrize("method, metric, floor", [("logistic", "accuracy", 0.9), ("svm", "accuracy", 0.9), ("ridge", "r2", 0.8)])
def test_joint_fit_recovers_a_planted_direction(method: str, metric: str, floor: float) -> None:
    grid, d = planted()
    score = (grid.data * d).sum(dim=(1, 2, 3, 4))
    score = score + 0.2 * score.std() * torch.randn(score.shape, generator=torch.Generator().manual_seed(1))
    out = AttributeModel(method=method).fit(grid, score, name="a")
    assert out.vectors.shape == (1, 8, 2, 2) and out.metric == metric and out.meta["locations"] == "joint"
    assert cos(out.vectors, d) > 0.9  # points along the planted normal, toward higher scores
    assert out.held_out.min() > floor and out.held_out.max() <= 1


def test_independent_fit_finds_a_different_direction_per_cell() -> None:
    grid, d = planted(n=500, cells=(2, 3))
    maps = torch.einsum("nlchw,lchw->nhw", grid.data, d)  # each cell's label from its own latent
    out = AttributeModel().fit(grid, maps, name="local")
    assert out.meta["locations"] == "independent" and out.held_out.shape == (1, 2, 3)
    for i in range(2):
        for j in range(3):
            assert cos(out.vectors[..., i, j], d[..., i, j]) > 0.95
    assert out.held_out.min() > 0.9


def test_image_sized_score_maps_are_pooled_onto_cells() -> None:
    grid, d = planted(n=300, cells=(2, 2))
    maps = torch.einsum("nlchw,lchw->nhw", grid.data, d)
    big = maps.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)  # [N, 16, 16]
    a = AttributeModel(method="ridge").fit(grid, maps)
    b = AttributeModel(method="ridge").fit(grid, big)
    assert torch.allclose(a.vectors, b.vectors, atol=1e-5)


def test_strength_one_is_one_standard_deviation_per_cell() -> None:
    grid, d = planted(n=400, cells=(2, 2))
    maps = torch.einsum("nlchw,lchw->nhw", grid.data, d)
    out = AttributeModel(method="ridge").fit(grid, maps)
    for i in range(2):
        for j in range(2):
            v = out.vectors[..., i, j].reshape(-1)
            proj = grid.data[..., i, j].reshape(400, -1) @ (v / v.norm())
            assert abs(float(proj.std(correction=0)) - float(v.norm())) < 1e-3 * float(v.norm())


def test_selection_keeps_the_most_confident_samples() -> None:
    y = np.random.default_rng(0).normal(size=1000)
    idx, cls = _select(y, 0.1)
    assert len(idx) == 200 and cls.sum() == 100
    lo, hi = np.sort(y)[99], np.sort(y)[900]
    assert (y[idx[cls == 0]] <= lo).all() and (y[idx[cls == 1]] >= hi).all()
    b = (y > 0).astype(float)  # binary labels are used as they are
    idx, cls = _select(b, 0.1)
    assert len(idx) == 1000 and (cls == b).all()


def test_shared_direction_from_per_image_labels() -> None:
    grid, _ = planted(n=500, cells=(2, 2))
    d = torch.randn(1, 8, generator=torch.Generator().manual_seed(5))
    score = torch.einsum("nlchw,lc->n", grid.data, d)
    out = AttributeModel(locations="shared").fit(grid, score)
    assert out.is_global and out.vectors.shape == (1, 8, 1, 1)
    assert cos(out.vectors[..., 0, 0], d) > 0.95 and out.held_out.item() > 0.9


def test_layer_groups_fit_separately() -> None:
    grid, _ = planted(n=600, L=4, cells=(1, 1))
    d = torch.zeros(4, 8)
    d[2:] = torch.randn(2, 8, generator=torch.Generator().manual_seed(3))  # only layers 2-3 matter
    score = torch.einsum("nlchw,lc->n", grid.data, d)
    out = AttributeModel(layer_groups=[(0, 2), (2, 4)]).fit(grid, score)
    assert out.space == "w+" and out.layer_groups == [(0, 2), (2, 4)]
    assert out.held_out[1].item() > 0.9 and out.held_out[0].item() < 0.75  # layers 0-1 carry nothing
    assert cos(out.vectors[2:, :, 0, 0], d[2:]) > 0.9


def test_conditional_fit_is_orthogonal_to_the_other_direction() -> None:
    grid, _ = planted(n=800, cells=(1, 1))
    g = torch.Generator().manual_seed(7)
    a = torch.randn(8, generator=g)
    b = 0.8 * a / a.norm() + 0.6 * torch.randn(8, generator=g) / 3  # correlated attributes
    xa = grid.data[:, 0, :, 0, 0]
    other = AttributeModel().fit(grid, xa @ a, name="a")
    plain = AttributeModel().fit(grid, xa @ b, name="b")
    cond = AttributeModel().fit(grid, xa @ b, name="b", condition_on=[other])
    assert abs(cos(plain.vectors, other.vectors)) > 0.3
    assert abs(cos(cond.vectors, other.vectors)) < 1e-6
    assert cos(cond.vectors, plain.vectors) > 0.3 and cond.meta["conditioned_on"] == ["a"]
    # The same projection without data keeps the step's length.
    post = conditional(plain, [other])
    assert abs(cos(post.vectors, other.vectors)) < 1e-6
    assert torch.allclose(post.vectors.norm(), plain.vectors.norm())


def test_conditional_per_cell_with_a_global_other() -> None:
    v = torch.randn(1, 6, 2, 3)
    g = Direction("g", torch.randn(1, 6, 1, 1))
    out = conditional(Direction("p", v, density=2), [g])
    dots = torch.einsum("lchw,lc->hw", out.vectors, g.vectors[..., 0, 0])
    assert dots.abs().max() < 1e-5
    assert torch.allclose(out.vectors.norm(dim=1), v.norm(dim=1), atol=1e-5)


def test_constant_cells_get_no_direction() -> None:
    grid, d = planted(n=300, cells=(1, 2))
    maps = torch.einsum("nlchw,lchw->nhw", grid.data, d)
    maps[:, 0, 1] = 0.5  # this cell's label never changes
    out = AttributeModel().fit(grid, maps)
    assert out.vectors[..., 0, 1].abs().max() == 0 and torch.isnan(out.held_out[0, 0, 1])
    assert out.meta["cells_without_direction"] == 1 and out.held_out[0, 0, 0] > 0.9


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.ones(50), "all one class"),
        (torch.ones(50, 2, 2), "all one class at every cell"),
        (torch.arange(49.0), "49 labels for 50"),
        (torch.full((50,), float("nan")), "NaN"),
        (torch.ones(50, 3, 3), "does not divide"),
    ],
)
def test_bad_labels_are_one_clear_error(labels: torch.Tensor, message: str) -> None:
    grid, _ = planted(n=50)
    with pytest.raises(InputError, match=message):
        AttributeModel().fit(grid, labels)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="lasso"), "unknown method"),
        (dict(locations="everywhere"), "unknown locations"),
        (dict(select_ratio=0.7), "select_ratio"),
        (dict(val_fraction=1.0), "val_fraction"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        AttributeModel(**kwargs)


def test_bad_groups_and_joint_with_maps() -> None:
    grid, _ = planted(n=60, L=4, cells=(2, 2))
    y = torch.randn(60)
    with pytest.raises(InputError, match="layer groups"):
        AttributeModel(layer_groups=[(0, 3), (2, 4)]).fit(grid, y)
    with pytest.raises(InputError, match="per-image labels"):
        AttributeModel(locations="joint").fit(grid, torch.randn(60, 2, 2))
