"""Shared fixtures of the encoder tests: tiny generators with noise switched on, one torch thread."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

from spatial_latent.networks import Generator
from support import noisy_generator


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Tiny convolutions are far slower with two threads than one on a busy shared CPU.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def G() -> Generator:
    return noisy_generator("skip", seed=3, strength=0.2)  # noise on, so that noise maps matter
