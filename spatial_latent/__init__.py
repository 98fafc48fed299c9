"""spatial-latent: turn a pretrained StyleGAN2 into a spatial-latent generator.

Public entry points are imported lazily so that ``python -m spatial_latent.<cli> --help`` and
``import spatial_latent`` do no work (no kernels are built, nothing is downloaded).
"""

from __future__ import annotations

from ._lazy import lazy_exports
from ._version import __version__

_LAZY = {
    "Generator": "networks",
    "GeneratorConfig": "networks",
    "load_generator": "loading",
    "save_generator": "loading",
    "resolve_device": "loading",
    "LatentGrid": "latent_grid",
    "SpatialGenerator": "spatial",
    "Window": "spatial",
    "compose_faces": "compose",
    "copy_cells": "compose",
    "LatentField": "field",
    "TileSampler": "tiling",
    "to_uint8": "images",
    "image_grid": "images",
    "save_picture": "images",
    "read_image": "imageio",
    "align_face": "align",
    "SpatialLatentError": "errors",
    "CheckpointError": "errors",
    "UnsupportedCheckpointError": "errors",
    "UnsafePickleError": "errors",
    "DownloadError": "errors",
    "InputError": "errors",
}

__all__ = ["__version__", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
