"""Fréchet Inception Distance, for users who have the Inception-v3 weights.

The weights cannot be fetched here (no network); :func:`load_inception` looks for a torchvision
``inception_v3`` state dict at the path given, or as ``inception_v3.pth`` in the download cache
(:func:`spatial_latent.checkpoints.hub.cache_dir`), and raises :class:`FIDUnavailable` with one line
saying where to put it. Nothing continues with a randomly initialised network.
Numbers are comparable between runs of this toolkit, not with other FID implementations
(which use the TF-ported weights and their own resizing).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoints.hub import cache_dir
from ..errors import SpatialLatentError

WEIGHTS_NAME = "inception_v3.pth"


class FIDUnavailable(SpatialLatentError):
    """The Inception weights FID needs are not on this machine."""


def default_weights_path() -> Path:
    """Where the Inception weights are looked for: ``inception_v3.pth`` in the download cache."""
    return cache_dir() / WEIGHTS_NAME


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """torchvision Inception-v3 with the user's weights, returning 2048-d pool features."""
    p = Path(path) if path is not None else default_weights_path()
    if not p.is_file():
        raise FIDUnavailable(
            f"FID needs Inception-v3 weights at {p} (a torchvision inception_v3 state dict, e.g. "
            "inception_v3_google-0cc3c7bd.pth renamed); they cannot be downloaded offline. SWD needs no weights."
        )
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    state = torch.load(p, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.fc = torch.nn.Identity()
    return net.eval().requires_grad_(False).to(device)


@torch.no_grad()
def inception_features(net: torch.nn.Module, images: torch.Tensor, batch: int = 32) -> np.ndarray:
    """``images [N, 3, H, W]`` in [-1, 1] -> features ``[N, 2048]`` (resized to 299 px)."""
    dev = next(net.parameters()).device
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).reshape(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch].to(dev, torch.float32)
        x = F.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False)
        out.append(net((x - mean) / std).cpu().double())
    return torch.cat(out).numpy()


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to ``[N, D]`` feature sets:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``."""
    from scipy import linalg

    mu_a, mu_b = feat_a.mean(0), feat_b.mean(0)
    s_a, s_b = np.cov(feat_a, rowvar=False), np.cov(feat_b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # near-singular product: regularize
        eps = 1e-6 * np.eye(s_a.shape[0])
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = np.real(covmean)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))
