"""The toolkit's own generator format: one ``.safetensors`` file that cannot run code.

The tensors are the canonical state dict (NVIDIA layout, see :mod:`spatial_latent.networks`);
the safetensors header's metadata holds ``format``, ``format_version``, the generator config as
JSON and the toolkit version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write
from ..errors import CheckpointError
from ..networks import GeneratorConfig

NATIVE_FORMAT = "spatial-latent-generator"
NATIVE_VERSION = "1"


def write_native(
    path: str | os.PathLike,
    config: GeneratorConfig,
    state_dict: dict[str, torch.Tensor],
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``state_dict`` + ``config`` to ``path`` atomically (temporary file, then rename)."""
    from safetensors.torch import save_file

    from .. import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    meta = {
        "format": NATIVE_FORMAT,
        "format_version": NATIVE_VERSION,
        "config": config.to_json(),
        "toolkit_version": __version__,
    }
    meta.update(extra_metadata or {})
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_native(path: str | os.PathLike) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`write_native`: ``(config, state_dict, metadata)``."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            if meta.get("format") != NATIVE_FORMAT:
                raise CheckpointError(f"{path}: a safetensors file, but not a spatial-latent generator (no '{NATIVE_FORMAT}' metadata)")
            if meta.get("format_version") != NATIVE_VERSION:
                raise CheckpointError(f"{path}: native format version {meta.get('format_version')!r} is not supported (expected {NATIVE_VERSION})")
            state = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({type(e).__name__}: {e})") from None
    try:
        config = GeneratorConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid generator config in metadata ({e})") from None
    return config, state, meta
