"""The toolkit's own generator format: one ``.safetensors`` file that cannot run code.

The tensors are the canonical state dict (NVIDIA layout, see :mod:`spatial_latent.networks`);
the safetensors header's metadata holds ``format``, ``format_version``, the generator config as
JSON, the toolkit version and ``tensors_sha256`` (see :mod:`spatial_latent.io.safetensors_io`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write
from ..errors import CheckpointError
from ..io.safetensors_io import save_safetensors, verify_tensors_sha256
from ..limits import MAX_CHECKPOINT_BYTES, check_file_size
from ..networks import GeneratorConfig
from .validate import checked_weights, config_from_json, validate_state_dict

NATIVE_FORMAT = "spatial-latent-generator"
NATIVE_VERSION = "1"


def write_native(
    path: str | os.PathLike,
    config: GeneratorConfig,
    state_dict: dict[str, torch.Tensor],
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``state_dict`` + ``config`` to ``path`` atomically (temporary file, then rename).

    Metadata keys are sorted and the tensors' SHA-256 stored (``tensors_sha256``), so the same
    generator gives the same bytes and :func:`read_native` can tell a damaged file.
    """
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
        save_safetensors(tmp, tensors, meta)
    return path


def read_native(path: str | os.PathLike) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`write_native`: ``(config, state_dict, metadata)``.

    Held to the rules foreign checkpoints are: the config JSON is parsed with bounds and every
    field type-checked, the weights must be finite floating-point tensors whose keys and shapes
    match the config, hyper-parameters must be plausible, and the stored SHA-256 of the tensors
    (files written since it was introduced) must match. Every failure is one
    :class:`CheckpointError` line.
    """
    from safetensors import safe_open

    path = Path(path)
    source = str(path)
    check_file_size(path, MAX_CHECKPOINT_BYTES, "native generator")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            if meta.get("format") != NATIVE_FORMAT:
                raise CheckpointError(f"{path}: a safetensors file, but not a spatial-latent generator (no '{NATIVE_FORMAT}' metadata)")
            if meta.get("format_version") != NATIVE_VERSION:
                raise CheckpointError(f"{path}: native format version {str(meta.get('format_version'))[:40]!r} is not supported (expected {NATIVE_VERSION})")
            config = config_from_json(meta.get("config"), source)
            # keys and shapes from the header, checked before any tensor is read
            validate_state_dict(config, {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}, source=source)
            raw = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({type(e).__name__}: {str(e)[:200]})") from None
    verify_tensors_sha256(raw, meta, source, CheckpointError)
    state = checked_weights(raw, source)
    return config, state, meta

