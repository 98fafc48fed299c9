"""Window: sizes, growing, hulls, containment and per-axis maps."""

from __future__ import annotations

import dataclasses

import pytest

from spatial_latent.latents.window import Window


def test_size_grow_and_contains() -> None:
    w = Window(3, -2, 4, 5)
    assert w.size == (7, 1)
    g = w.grow(2)
    assert g == Window(1, -4, 6, 7) and g.contains(w) and not w.contains(g)
    assert g.grow(-2) == w
    assert w.contains(w)
    assert not Window(0, 0, 4, 4).contains(Window(1, 1, 3, 5))  # sticks out at the bottom


def test_hull() -> None:
    a, b = Window(5, 0, 9, 2), Window(7, -3, 12, 1)
    assert a.hull(b) == b.hull(a) == Window(5, -3, 12, 2)
    assert a.hull(None) is a


def test_map_applies_span_functions_per_axis() -> None:
    w = Window(10, 1, 20, 3)
    assert w.map(lambda s: (2 * s[0], 2 * s[1])) == Window(20, 2, 40, 6)
    assert w.map(lambda s: (s[0] - 1, s[1]), lambda s: (s[0], s[1] + 5)) == Window(10, 0, 25, 3)


def test_windows_are_values() -> None:
    w = Window(0, 0, 1, 1)
    assert w == Window(0, 0, 1, 1) and hash(w) == hash(Window(0, 0, 1, 1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.y0 = 3  # type: ignore[misc]


def test_window_is_exported_from_the_package() -> None:
    import spatial_latent

    assert spatial_latent.Window is Window
