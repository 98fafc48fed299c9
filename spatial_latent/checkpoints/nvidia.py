"""NVIDIA stylegan2-ada-pytorch / stylegan3-repo (StyleGAN2 networks) snapshot pickles.

A snapshot is a dict ``{training_set_kwargs, G, D, G_ema, augment_pipe}`` whose networks were
unpickled by :mod:`.safe_pickle` into :class:`~.safe_pickle.PersistentObject` trees. This module
picks the generator, flattens its ``_parameters`` / persistent ``_buffers`` / ``_modules`` tree
into a state dict with ``torch.nn.Module.state_dict()`` names, checks and drops the constant
``resample_filter`` buffers, and reads ``conv_clamp``, ``num_fp16_res`` and the mapping
learning-rate multiplier from the stored module attributes.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import CheckpointError, UnsupportedCheckpointError
from ..limits import plain_data
from ..networks import GeneratorConfig
from .safe_pickle import PersistentObject, TensorRecord
from .validate import check_resample_filter, infer_config

logger = logging.getLogger(__name__)

__all__ = ["convert_nvidia_snapshot", "flatten_persistent", "convert_nvidia_state_dict"]

_MAX_DEPTH = 32  # module nesting; real generators are 4 deep
_MAX_MODULES = 100_000
_SG3_CLASSES = {"SynthesisInput"}
_SG3_KEY_RE = re.compile(r"synthesis\.(input\.|L\d+_\d+_\d+\.)")


def flatten_persistent(
    root: PersistentObject, source: str
) -> tuple[dict[str, torch.Tensor], dict[str, PersistentObject]]:
    """Flatten a persistent module tree like ``nn.Module.state_dict()`` would.

    Returns ``(state_dict, modules)``: tensors keyed ``'synthesis.b4.conv1.weight'`` etc.
    (non-persistent buffers excluded, ``None`` entries skipped) and every module keyed by its
    dotted path (``''`` for the root).
    """
    tensors: dict[str, torch.Tensor] = {}
    modules: dict[str, PersistentObject] = {}
    stack: list[tuple[str, Any, int]] = [("", root, 0)]
    while stack:
        prefix, obj, depth = stack.pop()
        where = prefix[:-1] or "<root>"
        if not isinstance(obj, PersistentObject):
            raise CheckpointError(f"{source}: module {where} is a {type(obj).__name__}, not a persistent network module")
        if depth > _MAX_DEPTH or len(modules) >= _MAX_MODULES:
            raise CheckpointError(f"{source}: network module tree is nested too deeply or is cyclic (at {where})")
        modules[prefix[:-1]] = obj
        st = obj.state
        params, buffers, children = st.get("_parameters", {}), st.get("_buffers", {}), st.get("_modules", {})
        skip = st.get("_non_persistent_buffers_set") or set()
        if not all(isinstance(x, Mapping) for x in (params, buffers, children)) or not isinstance(skip, (set, frozenset)):
            raise CheckpointError(f"{source}: module {where} ({obj.class_name}) has a malformed state")
        for group in (params, buffers):
            for name, value in group.items():
                if value is None or (group is buffers and name in skip):
                    continue
                if not isinstance(name, str) or not isinstance(value, TensorRecord):
                    raise CheckpointError(f"{source}: {prefix}{name} is a {type(value).__name__}, not a tensor")
                tensors[prefix + name] = value.tensor
        # reversed so that the stack pops children in their stored order
        for name, child in reversed(list(children.items())):
            if child is not None:
                if not isinstance(name, str):
                    raise CheckpointError(f"{source}: module {where} has a non-string child name")
                stack.append((f"{prefix}{name}.", child, depth + 1))
        if len(stack) + len(modules) > _MAX_MODULES:  # shared children would multiply without end
            raise CheckpointError(f"{source}: network module tree has more than {_MAX_MODULES} modules (shared or cyclic children)")
    return tensors, modules


def _attr(module: PersistentObject | None, name: str, default: Any = None) -> Any:
    if module is None:
        return default
    return module.state.get(name, default)


def _init_kwargs(module: PersistentObject | None) -> dict:
    kw = _attr(module, "_init_kwargs", {})
    return kw if isinstance(kw, Mapping) else {}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _plain(obj: Any, source: str, what: str) -> Any:
    """A JSON-friendly copy of config data for ``info`` (records become their repr).

    Shared containers are measured once (memoised by identity) and the expanded size and depth
    are bounded (:func:`~spatial_latent.limits.plain_data`): a web of shared dicts of a few KB is
    refused at once instead of being expanded without end.
    """
    return plain_data(obj, source, what)


def _drop_resample_filters(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.endswith(".resample_filter") or k == "resample_filter":
            check_resample_filter(f"{source}: {k}", v)
        else:
            out[k] = v
    return out


def _reject_stylegan3(sd: Mapping[str, Any], class_names: set[str], source: str) -> None:
    if class_names & _SG3_CLASSES or any(_SG3_KEY_RE.match(k) for k in sd):
        raise UnsupportedCheckpointError(
            f"{source}: this is a StyleGAN3 (config t/r) generator (synthesis.input / synthesis.L*_* layers); "
            "StyleGAN3 networks are not supported, only StyleGAN2 ones"
        )


def convert_nvidia_state_dict(
    sd: Mapping[str, torch.Tensor],
    *,
    source: str,
    source_format: str,
    conv_clamp: float | None = None,
    num_fp16_res: int = 0,
    mapping_lr_multiplier: float = 0.01,
) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """Canonicalise an NVIDIA-layout generator state dict (drop filters, infer the config)."""
    _reject_stylegan3(sd, set(), source)
    out = _drop_resample_filters(dict(sd), source)
    config = infer_config(
        out,
        source=source,
        source_format=source_format,
        conv_clamp=conv_clamp,
        num_fp16_res=num_fp16_res,
        mapping_lr_multiplier=mapping_lr_multiplier,
    )
    return config, out


def _pick_generator(obj: Any, source: str) -> tuple[PersistentObject, str]:
    if isinstance(obj, PersistentObject):
        return obj, "<top-level object>"
    if not isinstance(obj, Mapping):
        kind = "tensor" if isinstance(obj, TensorRecord) else type(obj).__name__
        raise CheckpointError(f"{source}: pickle holds a {kind}, not a network snapshot dict with a 'G_ema' generator")
    for name in ("G_ema", "G"):
        if isinstance(obj.get(name), PersistentObject):
            if name == "G":
                logger.warning("%s has no G_ema; using the training generator G", source)
            return obj[name], name
    keys = sorted(str(k) for k in obj.keys())[:20]
    raise CheckpointError(f"{source}: no generator found in the pickle; keys: {keys}")


def convert_nvidia_snapshot(obj: Any, *, source: str) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict]:
    """Convert an unpickled NVIDIA snapshot (or a bare pickled Generator) to canonical form.

    Returns ``(config, state_dict, info)``; ``state_dict`` tensors are views into the
    unpickled storages (the caller copies them to float32).
    """
    gen, net_name = _pick_generator(obj, source)
    sd, modules = flatten_persistent(gen, source)
    class_names = {m.class_name for m in modules.values()}
    _reject_stylegan3(sd, class_names, source)
    if gen.class_name != "Generator":
        raise CheckpointError(f"{source}: network {net_name} is a {gen.class_name!r}, expected a 'Generator'")

    g_kwargs = _init_kwargs(gen)
    syn = modules.get("synthesis")
    syn_kwargs = dict(g_kwargs.get("synthesis_kwargs") or {})
    syn_kwargs.update(_init_kwargs(syn))  # the network's own kwargs win (stylegan3 repo flattens them)

    # conv_clamp: as stored on the first synthesis layer, else the constructor kwargs.
    layers = [m for p, m in modules.items() if m.class_name == "SynthesisLayer"]
    conv_clamp = _attr(layers[0], "conv_clamp", syn_kwargs.get("conv_clamp")) if layers else syn_kwargs.get("conv_clamp")
    if conv_clamp is not None and not _is_number(conv_clamp):
        raise CheckpointError(f"{source}: stored conv_clamp {conv_clamp!r} is not a number")

    # num_fp16_res: the constructor argument, else the number of blocks flagged use_fp16.
    num_fp16_res = syn_kwargs.get("num_fp16_res")
    if not isinstance(num_fp16_res, int) or isinstance(num_fp16_res, bool):
        num_fp16_res = sum(
            1 for p, m in modules.items() if m.class_name == "SynthesisBlock" and _attr(m, "use_fp16") is True
        )

    # Mapping lr multiplier: FullyConnectedLayer stores bias_gain = lr and weight_gain = lr / sqrt(in).
    fc0 = modules.get("mapping.fc0")
    lr = _attr(fc0, "bias_gain")
    if not _is_number(lr):
        wg, in_features = _attr(fc0, "weight_gain"), sd.get("mapping.fc0.weight")
        if _is_number(wg) and isinstance(in_features, torch.Tensor) and in_features.dim() == 2:
            lr = wg * math.sqrt(in_features.shape[1])
        else:
            lr = _init_kwargs(fc0).get("lr_multiplier", (g_kwargs.get("mapping_kwargs") or {}).get("lr_multiplier", 0.01))
    if not _is_number(lr) or lr <= 0:
        raise CheckpointError(f"{source}: stored mapping learning-rate multiplier {lr!r} is not a positive number")
    lr = float(f"{lr:.12g}")  # undo sqrt round-off

    config, out = convert_nvidia_state_dict(
        sd,
        source=source,
        source_format="nvidia-pkl",
        conv_clamp=conv_clamp,
        num_fp16_res=num_fp16_res,
        mapping_lr_multiplier=lr,
    )
    stored_arch = syn_kwargs.get("architecture")
    if isinstance(stored_arch, str) and stored_arch != config.architecture:
        raise CheckpointError(
            f"{source}: stored architecture {stored_arch!r} disagrees with the tensors ({config.architecture!r})"
        )
    for attr, value in (("z_dim", config.z_dim), ("w_dim", config.w_dim), ("c_dim", config.c_dim),
                        ("img_resolution", config.img_resolution), ("img_channels", config.img_channels)):  # fmt: skip
        stored = _attr(gen, attr)
        if isinstance(stored, int) and stored != value:
            raise CheckpointError(f"{source}: stored {attr}={stored} disagrees with the tensor shapes ({value})")

    info: dict[str, Any] = {"network": net_name, "init_kwargs": _plain(g_kwargs, source, f"{net_name}._init_kwargs")}
    if net_name == "G":
        info["note"] = "no G_ema in the snapshot; the training generator G was used"
    if isinstance(obj, Mapping):
        tsk = obj.get("training_set_kwargs")
        if isinstance(tsk, Mapping):
            info["training_set_kwargs"] = _plain(tsk, source, "training_set_kwargs")
            if isinstance(tsk.get("resolution"), int):
                info["training_set_resolution"] = tsk["resolution"]
        info["snapshot_keys"] = [str(k) for k in obj.keys()][:20]
    logger.info("%s: using %s (%s, %dx%d)", source, net_name, config.architecture, config.img_resolution, config.img_resolution)
    return config, out, info
