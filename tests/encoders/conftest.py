"""Shared fixtures of the encoder tests: tiny generators with noise switched on, one torch thread."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.networks import Generator
from support import TINY_CONFIGS


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Tiny convolutions are far slower with two threads than one on a busy shared CPU.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def noisy_generator(name: str = "skip", seed: int = 3) -> Generator:
    G = random_generator(TINY_CONFIGS[name], seed=seed)
    for m in G.modules():  # random init leaves noise off; turn it on so noise maps matter
        if hasattr(m, "noise_strength"):
            m.noise_strength.data.fill_(0.2)
    return G


@pytest.fixture(scope="module")
def G() -> Generator:
    return noisy_generator()
