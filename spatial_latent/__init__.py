"""spatial-latent: turn a pretrained StyleGAN2 into a spatial-latent generator.

Public entry points are imported lazily so that ``python -m spatial_latent.<cli> --help`` and
``import spatial_latent`` do no work (no kernels are built, nothing is downloaded).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

_LAZY = {
    "Generator": "networks",
    "GeneratorConfig": "networks",
    "load_generator": "loading",
    "save_generator": "loading",
    "resolve_device": "loading",
    "SpatialLatentError": "errors",
    "CheckpointError": "errors",
    "UnsupportedCheckpointError": "errors",
    "UnsafePickleError": "errors",
    "DownloadError": "errors",
    "InputError": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'spatial_latent' has no attribute {name!r}")
