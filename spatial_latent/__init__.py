"""spatial-latent: turn a pretrained StyleGAN2 into a spatial-latent generator.

Public entry points are imported lazily so that ``python -m spatial_latent.<cli> --help`` and
``import spatial_latent`` do no work (no kernels are built, nothing is downloaded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__

if TYPE_CHECKING:  # type checkers see the real types; at run time _LAZY imports them on first use
    from .checkpoints.loading import load_generator, resolve_device, save_generator
    from .errors import (
        CheckpointError,
        DownloadError,
        InputError,
        SpatialLatentError,
        UnsafePickleError,
        UnsupportedCheckpointError,
    )
    from .faces.align import align_face
    from .io.pictures import image_grid, read_image, save_picture, to_uint8
    from .latents.compose import compose_faces, copy_cells
    from .latents.field import LatentField
    from .latents.grid import LatentGrid
    from .latents.masks import box_mask, cell_mask, image_mask, soft_box
    from .latents.window import Window
    from .networks import Generator, GeneratorConfig
    from .render.generator import SpatialGenerator
    from .render.plan import PaddingMode
    from .render.tiles import TileSampler

_LAZY = {
    "Generator": "networks",
    "GeneratorConfig": "networks",
    "load_generator": "checkpoints.loading",
    "save_generator": "checkpoints.loading",
    "resolve_device": "checkpoints.loading",
    "LatentGrid": "latents.grid",
    "SpatialGenerator": "render.generator",
    "Window": "latents.window",
    "PaddingMode": "render.plan",
    "compose_faces": "latents.compose",
    "copy_cells": "latents.compose",
    "cell_mask": "latents.masks",
    "box_mask": "latents.masks",
    "soft_box": "latents.masks",
    "image_mask": "latents.masks",
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
