"""Encoders that invert photos into spatial latent grids.

* :func:`encoders.optimize.invert` — optimization (Adam, StyleGAN2 projector schedule, LPIPS + MSE,
  noise maps, grid-distribution and smoothness regularizers) into a grid, W+ or W;
* :class:`encoders.learned.GridEncoder` — a pSp-like network image -> per-layer grids, trained by
  ``python -m spatial_latent.train_encoder``;
* :func:`encoders.pipeline.encode` — encoder start + N optimization steps (the default pipeline).

Names are imported lazily so that ``python -m spatial_latent.train_encoder --help`` stays instant.
"""

from __future__ import annotations

from spatial_latent._lazy import lazy_exports

_LAZY = {
    "invert": "optimize",
    "OptimizeConfig": "optimize",
    "Inversion": "optimize",
    "encode": "pipeline",
    "GridEncoder": "learned",
    "build_encoder": "learned",
    "load_encoder": "learned",
    "save_encoder": "learned",
    "train_encoder": "training",
    "TrainConfig": "training",
    "ReconstructionLoss": "losses",
    "LpipsWeightsError": "losses",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
