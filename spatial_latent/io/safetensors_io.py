"""Writing ``.safetensors`` files byte-for-byte reproducibly, with a checksum of their tensors.

The ``safetensors`` package writes its metadata from a hash map, so the same tensors and the same
metadata give files whose header keys come in a different order from run to run. The toolkit's
own files (native generators, latent grids) are written here instead: header keys sorted, tensors
in name order, and a SHA-256 of the tensors (:func:`tensors_sha256`) stored in the metadata under
:data:`SHA256_KEY`, verified on load by :func:`verify_tensors_sha256`. The files are plain
safetensors: ``safetensors.safe_open`` reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping

import torch

from ..errors import SpatialLatentError

__all__ = ["SHA256_KEY", "save_safetensors", "tensors_sha256", "verify_tensors_sha256"]

#: Metadata key holding the hex SHA-256 of the tensors (see :func:`tensors_sha256`).
SHA256_KEY = "tensors_sha256"

_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def _raw(t: torch.Tensor) -> memoryview:
    """The little-endian bytes of ``t`` (C order), without a copy where it is already contiguous."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def _code(name: str, t: torch.Tensor) -> str:
    try:
        return _DTYPES[t.dtype]
    except KeyError:
        raise SpatialLatentError(f"tensor {name!r} has dtype {t.dtype}, which the file format cannot hold") from None


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 over every tensor, in name order: its name, dtype code, shape and raw bytes.

    Independent of how the file lays them out, so a file's stored value can be checked against
    the tensors read back from it.
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        head = json.dumps([name, _code(name, t), list(t.shape)], separators=(",", ":")).encode()
        h.update(len(head).to_bytes(8, "little"))
        h.update(head)
        h.update(_raw(t))
    return h.hexdigest()


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """Write ``tensors`` and ``metadata`` (plus :data:`SHA256_KEY`) to ``path`` as safetensors.

    Header keys are sorted and tensors stored in name order, so equal inputs give equal bytes.
    Returns the tensors' SHA-256. ``path`` is written directly: wrap the call in
    :func:`~spatial_latent.atomic.atomic_write`.
    """
    meta = {str(k): str(v) for k, v in metadata.items()}
    digest = tensors_sha256(tensors)
    meta[SHA256_KEY] = digest
    header: dict[str, object] = {"__metadata__": dict(sorted(meta.items()))}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _code(name, t), "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name in names:
            f.write(_raw(tensors[name]))
    return digest


def verify_tensors_sha256(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], source: str, error: type[SpatialLatentError]
) -> bool:
    """Check the tensors read from a file against the SHA-256 its metadata stores.

    Returns False when the file stores none (written by an earlier spatial-latent), True when it
    matches; raises ``error`` (one line) on a mismatch.
    """
    stored = metadata.get(SHA256_KEY)
    if stored is None:
        return False
    actual = tensors_sha256(tensors)
    if actual != stored:
        raise error(
            f"{source}: checksum mismatch: the file records tensors with sha256 {str(stored)[:64]}, its tensors hash to "
            f"{actual}; the file is corrupt or was altered"
        )
    return True
