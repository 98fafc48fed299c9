"""Readers for users' pretrained StyleGAN2 checkpoints, converted to one canonical layout.

Public API::

    detect_format(path) -> 'nvidia-pkl' | 'tf-pkl' | 'torch' | 'safetensors' | 'unknown'
    read_checkpoint(path) -> ConvertedCheckpoint
    validate_state_dict(config, state_dict, *, require_w_avg=True)   # from .validate
    expected_shapes(config) -> {key: shape}                          # from .validate

The canonical layout is NVIDIA stylegan2-ada-pytorch's ``Generator.state_dict()`` names without
the constant ``resample_filter`` buffers (see :mod:`spatial_latent.checkpoints.validate` for the exact
key/shape table). Supported inputs:

* ``nvidia-pkl``: stylegan2-ada-pytorch / stylegan3-repo StyleGAN2 snapshot pickles
  (:mod:`.nvidia`), read with a restricted unpickler (:mod:`.safe_pickle`) that never imports
  ``dnnlib`` / ``torch_utils`` and never executes the embedded network source;
* ``tf-pkl``: original TensorFlow StyleGAN2 ``(G, D, Gs)`` pickles (:mod:`.tensorflow`);
* ``torch``: ``torch.save`` files read with ``weights_only=True`` (:mod:`.rosinality`):
  rosinality stylegan2-pytorch checkpoints, pSp/e4e checkpoints, NVIDIA-layout state dicts.

Native ``.safetensors`` files are detected (``'safetensors'``) but read elsewhere.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, UnsupportedCheckpointError
from ..limits import MAX_CHECKPOINT_BYTES, check_file_size
from ..networks import GeneratorConfig
from .nvidia import convert_nvidia_snapshot
from .rosinality import convert_torch_checkpoint, load_torch_file
from .safe_pickle import PersistentObject, TensorRecord, TFNetworkStub, load_pickle_file
from .tensorflow import convert_tf_pickle
from .validate import check_config_values, checked_weights, expected_shapes, infer_config, validate_state_dict

logger = logging.getLogger(__name__)

__all__ = [
    "ConvertedCheckpoint",
    "FORMATS",
    "detect_format",
    "expected_shapes",
    "infer_config",
    "read_checkpoint",
    "validate_state_dict",
]

FORMATS = ("nvidia-pkl", "tf-pkl", "torch", "safetensors", "unknown")

# First bytes of a legacy (pre-1.6, non-zip) torch.save file: a protocol-2 pickle of its magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
_HEAD_BYTES = 1 << 16


@dataclasses.dataclass
class ConvertedCheckpoint:
    """A generator read from a foreign checkpoint, in canonical form.

    Attributes:
        config: every hyper-parameter, widths read from tensor shapes.
        state_dict: canonical key -> float32, contiguous CPU tensor, exactly the keys and
            shapes of :func:`~spatial_latent.checkpoints.validate.expected_shapes` (so it loads
            with ``strict=True``), including ``mapping.w_avg [w_dim]``.
        w_avg_present: False when the file stores no average W (rosinality training
            checkpoints, pSp without ``latent_avg``); ``mapping.w_avg`` is then all zeros, a
            placeholder the caller must replace (e.g. by sampling the mapping network).
        source_format: ``'nvidia-pkl'``, ``'tf-pkl'``, ``'rosinality'``, ``'psp'`` (pSp/e4e
            decoder) or ``'nvidia-torch'`` (NVIDIA-layout state dict in a torch file).
        info: small JSON-friendly extras for display (which network was used, stored
            constructor kwargs, training-set kwargs, rosinality ``args``, pSp ``opts``, ...).
    """

    config: GeneratorConfig
    state_dict: dict[str, torch.Tensor]
    w_avg_present: bool
    source_format: str
    info: dict[str, Any]


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, not a checkpoint file")
    if not p.is_file():
        raise CheckpointError(f"{p}: is not a regular file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read checkpoint file ({exc})") from exc
    if size == 0:
        raise CheckpointError(f"{p}: checkpoint file is empty (0 bytes)")
    check_file_size(p, MAX_CHECKPOINT_BYTES, "generator checkpoint")
    return p


def _first_global_module(head: bytes) -> str | None:
    """Module named by the first GLOBAL / STACK_GLOBAL opcode of a pickle prefix, if any."""
    strings: list[str] = []  # strings pushed so far (STACK_GLOBAL takes the last two)
    memo: dict[int, Any] = {}
    last: Any = None  # what the previous opcode pushed, for MEMOIZE / PUT
    try:
        for n, (op, arg, _pos) in enumerate(pickletools.genops(io.BytesIO(head))):
            if n > 10_000:
                return None
            name = op.name
            pushed: Any = None
            if name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                pushed = arg
            elif name == "MEMOIZE":
                memo[len(memo)] = last
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = last
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(arg)
            elif name == "GLOBAL":
                return str(arg).split(" ", 1)[0]
            elif name == "STACK_GLOBAL":
                return strings[-2] if len(strings) >= 2 else None
            elif name == "STOP":
                return None
            if isinstance(pushed, str):
                strings.append(pushed)
            if name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"):
                last = pushed
    except Exception:  # a prefix ends mid-opcode, or the bytes are not a pickle
        return None
    return None


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def detect_format(path: str | os.PathLike) -> str:
    """Identify a checkpoint file from its bytes.

    Returns ``'nvidia-pkl'`` (any other pickle: NVIDIA snapshots and unknown pickles, which the
    safe NVIDIA reader then rejects with a clear message), ``'tf-pkl'`` (first global is
    ``dnnlib.tflib``), ``'torch'`` (a torch zip file with ``data.pkl``, or a legacy torch.save
    file), ``'safetensors'`` or ``'unknown'``.

    Raises :class:`CheckpointError` for a missing, empty or non-regular file.
    """
    p = _check_file(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read checkpoint file ({exc})") from exc
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(p) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "torch"  # a truncated torch zip; read_checkpoint reports it as corrupt
        return "torch" if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names) else "unknown"
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch"
    if _looks_like_safetensors(head, size):
        return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        module = _first_global_module(head)
        if module is not None and module.startswith("dnnlib.tflib"):
            return "tf-pkl"
        return "nvidia-pkl"
    if p.suffix.lower() in (".pkl", ".pickle"):
        return "nvidia-pkl"  # protocol 0/1 pickle: the safe reader decides
    return "unknown"


def _records_to_tensors(obj: Any) -> dict | None:
    """A pickled ``{name: tensor}`` dict (possibly one level nested) with records unwrapped.

    Returns None unless ``obj`` holds tensors and no persistent network objects.
    """
    if not isinstance(obj, dict) or any(isinstance(v, PersistentObject) for v in obj.values()):
        return None
    out: dict = {}
    found = False
    for k, v in obj.items():
        if isinstance(v, TensorRecord):
            out[k], found = v.tensor, True
        elif isinstance(v, dict):
            inner = {ik: (iv.tensor if isinstance(iv, TensorRecord) else iv) for ik, iv in v.items()}
            found = found or any(isinstance(iv, TensorRecord) for iv in v.values())
            out[k] = inner
        else:
            out[k] = v
    return out if found else None


def _finalise(
    config: GeneratorConfig, state_dict: dict[str, torch.Tensor], info: dict, source: str
) -> ConvertedCheckpoint:
    sd = dict(state_dict)
    w_avg_present = "mapping.w_avg" in sd
    if not w_avg_present:
        # placeholder so the state dict loads strictly; the caller computes the real average
        sd["mapping.w_avg"] = torch.zeros(config.w_dim, dtype=torch.float32)
    validate_state_dict(config, sd, source=source)  # keys and shapes first: nothing copied yet
    out = checked_weights(sd, source)  # float32 copies; non-float or NaN/inf refused
    check_config_values(config, source)
    return ConvertedCheckpoint(config, out, w_avg_present, config.source_format, info)


def read_checkpoint(path: str | os.PathLike) -> ConvertedCheckpoint:
    """Read a StyleGAN2 generator from an NVIDIA ``.pkl``, a TF ``.pkl`` or a torch ``.pt`` file.

    The format is detected from the file's bytes (:func:`detect_format`); nothing in the file is
    executed. Returns a :class:`ConvertedCheckpoint` whose state dict passed
    :func:`validate_state_dict` against its inferred config.

    Raises:
        CheckpointError: missing / empty / truncated / corrupt file, no generator inside, or
            keys and shapes inconsistent with one StyleGAN2 generator (message names the path
            and the keys).
        UnsafePickleError: the file references a global outside the allow-list.
        UnsupportedCheckpointError: a readable but unsupported network (StyleGAN3, conditional
            TF, custom resampling filter) or a native ``.safetensors`` file.
    """
    p = _check_file(path)
    source = str(p)
    fmt = detect_format(p)
    if fmt in ("nvidia-pkl", "tf-pkl"):
        obj = load_pickle_file(p, source=source)  # memory-mapped and size-capped, never read whole
        if isinstance(obj, tuple) and obj and all(isinstance(x, TFNetworkStub) for x in obj):
            config, sd, info = convert_tf_pickle(obj, source=source)
        elif (plain := _records_to_tensors(obj)) is not None:
            # a state dict written with plain pickle.dump: same handling as a torch file
            config, sd, info = convert_torch_checkpoint(plain, source=source)
        else:
            config, sd, info = convert_nvidia_snapshot(obj, source=source)
    elif fmt == "torch":
        obj = load_torch_file(p, source=source)
        config, sd, info = convert_torch_checkpoint(obj, source=source)
    elif fmt == "safetensors":
        raise UnsupportedCheckpointError(
            f"{source}: is a safetensors file; read_checkpoint handles foreign .pkl/.pt checkpoints only "
            "(use the native safetensors loader)"
        )
    else:
        with open(p, "rb") as f:
            first = f.read(8)
        raise CheckpointError(
            f"{source}: unrecognised checkpoint format (not a pickle, torch or safetensors file; first bytes {first!r})"
        )
    info = dict(info)
    info.setdefault("container", fmt)
    return _finalise(config, sd, info, source)
