"""NVIDIA TensorFlow StyleGAN2 pickles: a tuple ``(G, D, Gs)`` of ``dnnlib.tflib`` Networks.

:mod:`.safe_pickle` turns each Network into a :class:`~.safe_pickle.TFNetworkStub` holding its
state (``build_module_src`` dropped unread). The averaged generator ``Gs`` is converted:

* ``mapping/Dense{j}/weight [in, out]`` -> ``mapping.fc{j}.weight`` transposed;
* conv ``weight [kh, kw, in, out]`` -> ``[out, in, kh, kw]``; ``Conv0_up`` and generator
  ``Skip`` kernels are flipped in kh and kw first (TF's transposed conv vs PyTorch's);
* ``mod_weight [w_dim, in]`` -> ``affine.weight [in, w_dim]``; ``mod_bias`` + 1 -> ``affine.bias``
  (TF adds the 1 at run time);
* ``Const/const [1, C, 4, 4]`` -> ``[C, 4, 4]``; ``noise{i} [1, 1, r, r]`` -> ``noise_const [r, r]``;
* ``dlatent_avg`` -> ``mapping.w_avg``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, UnsupportedCheckpointError
from ..networks import GeneratorConfig
from .safe_pickle import ArrayRecord, TFNetworkStub
from .validate import infer_config

logger = logging.getLogger(__name__)

__all__ = ["collect_tf_variables", "convert_tf_pickle"]

_MAX_DEPTH = 8
_LAYER_RE = re.compile(r"synthesis/(\d+)x(\d+)/(Conv|Conv0_up|Conv1|ToRGB)/(weight|bias|mod_weight|mod_bias|noise_strength)")
_LAYER_NAMES = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb"}
_MAPPING_RE = re.compile(r"mapping/Dense(\d+)/(weight|bias)")
_NOISE_RE = re.compile(r"synthesis/noise(\d+)")
_SKIP_RE = re.compile(r"synthesis/(\d+)x(\d+)/Skip/weight")


def _to_array(value: Any, name: str, source: str) -> np.ndarray:
    if isinstance(value, ArrayRecord):
        if value.array is None:
            raise CheckpointError(f"{source}: TF variable {name} is an incomplete numpy array")
        arr = value.array
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        arr = np.asarray(value)  # numpy scalars come out of the safe unpickler as Python numbers
    else:
        raise CheckpointError(f"{source}: TF variable {name} is a {type(value).__name__}, not a numeric array")
    if arr.dtype.kind not in "fiu":
        raise CheckpointError(f"{source}: TF variable {name} has non-numeric dtype {arr.dtype}")
    return arr


def collect_tf_variables(net: TFNetworkStub, source: str) -> dict[str, np.ndarray]:
    """All variables of a TF Network and its components, keyed ``'mapping/Dense0/weight'``."""
    out: dict[str, np.ndarray] = {}
    seen: set[int] = set()

    def visit(stub: Any, prefix: str, depth: int) -> None:
        if not isinstance(stub, TFNetworkStub) or not isinstance(stub.state, Mapping):
            raise CheckpointError(f"{source}: TF component {prefix or '<root>'} is not a dnnlib Network")
        if depth > _MAX_DEPTH:
            raise CheckpointError(f"{source}: TF network components nested too deeply")
        if id(stub) in seen:  # a shared component would be converted once per path to it
            raise CheckpointError(f"{source}: TF component {prefix or '<root>'} appears twice in the network (shared or cyclic)")
        seen.add(id(stub))
        variables = stub.state.get("variables", [])
        components = stub.state.get("components", {})
        if not isinstance(variables, (list, tuple)) or not isinstance(components, Mapping):
            raise CheckpointError(f"{source}: TF network {prefix or '<root>'} has a malformed state")
        for item in variables:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise CheckpointError(f"{source}: TF network {prefix or '<root>'} has a malformed variable list")
            out[prefix + item[0]] = _to_array(item[1], prefix + item[0], source)
        for name, comp in components.items():
            visit(comp, f"{prefix}{name}/", depth + 1)

    visit(net, "", 0)
    return out


def _kwargs(net: TFNetworkStub) -> dict:
    """static_kwargs of the network, completed by its components' (top level wins)."""
    merged: dict = {}
    comps = net.state.get("components", {}) if isinstance(net.state, Mapping) else {}
    for comp in (comps.values() if isinstance(comps, Mapping) else []):
        if isinstance(comp, TFNetworkStub) and isinstance(comp.state, Mapping):
            kw = comp.state.get("static_kwargs")
            if isinstance(kw, Mapping):
                merged.update(kw)
    top = net.state.get("static_kwargs") if isinstance(net.state, Mapping) else None
    if isinstance(top, Mapping):
        merged.update(top)
    return merged


def _conv(w: np.ndarray, name: str, source: str, flip: bool = False) -> np.ndarray:
    if w.ndim != 4:
        raise CheckpointError(f"{source}: TF variable {name} should be [kh, kw, in, out], got {list(w.shape)}")
    if flip:
        w = w[::-1, ::-1]
    return w.transpose(3, 2, 0, 1)


def _transpose2d(w: np.ndarray, name: str, source: str) -> np.ndarray:
    if w.ndim != 2:
        raise CheckpointError(f"{source}: TF variable {name} should be 2-D, got {list(w.shape)}")
    return w.T


def _squeeze_leading(w: np.ndarray, ndim: int, name: str, source: str) -> np.ndarray:
    # [1, C, 4, 4] -> [C, 4, 4] and [1, 1, r, r] -> [r, r]
    lead = w.ndim - ndim
    if lead < 0 or any(s != 1 for s in w.shape[:lead]):
        raise CheckpointError(f"{source}: TF variable {name} has unexpected shape {list(w.shape)}")
    return w.reshape(w.shape[lead:])


