"""The default encoding pipeline: a learned encoder's grid as the start, then optimization.

``encode(G, targets, config, encoder)``: with an encoder, its grid (converted to the configured
space and cell count) is the starting point of ``config.steps`` optimization steps
(``steps=0``: the encoder alone); without one, optimization starts from the average latent.
"""

from __future__ import annotations

from typing import Callable

import torch

from spatial_latent.networks import Generator

from .learned import GridEncoder
from .losses import ReconstructionLoss, WStats
from .optimize import Inversion, OptimizeConfig, check_targets, invert


def encode(
    G: Generator,
    targets: torch.Tensor,
    config: OptimizeConfig | None = None,
    encoder: GridEncoder | None = None,
    loss_fn: ReconstructionLoss | None = None,
    stats: WStats | None = None,
    callback: Callable[[int, int, dict[str, float]], None] | None = None,
) -> Inversion:
    """Encode ``targets`` ``[B, 3, R, R]`` (in [-1, 1]) into latent grids; see :func:`~encoders.optimize.invert`."""
    check_targets(G, targets)
    init = None
    if encoder is not None:
        encoder.check_generator(G)
        with torch.no_grad():
            init = encoder(targets.to(G.device, torch.float32))
    inv = invert(G, targets, config, init=init, loss_fn=loss_fn, stats=stats, callback=callback)
    inv.grid.meta["start"] = "encoder" if encoder is not None else "w_avg"
    return inv

