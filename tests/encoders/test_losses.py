"""Losses and regularizers; LPIPS without its weights is one clear error; the Adam optimizer."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from encoders.adam import Adam
from encoders.losses import (
    LpipsWeightsError,
    ReconstructionLoss,
    WStats,
    grid_distribution_loss,
    load_lpips,
    lpips_backbone_path,
    noise_regularization,
    normalize_noise_,
    random_directions,
    smoothness_loss,
)
from spatial_latent.errors import DownloadError, InputError
from spatial_latent.networks import Generator


def test_lpips_offline_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # follow TORCH_HOME even if set_dir was called

    def offline(url: str, dst: str, *a: object, **k: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert lpips_backbone_path("vgg") == expected
    with pytest.raises(LpipsWeightsError, match="LPIPS-vgg needs its pretrained backbone vgg16-397923af.pth, which is not in the torch hub cache") as e:
        load_lpips("vgg")
    msg = str(e.value)
    assert isinstance(e.value, DownloadError) and "\n" not in msg
    assert str(expected) in msg and "--loss mse" in msg and "unreachable" in msg
    assert not expected.exists()  # nothing half-written
    with pytest.raises(LpipsWeightsError, match="alexnet-owt"):
        ReconstructionLoss("lpips+mse", lpips_net="alex")
    assert ReconstructionLoss("mse").lpips is None  # MSE alone never touches the backbone


def test_mse_loss_per_sample() -> None:
    a = torch.zeros(3, 3, 8, 8)
    b = a.clone()
    b[1] += 0.5
    parts = ReconstructionLoss("mse")(a, b)
    assert torch.allclose(parts["total"], torch.tensor([0.0, 0.25, 0.0])) and "lpips" not in parts
    with pytest.raises(InputError, match=r"unknown loss 'l1'; expected one of \('lpips\+mse', 'lpips', 'mse'\)"):
        ReconstructionLoss("l1")
    with pytest.raises(InputError, match=r"unknown LPIPS network 'resnet'; expected one of \('vgg', 'alex'\)"):
        load_lpips("resnet")


def test_noise_regularization_tells_noise_from_structure() -> None:
    g = torch.Generator().manual_seed(0)
    white = [torch.randn(2, 1, 64, 64, generator=g), torch.randn(2, 1, 16, 16, generator=g)]
    smooth = [F.interpolate(torch.randn(2, 1, 8, 8, generator=g), size=s, mode="bilinear") for s in (64, 16)]
    normalize_noise_(smooth)
    for m in smooth:
        assert m.mean(dim=(1, 2, 3)).abs().max() < 1e-5 and (m.std(dim=(1, 2, 3)) - 1).abs().max() < 1e-5
    r_white, r_smooth = noise_regularization(white), noise_regularization(smooth)
    assert r_white.shape == (2,) and (r_smooth > 20 * r_white).all()


def test_distribution_loss_measures_distance_to_w(G: Generator) -> None:
    stats = WStats.from_generator(G, num_samples=4000)
    assert stats.scale > 0 and torch.equal(stats.mean, G.mapping.w_avg)
    g = torch.Generator().manual_seed(1)
    fresh = G.mapping(torch.randn(64, G.z_dim, generator=g)).t().reshape(1, 1, G.w_dim, 8, 8)  # 64 generated cells
    dirs = random_directions(256, G.w_dim, g)
    in_dist = float(grid_distribution_loss(fresh, stats, dirs))
    shift = torch.zeros(G.w_dim)
    shift[0] = 3 * stats.scale
    moved = float(grid_distribution_loss(fresh + shift.view(1, 1, -1, 1, 1), stats, dirs))
    collapsed = float(grid_distribution_loss(fresh.mean(dim=(3, 4), keepdim=True).expand_as(fresh), stats, dirs))
    assert in_dist < 0.5 * moved and moved == pytest.approx(9 + in_dist, rel=0.5)  # units: spreads squared
    assert in_dist < collapsed  # all cells equal is not how generated cells are distributed
    # per sample and per layer: a batch of two with one bad sample
    batch = torch.cat([fresh, fresh + shift.view(1, 1, -1, 1, 1)]).expand(-1, 3, -1, -1, -1)
    per = grid_distribution_loss(batch, stats, dirs)
    assert per.shape == (2,) and per[0] == pytest.approx(in_dist, rel=1e-4) and per[1] == pytest.approx(moved, rel=1e-4)


def test_smoothness_loss(G: Generator) -> None:
    stats = WStats.from_generator(G, num_samples=500)
    flat = G.mapping.w_avg.view(1, 1, -1, 1, 1).expand(2, 1, -1, 4, 4)
    assert torch.equal(smoothness_loss(flat, stats), torch.zeros(2))
    rough = flat + torch.randn(2, 1, G.w_dim, 4, 4)
    assert (smoothness_loss(rough, stats) > 0).all()


def test_adam_matches_torch_adam() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(5, 7, generator=g)
    a = torch.zeros(5, 7, requires_grad=True)
    b = torch.zeros(5, 7, requires_grad=True)
    ours = Adam([a], lr=0.05)
    ref = torch.optim.Adam([b], lr=0.05)
    for step in range(20):
        for p, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            ((p - target) ** 3).abs().sum().backward()
            opt.step()
        if step == 9:
            ours.lr = ref.param_groups[0]["lr"] = 0.01
    assert torch.allclose(a, b, atol=1e-6)
    state = ours.state_dict()
    fresh = Adam([a.detach().clone().requires_grad_()], lr=0.05)
    fresh.load_state_dict(state)
    assert fresh.step_count == 20 and torch.equal(fresh.m[0], ours.m[0])
    with pytest.raises(ValueError, match="optimizer state does not match the parameters"):
        Adam([torch.zeros(2, requires_grad=True)]).load_state_dict(state)