def _convert_variables(tf: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    unknown: list[str] = []
    for name, v in tf.items():
        if m := _MAPPING_RE.fullmatch(name):
            j, kind = m.groups()
            out[f"mapping.fc{j}.{kind}"] = _transpose2d(v, name, source) if kind == "weight" else v
        elif name == "dlatent_avg":
            out["mapping.w_avg"] = v
        elif name in ("lod", "synthesis/lod"):
            continue  # progressive-growing level of detail: always 0 for StyleGAN2
        elif name == "synthesis/4x4/Const/const":
            out["synthesis.b4.const"] = _squeeze_leading(v, 3, name, source)
        elif m := _NOISE_RE.fullmatch(name):
            i = int(m.group(1))
            if i == 0:
                key = "synthesis.b4.conv1.noise_const"
            else:
                res = 2 ** ((i + 5) // 2)
                key = f"synthesis.b{res}.{'conv0' if i % 2 else 'conv1'}.noise_const"
            out[key] = _squeeze_leading(v, 2, name, source)
        elif m := _LAYER_RE.fullmatch(name):
            rh, rw, layer, kind = m.groups()
            at_4x4 = rh == "4"
            if rh != rw or (layer == "Conv" and not at_4x4) or (layer in ("Conv0_up", "Conv1") and at_4x4):
                unknown.append(name)
                continue
            prefix = f"synthesis.b{rh}.{_LAYER_NAMES[layer]}"
            if kind == "weight":
                out[f"{prefix}.weight"] = _conv(v, name, source, flip=layer == "Conv0_up")
            elif kind == "mod_weight":
                out[f"{prefix}.affine.weight"] = _transpose2d(v, name, source)
            elif kind == "mod_bias":
                out[f"{prefix}.affine.bias"] = v.astype(np.float32) + np.float32(1)
            elif kind == "noise_strength":
                out[f"{prefix}.noise_strength"] = v.reshape(()) if v.size == 1 else v
            else:
                out[f"{prefix}.bias"] = v
        elif m := _SKIP_RE.fullmatch(name):
            out[f"synthesis.b{m.group(1)}.skip.weight"] = _conv(v, name, source, flip=True)
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"{source}: unexpected TensorFlow variables in Gs: {unknown[:12]}")
    return out


def convert_tf_pickle(obj: Any, *, source: str) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict]:
    """Convert an unpickled ``(G, D, Gs)`` TF StyleGAN2 pickle; ``Gs`` is used.

    Returns ``(config, state_dict, info)`` with canonical names (see the module doc).
    """
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetworkStub) for n in obj)):
        raise CheckpointError(f"{source}: expected a TensorFlow (G, D, Gs) network tuple")
    gs = obj[2]
    if not isinstance(gs.state, Mapping):
        raise CheckpointError(f"{source}: TF network Gs has no state")
    version = gs.state.get("version")
    if not isinstance(version, int) or version < 4:
        raise UnsupportedCheckpointError(f"{source}: TF network pickle version {version!r} is too old (need >= 4)")
    tf_vars = collect_tf_variables(gs, source)
    kwargs = _kwargs(gs)

    if any("ToRGB_lod" in k or "StyleMod" in k or "/Noise/" in k for k in tf_vars):
        raise UnsupportedCheckpointError(f"{source}: this is a StyleGAN (v1) TF network; only StyleGAN2 is supported")
    label_size = kwargs.get("label_size", 0)
    if "mapping/LabelConcat/weight" in tf_vars or (isinstance(label_size, int) and label_size > 0):
        raise UnsupportedCheckpointError(
            f"{source}: conditional TensorFlow StyleGAN2 networks (LabelConcat, label_size={label_size}) are not "
            "supported; convert it with stylegan2-ada-pytorch's legacy.py and load the resulting .pkl"
        )
    kernel = kwargs.get("resample_kernel")
    if kernel is not None and list(kernel) != [1, 3, 3, 1]:
        raise UnsupportedCheckpointError(f"{source}: TF resample_kernel {kernel!r} is not the standard [1, 3, 3, 1]")

    converted = _convert_variables(tf_vars, source)
    state_dict = {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in converted.items()}
    lr = kwargs.get("mapping_lrmul", 0.01)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0:
        raise CheckpointError(f"{source}: TF mapping_lrmul {lr!r} is not a positive number")
    config = infer_config(state_dict, source=source, source_format="tf-pkl", mapping_lr_multiplier=lr)
    stored_arch = kwargs.get("architecture")
    if isinstance(stored_arch, str) and stored_arch != config.architecture:
        raise CheckpointError(f"{source}: TF architecture {stored_arch!r} disagrees with the variables ({config.architecture!r})")
    for key, value in (("resolution", config.img_resolution), ("num_channels", config.img_channels),
                       ("latent_size", config.z_dim), ("dlatent_size", config.w_dim),
                       ("mapping_layers", config.mapping_layers)):  # fmt: skip
        stored = kwargs.get(key)
        if isinstance(stored, int) and stored != value:
            raise CheckpointError(f"{source}: TF static_kwargs {key}={stored} disagrees with the variables ({value})")
    info = {
        "network": "Gs",
        "tf_name": gs.state.get("name"),
        "tf_version": version,
        "static_kwargs": {str(k): v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool, type(None)))},
    }
    logger.info("%s: converted TF network Gs (%dx%d)", source, config.img_resolution, config.img_resolution)
    return config, state_dict, info
