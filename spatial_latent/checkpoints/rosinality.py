"""``torch.save`` checkpoints: rosinality stylegan2-pytorch, pSp/e4e, NVIDIA-layout state dicts.

Files are read with ``torch.load(weights_only=True)`` (torch's own restricted unpickler), with
only ``argparse.Namespace`` added to its allow-list (rosinality stores its ``args``); a blanket
``weights_only=False`` is never used.

rosinality -> canonical names (R = 2^(i+3) for i = 0, 1, ...):

* ``style.{j+1}`` -> ``mapping.fc{j}`` (both store lr-0.01-scaled values, so no rescaling);
* ``input.input [1, C, 4, 4]`` -> ``synthesis.b4.const [C, 4, 4]``;
* ``conv1`` -> ``synthesis.b4.conv1``; ``convs.{2i}`` -> ``bR.conv0``; ``convs.{2i+1}`` ->
  ``bR.conv1``, with ``conv.weight [1, O, I, k, k]`` -> ``weight [O, I, k, k]``,
  ``conv.modulation.*`` -> ``affine.*``, ``activate.bias`` -> ``bias``,
  ``noise.weight [1]`` -> ``noise_strength []``;
* ``to_rgb1`` -> ``b4.torgb``; ``to_rgbs.{i}`` -> ``bR.torgb`` (``bias [1, 3, 1, 1]`` -> ``[3]``);
* ``noises.noise_0`` -> ``b4.conv1.noise_const``; ``noise_{2i+1}`` / ``noise_{2i+2}`` ->
  ``bR.conv0`` / ``bR.conv1`` ``.noise_const`` (``[1, 1, R, R]`` -> ``[R, R]``);
* ``*.blur.kernel`` / ``*.upsample.kernel`` FIR buffers are checked and dropped.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import CheckpointError, UnsafePickleError
from ..limits import MAX_CHECKPOINT_BYTES, check_file_size, check_zip_sizes, expanded_size, plain_data
from ..networks import GeneratorConfig
from .nvidia import convert_nvidia_state_dict
from .validate import check_resample_filter, infer_config

logger = logging.getLogger(__name__)

__all__ = ["convert_rosinality_state_dict", "convert_torch_checkpoint", "load_torch_file"]

# torch words this differently across versions ("Unsupported global: GLOBAL x.y", "unsupported GLOBAL x.y whose ...")
_UNSUPPORTED_GLOBAL_RE = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)


def load_torch_file(path: str | os.PathLike, *, source: str) -> Any:
    """``torch.load`` with ``weights_only=True`` and only ``argparse.Namespace`` extra-allowed.

    Raises :class:`UnsafePickleError` when torch's allow-list refuses a global and
    :class:`CheckpointError` for a truncated or corrupt file.
    """
    check_file_size(path, MAX_CHECKPOINT_BYTES, "torch checkpoint")
    if zipfile.is_zipfile(path):
        # torch stores records uncompressed; declared sizes beyond the file's would mean a zip bomb
        check_zip_sizes(path, source, "torch checkpoint")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        m = _UNSUPPORTED_GLOBAL_RE.search(msg)
        if m or "weights_only" in msg.lower() or "weights only" in msg.lower():
            what = f"global '{m.group(1)}'" if m else "an object"
            raise UnsafePickleError(
                f"{source}: refused to load {what} outside torch's weights-only allow-list (the file may try to run code)"
            ) from None
        raise CheckpointError(f"{source}: truncated or corrupt torch checkpoint ({msg.splitlines()[0][:200]})") from exc
    except Exception as exc:  # RuntimeError (zip reader), EOFError, ValueError, KeyError, ...
        first = (str(exc).splitlines() or [""])[0].split(". ")[0][:200]  # torch appends long advice
        raise CheckpointError(f"{source}: truncated or corrupt torch checkpoint ({type(exc).__name__}: {first})") from exc
    _check_tensor_sizes(obj, source)
    return obj


def _check_tensor_sizes(obj: Any, source: str) -> None:
    """Refuse tensors with more elements than their storage (zero / overlapping strides).

    Copying such a view (reshape, ``.contiguous()``) could allocate far more memory than the
    file holds; real checkpoints never contain them. Containers are bounded first (shared lists
    and dicts are counted once), so a web of shared containers cannot make this walk explode.
    """
    expanded_size(obj, source, "checkpoint containers", max_depth=8)
    seen: set[int] = set()
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            if x.numel() * x.element_size() > x.untyped_storage().nbytes():
                raise CheckpointError(f"{source}: a tensor of shape {list(x.shape)} has more elements than its storage")
        elif isinstance(x, (Mapping, list, tuple)) and id(x) not in seen:
            seen.add(id(x))
            stack.extend(x.values() if isinstance(x, Mapping) else x)


def _tensor(sd: Mapping[str, Any], key: str, shape_ok: Any, what: str, source: str) -> torch.Tensor:
    v = sd[key]
    if not isinstance(v, torch.Tensor) or not shape_ok(tuple(v.shape)):
        got = list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise CheckpointError(f"{source}: {key} should be {what}, got {got}")
    return v


def _layer_target(n: int) -> str:
    # convs.{2i} is the upsampling conv0 of block 2^(i+3), convs.{2i+1} its conv1
    return f"synthesis.b{2 ** (n // 2 + 3)}.{'conv0' if n % 2 == 0 else 'conv1'}"


def _noise_target(n: int) -> str:
    if n == 0:
        return "synthesis.b4.conv1"
    i = (n - 1) // 2
    return f"synthesis.b{2 ** (i + 3)}.{'conv0' if n % 2 == 1 else 'conv1'}"


_MODCONV_PARTS = r"conv\.weight|conv\.modulation\.weight|conv\.modulation\.bias"
_STYLED_RE = re.compile(rf"(conv1|convs\.(\d+))\.({_MODCONV_PARTS}|noise\.weight|activate\.bias|conv\.blur\.kernel)")
_RGB_RE = re.compile(rf"(to_rgb1|to_rgbs\.(\d+))\.({_MODCONV_PARTS}|bias|upsample\.kernel)")
_STYLE_RE = re.compile(r"style\.(\d+)\.(weight|bias)")
_NOISES_RE = re.compile(r"noises\.noise_(\d+)")


def convert_rosinality_state_dict(sd: Mapping[str, Any], *, source: str) -> dict[str, torch.Tensor]:
    """Rename / reshape a rosinality ``Generator`` state dict to canonical names (module doc)."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    is5d = lambda s: len(s) == 5 and s[0] == 1  # noqa: E731
    for key in sd:
        if not isinstance(key, str):
            unknown.append(repr(key))
            continue
        if m := _STYLE_RE.fullmatch(key):
            j = int(m.group(1)) - 1
            if j < 0:
                unknown.append(key)
                continue
            out[f"mapping.fc{j}.{m.group(2)}"] = _tensor(sd, key, lambda s: len(s) in (1, 2), "a linear layer tensor", source)
        elif key == "input.input":
            out["synthesis.b4.const"] = _tensor(sd, key, lambda s: len(s) == 4 and s[0] == 1, "[1, C, 4, 4]", source)[0]
        elif m := _STYLED_RE.fullmatch(key):
            target = "synthesis.b4.conv1" if m.group(1) == "conv1" else _layer_target(int(m.group(2)))
            part = m.group(3)
            if part == "conv.weight":
                out[f"{target}.weight"] = _tensor(sd, key, is5d, "[1, O, I, k, k]", source)[0]
            elif part == "conv.modulation.weight":
                out[f"{target}.affine.weight"] = sd[key]
            elif part == "conv.modulation.bias":
                out[f"{target}.affine.bias"] = sd[key]
            elif part == "noise.weight":
                out[f"{target}.noise_strength"] = _tensor(sd, key, lambda s: s in ((1,), ()), "[1]", source).reshape(())
            elif part == "activate.bias":
                out[f"{target}.bias"] = sd[key]
            else:
                check_resample_filter(f"{source}: {key}", sd[key], gains=(1.0, 4.0))
        elif m := _RGB_RE.fullmatch(key):
            res = 4 if m.group(1) == "to_rgb1" else 2 ** (int(m.group(2)) + 3)
            target = f"synthesis.b{res}.torgb"
            part = m.group(3)
            if part == "conv.weight":
                out[f"{target}.weight"] = _tensor(sd, key, is5d, "[1, 3, I, 1, 1]", source)[0]
            elif part == "conv.modulation.weight":
                out[f"{target}.affine.weight"] = sd[key]
            elif part == "conv.modulation.bias":
                out[f"{target}.affine.bias"] = sd[key]
            elif part == "bias":
                b = _tensor(sd, key, lambda s: len(s) == 4 and s[0] == 1 and s[2:] == (1, 1), "[1, 3, 1, 1]", source)
                out[f"{target}.bias"] = b.reshape(-1)
            else:
                check_resample_filter(f"{source}: {key}", sd[key], gains=(1.0, 4.0))
        elif m := _NOISES_RE.fullmatch(key):
            noise = _tensor(sd, key, lambda s: len(s) == 4 and s[:2] == (1, 1), "[1, 1, r, r]", source)
            out[f"{_noise_target(int(m.group(1)))}.noise_const"] = noise[0, 0]
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: unexpected keys in the rosinality generator: {unknown[:12]}")
    return out


