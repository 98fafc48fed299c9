"""Image-set metrics: sliced Wasserstein distance (no download needed) and FID (needs weights)."""

from .fid import FIDUnavailable, frechet_distance, inception_features, load_inception
from .swd import laplacian_pyramid, scale_consistency, sliced_wasserstein

__all__ = [
    "FIDUnavailable",
    "frechet_distance",
    "inception_features",
    "load_inception",
    "laplacian_pyramid",
    "scale_consistency",
    "sliced_wasserstein",
]
