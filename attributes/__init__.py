"""Attribute model: per-location edit directions, direction banks and masked edits.

* :class:`AttributeModel` fits supervised directions (per cell, optionally per layer group) from
  latent grids and labels, or from samples it draws and labels itself;
  :func:`pca_directions` and :func:`sefa_directions` find unsupervised ones.
* :class:`DirectionBank` saves named directions for one generator (``.npz``, no pickles).
* :func:`edit` / :func:`apply_edits` move a grid along directions inside a mask (the mask
  builders ``box_mask``, ``image_mask``, ``cell_mask`` live in :mod:`spatial_latent.latents.masks`).

Names are imported lazily so that ``python -m spatial_latent.fit --help`` does no work.
"""

from __future__ import annotations

from spatial_latent._lazy import lazy_exports

_LAZY = {
    "AttributeModel": "supervised",
    "Direction": "direction",
    "conditional": "direction",
    "DirectionBank": "bank",
    "Edit": "edits",
    "edit": "edits",
    "apply_edits": "edits",
    "strength_series": "edits",
    "box_mask": "spatial_latent.latents.masks",
    "image_mask": "spatial_latent.latents.masks",
    "cell_mask": "spatial_latent.latents.masks",
    "pca_directions": "unsupervised",
    "sefa_directions": "unsupervised",
    "sample_grids": "sampling",
    "sample_labeled": "sampling",
    "get_labeler": "labelers",
    "RegionLabeler": "labelers",
    "MapLabeler": "labelers",
    "FunctionLabeler": "labelers",
    "load_csv_dataset": "labelers",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