def _is_rosinality(sd: Mapping[str, Any]) -> bool:
    return "style.1.weight" in sd or "input.input" in sd or "conv1.conv.weight" in sd


def _is_nvidia(sd: Mapping[str, Any]) -> bool:
    return "mapping.fc0.weight" in sd or "synthesis.b4.const" in sd


def _w_avg_from(latent_avg: Any, source: str) -> torch.Tensor | None:
    if latent_avg is None:
        return None
    if not isinstance(latent_avg, torch.Tensor) or latent_avg.dim() not in (1, 2) or latent_avg.numel() == 0:
        raise CheckpointError(f"{source}: latent_avg should be [w_dim] or [n_latent, w_dim]")
    # pSp/e4e store latent_avg repeated once per W+ row: every row is the same average.
    return latent_avg if latent_avg.dim() == 1 else latent_avg[0]


def _plain_args(args: Any, source: str) -> Any:
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if isinstance(args, Mapping):
        kept = {str(k): v for k, v in args.items() if isinstance(v, (int, float, str, bool, type(None), list, tuple))}
        return plain_data(kept, source, "args")
    return None


def convert_torch_checkpoint(obj: Any, *, source: str) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict]:
    """Pick the generator from a loaded torch checkpoint and convert it to canonical form.

    Handles rosinality training checkpoints ``{g, d, g_ema, args, ...}`` (``g_ema`` used),
    converted ones ``{g_ema, latent_avg}``, pSp/e4e ``{state_dict, latent_avg, opts}``
    (``decoder.*`` used), bare rosinality generator state dicts, and NVIDIA-layout generator
    state dicts (top level or under ``G_ema`` / ``g_ema`` / ``state_dict``).
    Returns ``(config, state_dict, info)``.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: torch file holds a {type(obj).__name__}, not a checkpoint dict")
    info: dict[str, Any] = {}
    latent_avg = obj.get("latent_avg")
    sd: Any = None
    inner = obj.get("state_dict")
    if isinstance(inner, Mapping) and any(isinstance(k, str) and k.startswith("decoder.") for k in inner):
        sd = {k[len("decoder."):]: v for k, v in inner.items() if isinstance(k, str) and k.startswith("decoder.")}
        info.update(network="state_dict[decoder.*]", layout="psp")
        opts = _plain_args(obj.get("opts"), source)
        if opts is not None:
            info["opts"] = opts
    else:
        for name in ("g_ema", "G_ema", "state_dict", "g", "G"):
            if isinstance(obj.get(name), Mapping) and (_is_rosinality(obj[name]) or _is_nvidia(obj[name])):
                sd = obj[name]
                info["network"] = name
                if name in ("g", "G"):
                    info["note"] = f"no g_ema in the checkpoint; the training generator {name} was used"
                    logger.warning("%s has no g_ema; using %s", source, name)
                break
        else:
            if _is_rosinality(obj) or _is_nvidia(obj):
                sd, info["network"] = obj, "<top-level state dict>"
    if sd is None:
        keys = sorted(str(k) for k in obj.keys())[:20]
        raise CheckpointError(f"{source}: no generator found in the torch checkpoint; keys: {keys}")
    args = _plain_args(obj.get("args"), source)
    if args is not None:
        info["args"] = args

    w_avg = _w_avg_from(latent_avg, source)
    if _is_rosinality(sd):
        info.setdefault("layout", "rosinality")
        out = convert_rosinality_state_dict(sd, source=source)
        if w_avg is not None:
            out["mapping.w_avg"] = w_avg
        fmt = "psp" if info["layout"] == "psp" else "rosinality"
        config = infer_config(out, source=source, source_format=fmt, architecture="skip")
    elif _is_nvidia(sd):
        info["layout"] = "nvidia"
        info["note_defaults"] = "conv_clamp / num_fp16_res are not stored in a bare state dict; defaults used"
        sd = {k: v for k, v in sd.items()}
        if w_avg is not None and "mapping.w_avg" not in sd:
            sd["mapping.w_avg"] = w_avg
        config, out = convert_nvidia_state_dict(sd, source=source, source_format="nvidia-torch")
    else:  # pSp decoder with foreign names
        raise CheckpointError(f"{source}: the generator state dict has neither rosinality nor NVIDIA key names")
    return config, out, info
