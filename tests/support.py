"""Shared test helpers (a plain module, importable from every test folder): fixture sets, the tiny
generator configs and "turn noise on"."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
STYLEGAN2_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "stylegan2"

FIXTURE_SETS = {
    # name: (checkpoint file, flavour)
    "rosinality_64": ("checkpoint.pt", "rosinality"),
    "rosinality_32_cm1": ("checkpoint.pt", "rosinality"),
    "nvidia_ada_64": ("network-snapshot.pkl", "nvidia"),
    "nvidia_ada_cond_32": ("network-snapshot.pkl", "nvidia"),
    "nvidia_tf_64": ("network-tf.pkl", "nvidia"),
}


def fixture_set_dir(name: str) -> Path:
    """The folder of one reference set, or skip the test with a reason when it is absent."""
    path = STYLEGAN2_FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"reference fixtures not found at {path} (they live in ../shared beside the checkout)")
    return path


TINY_CONFIGS = {
    # Small enough for CI, covering every architecture and conditioning.
    "skip": dict(z_dim=32, w_dim=32, img_resolution=32, channels={4: 32, 8: 32, 16: 16, 32: 16}, mapping_layers=2),
    "resnet": dict(z_dim=32, w_dim=32, img_resolution=32, channels={4: 32, 8: 32, 16: 16, 32: 16}, mapping_layers=2, architecture="resnet"),
    "orig": dict(z_dim=32, w_dim=32, img_resolution=16, channels={4: 32, 8: 16, 16: 16}, mapping_layers=3, architecture="orig", conv_clamp=256.0),
    "cond": dict(z_dim=16, w_dim=24, img_resolution=16, channels={4: 16, 8: 16, 16: 8}, mapping_layers=2, c_dim=3, mapping_hidden=20, embed_features=12),
}


def set_noise_strength(G, strength: float):
    """Set the ``noise_strength`` of every synthesis layer of ``G`` and return ``G``.

    Random initialisation leaves the strengths at 0, so per-pixel noise would change nothing and
    every test of noise handling would pass vacuously; tests turn it on with this."""
    layers = [m for m in G.modules() if hasattr(m, "noise_strength")]
    assert layers, "this generator has no noise layers"
    with torch.no_grad():
        for m in layers:
            m.noise_strength.fill_(strength)
    return G


def noisy_generator(name: str = "skip", seed: int = 0, strength: float = 0.3):
    """A random generator of the tiny config ``name`` (see :data:`TINY_CONFIGS`) with noise on."""
    from spatial_latent.checkpoints.loading import random_generator

    return set_noise_strength(random_generator(TINY_CONFIGS[name], seed=seed), strength)
