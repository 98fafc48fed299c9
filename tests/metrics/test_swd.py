"""Sliced Wasserstein distance (ProGAN definition) on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spatial_latent.metrics import frechet_distance, laplacian_pyramid, load_inception, scale_consistency
from spatial_latent.metrics import sliced_wasserstein as full_swd
from spatial_latent.metrics.fid import FIDUnavailable

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the texture images")


def sliced_wasserstein(a, b, **kw):
    kw.setdefault("descriptors_per_image", 32)  # fewer neighbourhoods than ProGAN's 128: fast tests
    return full_swd(a, b, **kw)


def texture_crops(name: str, n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    img = np.asarray(getattr(skimage_data, name)(), dtype=np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    t = torch.from_numpy(img[..., :3]).permute(2, 0, 1) / 127.5 - 1
    g = torch.Generator().manual_seed(seed)
    ys = torch.randint(0, t.shape[1] - size, (n,), generator=g)
    xs = torch.randint(0, t.shape[2] - size, (n,), generator=g)
    return torch.stack([t[:, y : y + size, x : x + size] for y, x in zip(ys.tolist(), xs.tolist())])


def test_identical_sets_give_zero_and_are_deterministic():
    a = texture_crops("gravel", 32)
    assert full_swd(a, a)["mean"] == 0.0
    b = texture_crops("gravel", 32, seed=1)
    assert sliced_wasserstein(a, b, seed=3)["mean"] == sliced_wasserstein(a, b, seed=3)["mean"]


def test_levels_follow_the_laplacian_pyramid_down_to_16px():
    a = texture_crops("grass", 8, size=64)
    r = sliced_wasserstein(a, texture_crops("grass", 8, size=64, seed=2))
    assert list(r["levels"]) == [64, 32, 16]
    # The pyramid is a complete decomposition: upsampling and summing the levels gives the image back.
    levels = laplacian_pyramid(a.double())
    from spatial_latent.metrics.swd import _up

    x = levels[-1]
    for band in reversed(levels[:-1]):
        x = _up(x) + band
    assert torch.allclose(x, a.double(), atol=1e-10)


def test_same_distribution_is_closer_than_another_texture():
    a, b = texture_crops("gravel", 64, seed=0), texture_crops("gravel", 64, seed=1)
    other = texture_crops("brick", 64, seed=0)
    same = sliced_wasserstein(a, b)["mean"]
    diff = sliced_wasserstein(a, other)["mean"]
    assert diff > 2 * same, (same, diff)


def test_colour_shifts_grow_the_distance_monotonically():
    a = texture_crops("coffee", 64)
    g = torch.Generator().manual_seed(0)
    tint = torch.randn(64, 3, 1, 1, generator=g)
    d = [sliced_wasserstein(a, a + s * tint)["mean"] for s in (0.0, 0.05, 0.2, 0.5)]
    assert d[0] == 0.0
    assert d[1] < d[2] < d[3], d


def test_blur_shows_up_at_the_fine_levels():
    a = texture_crops("gravel", 48, size=64)
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    k2 = torch.outer(k, k).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(a, [1, 1, 1, 1], mode="reflect"), k2, groups=3)
    levels = sliced_wasserstein(a, blurred)["levels"]
    assert levels[64] > 3 * levels[16], levels
    twice = F.conv2d(F.pad(blurred, [1, 1, 1, 1], mode="reflect"), k2, groups=3)
    assert sliced_wasserstein(a, twice)["levels"][64] > levels[64]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one shape"):
        sliced_wasserstein(torch.zeros(2, 3, 16, 16), torch.zeros(3, 3, 16, 16))


def test_scale_consistency_of_a_stationary_source():
    real = texture_crops("gravel", 32, size=32, seed=5)
    img = torch.from_numpy(np.asarray(skimage_data.gravel(), dtype=np.float32) / 127.5 - 1)[None].repeat(3, 1, 1)

    def render(scale: int, count: int) -> torch.Tensor:  # windows of the real texture: consistent at any size
        s = 32 * scale
        return torch.stack([img[:, 7 * i : 7 * i + s, 11 * i : 11 * i + s] for i in range(count)])

    def stretched(scale: int, count: int) -> torch.Tensor:  # a "generator" that just upsamples: not consistent
        small = render(1, count)
        return F.interpolate(small, scale_factor=scale, mode="bilinear", align_corners=False)

    good = scale_consistency(render, real, descriptors_per_image=32)
    bad = scale_consistency(stretched, real, descriptors_per_image=32)
    assert good[4] < 1.5 * good[1], good
    assert bad[4] > 1.5 * bad[1], bad


def test_frechet_distance_of_gaussians_matches_the_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 4))
    b = rng.normal(0.5, 2.0, size=(20000, 4))
    # Independent coordinates: |mu|^2 + sum(1 + 4 - 2 * sqrt(1 * 4)) = 4 * 0.25 + 4 * 1 = 5.
    assert frechet_distance(a, b) == pytest.approx(5.0, rel=0.05)
    assert abs(frechet_distance(a, a)) < 1e-6


def test_fid_without_weights_says_where_they_go(tmp_path):
    with pytest.raises(FIDUnavailable, match="inception_v3.pth.*offline"):
        load_inception(tmp_path / "inception_v3.pth")
