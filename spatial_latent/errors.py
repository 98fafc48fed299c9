"""Exception types raised by spatial-latent.

Every error a user can cause (a bad file, a bad flag, a missing download) is a subclass of
:class:`SpatialLatentError`, so CLIs can print one line and exit non-zero.
"""

from __future__ import annotations


class SpatialLatentError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class CheckpointError(SpatialLatentError):
    """A checkpoint file is missing, truncated, corrupt or inconsistent (keys, shapes)."""


class UnsupportedCheckpointError(CheckpointError):
    """A readable checkpoint of a kind the toolkit does not support (e.g. StyleGAN3 t/r)."""


class UnsafePickleError(CheckpointError):
    """A pickle asked for a global outside the allow-list (it may try to run code)."""


class DownloadError(SpatialLatentError):
    """A well-known network could not be downloaded or failed its hash check."""


class InputError(SpatialLatentError):
    """Bad user input: sizes, shapes, NaNs, unreadable images, bad flags."""
