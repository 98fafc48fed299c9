"""DiffAugment transforms: what each does, reproducibility, gradients."""

from __future__ import annotations

import pytest
import torch

from spatial_latent.training.augment import augment, parse_policy
from spatial_latent.errors import InputError


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_translation_shifts_by_whole_pixels_and_fills_zeros():
    x = torch.rand(8, 3, 32, 32) + 1  # strictly positive, so zeros mark the filled border
    y = augment(x, ("translation",), gen())
    for i in range(8):
        # find the shift: the output equals the input moved by (dy, dx), zeros elsewhere
        found = False
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                moved = torch.zeros_like(x[i])
                src = x[i][:, max(0, -dy) : 32 - max(0, dy), max(0, -dx) : 32 - max(0, dx)]
                moved[:, max(0, dy) : max(0, dy) + src.shape[1], max(0, dx) : max(0, dx) + src.shape[2]] = src
                if torch.equal(moved, y[i]):
                    found = True
        assert found, f"image {i} is not an integer shift of at most 4 px"


def test_cutout_zeroes_one_square_of_half_the_side():
    x = torch.ones(16, 3, 32, 32)
    y = augment(x, ("cutout",), gen(1))
    zeros = (y[:, 0] == 0).sum(dim=(1, 2))
    assert (zeros <= 16 * 16).all() and (zeros >= 8 * 8).all()  # a 16x16 square, possibly cut by the border
    assert (zeros == 256).sum() >= 4
    for i in range(16):
        rows = (y[i, 0] == 0).any(dim=1).nonzero()
        cols = (y[i, 0] == 0).any(dim=0).nonzero()
        assert (y[i, 0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] == 0).all()  # one solid rectangle


def test_color_changes_brightness_within_bounds_and_passes_gradients():
    x = torch.zeros(64, 3, 8, 8, requires_grad=True)
    y = augment(x, ("color",), gen(2))
    shift = y.detach().mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.5 and shift.std() > 0.1
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_same_generator_same_augmentation_and_empty_policy_is_identity():
    x = torch.rand(4, 3, 16, 16)
    pol = parse_policy("color,translation,cutout")
    assert torch.equal(augment(x, pol, gen(5)), augment(x, pol, gen(5)))
    assert not torch.equal(augment(x, pol, gen(5)), augment(x, pol, gen(6)))
    assert augment(x, parse_policy(""), gen()) is x
    with pytest.raises(InputError, match="unknown augmentation"):
        parse_policy("color,blur")
