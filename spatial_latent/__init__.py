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
    "load_generator": "checkpoints.loading",
    "save_generator": "checkpoints.loading",
    "resolve_device": "checkpoints.loading",
    "LatentGrid": "latents.grid",
    "SpatialGenerator": "render.generator",
    "Window": "render.generator",
    "compose_faces": "latents.compose",
    "copy_cells": "latents.compose",
    "LatentField": "latents.field",
    "TileSampler": "render.tiles",
    "to_uint8": "io.pictures",
    "image_grid": "io.pictures",
    "save_picture": "io.pictures",
    "read_image": "io.pictures",
    "align_face": "faces.align",
    "SpatialLatentError": "errors",
    "CheckpointError": "errors",
    "UnsupportedCheckpointError": "errors",
    "UnsafePickleError": "errors",
    "DownloadError": "errors",
    "InputError": "errors",
}

__all__ = ["__version__", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
