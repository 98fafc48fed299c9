"""The canonical generator state-dict layout: expected keys and shapes, checks, config inference.

The canonical layout is NVIDIA stylegan2-ada-pytorch's ``Generator.state_dict()`` without the
constant ``*.resample_filter`` buffers. For a :class:`~spatial_latent.networks.GeneratorConfig`
with widths ``C[R]`` per block resolution ``R``, ``w = w_dim`` and ``E = embed_features``:

=====================================  ==========================================================
key                                    shape
=====================================  ==========================================================
``mapping.embed.weight`` / ``.bias``   ``[E, c_dim]`` / ``[E]`` (only when ``c_dim > 0``)
``mapping.fc{j}.weight`` / ``.bias``   ``[out_j, in_j]`` / ``[out_j]``; ``in_0 = z_dim + E``
                                       (``E`` alone if ``z_dim == 0``), later ``in = out`` of the
                                       previous layer, ``out = mapping_hidden`` except the last
                                       layer (``w_dim``)
``mapping.w_avg``                      ``[w_dim]``
``synthesis.b4.const``                 ``[C4, 4, 4]``
``synthesis.bR.conv0.*`` (R > 4)       ``weight [C[R], C[R/2], 3, 3]``, ``bias [C[R]]``,
                                       ``affine.weight [C[R/2], w]``, ``affine.bias [C[R/2]]``,
                                       ``noise_strength []``, ``noise_const [R, R]``
``synthesis.bR.conv1.*``               the same with input width ``C[R]``
``synthesis.bR.torgb.*``               ``weight [img_channels, C[R], 1, 1]``, ``bias
                                       [img_channels]``, ``affine.weight [C[R], w]``,
                                       ``affine.bias [C[R]]``; every block for ``skip``, only
                                       the last block for ``resnet`` and ``orig``
``synthesis.bR.skip.weight`` (R > 4)   ``[C[R], C[R/2], 1, 1]``, ``resnet`` only
=====================================  ==========================================================
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

import torch

from ..errors import CheckpointError, UnsupportedCheckpointError
from ..networks import GeneratorConfig

__all__ = [
    "check_config_values",
    "check_resample_filter",
    "checked_weights",
    "config_from_json",
    "expected_shapes",
    "infer_config",
    "standard_resample_filter",
    "state_dict_problems",
    "validate_state_dict",
]

_MAX_LISTED = 12  # keys listed per category in an error message


def standard_resample_filter() -> torch.Tensor:
    """The standard StyleGAN2 FIR filter: outer product of [1, 3, 3, 1], normalised to sum 1.

    Returns a float32 tensor of shape [4, 4].
    """
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()


def check_resample_filter(key: str, value: torch.Tensor, *, gains: tuple[float, ...] = (1.0,)) -> None:
    """Raise :class:`UnsupportedCheckpointError` unless ``value`` is the standard [4, 4] filter.

    ``gains`` lists accepted scale factors (rosinality stores upsampling kernels times 4).
    Filters are rebuilt by the network code, so a checkpoint with another filter cannot be run.
    """
    std = standard_resample_filter()
    if isinstance(value, torch.Tensor) and tuple(value.shape) == (4, 4):
        v = value.detach().to(torch.float64)
        for g in gains:
            if torch.allclose(v, std.to(torch.float64) * g, rtol=1e-5, atol=1e-7):
                return
    shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
    raise UnsupportedCheckpointError(
        f"{key} is not the standard [1,3,3,1] resampling filter (shape {shape}); "
        "checkpoints with custom resampling filters are not supported"
    )


def _mapping_features(config: GeneratorConfig) -> list[int]:
    embed = config.embed_features if config.c_dim > 0 else 0
    first = config.z_dim + embed
    hidden = [config.mapping_hidden] * (config.mapping_layers - 1)
    return [first] + hidden + [config.w_dim]


def expected_shapes(config: GeneratorConfig, *, include_w_avg: bool = True) -> dict[str, tuple[int, ...]]:
    """Every canonical key of a generator with ``config`` and its exact shape (see module doc)."""
    exp: dict[str, tuple[int, ...]] = {}
    w = config.w_dim
    if config.c_dim > 0:
        exp["mapping.embed.weight"] = (config.embed_features, config.c_dim)
        exp["mapping.embed.bias"] = (config.embed_features,)
    feats = _mapping_features(config)
    for j in range(config.mapping_layers):
        exp[f"mapping.fc{j}.weight"] = (feats[j + 1], feats[j])
        exp[f"mapping.fc{j}.bias"] = (feats[j + 1],)
    if include_w_avg:
        exp["mapping.w_avg"] = (w,)

    def layer(prefix: str, cin: int, cout: int, res: int) -> None:
        exp[f"{prefix}.weight"] = (cout, cin, 3, 3)
        exp[f"{prefix}.bias"] = (cout,)
        exp[f"{prefix}.affine.weight"] = (cin, w)
        exp[f"{prefix}.affine.bias"] = (cin,)
        exp[f"{prefix}.noise_strength"] = ()
        exp[f"{prefix}.noise_const"] = (res, res)

    resolutions = config.block_resolutions
    for res in resolutions:
        ch = config.channels[res]
        b = f"synthesis.b{res}"
        if res == 4:
            exp[f"{b}.const"] = (ch, 4, 4)
        else:
            prev = config.channels[res // 2]
            layer(f"{b}.conv0", prev, ch, res)
        layer(f"{b}.conv1", ch, ch, res)
        if config.architecture == "skip" or res == resolutions[-1]:
            exp[f"{b}.torgb.weight"] = (config.img_channels, ch, 1, 1)
            exp[f"{b}.torgb.bias"] = (config.img_channels,)
            exp[f"{b}.torgb.affine.weight"] = (ch, w)
            exp[f"{b}.torgb.affine.bias"] = (ch,)
        if config.architecture == "resnet" and res > 4:
            exp[f"{b}.skip.weight"] = (ch, config.channels[res // 2], 1, 1)
    return exp


def state_dict_problems(
    config: GeneratorConfig, state_dict: Mapping[str, object], *, require_w_avg: bool = True
) -> dict[str, list]:
    """Compare ``state_dict`` with :func:`expected_shapes` without raising.

    Returns ``{'missing': [key], 'unexpected': [key], 'wrong_shape': [(key, expected, got)],
    'not_tensor': [key]}`` (all empty when the state dict matches). ``mapping.w_avg`` is optional
    when ``require_w_avg`` is False.
    """
    exp = expected_shapes(config)
    missing = [k for k in exp if k not in state_dict and (require_w_avg or k != "mapping.w_avg")]
    unexpected = [k for k in state_dict if k not in exp]
    wrong, not_tensor = [], []
    for k, shape in exp.items():
        if k not in state_dict:
            continue
        v = state_dict[k]
        if not isinstance(v, torch.Tensor):
            not_tensor.append(k)
        elif tuple(v.shape) != shape:
            wrong.append((k, list(shape), list(v.shape)))
    return {"missing": missing, "unexpected": unexpected, "wrong_shape": wrong, "not_tensor": not_tensor}


def _listing(items: list, fmt=str) -> str:
    shown = ", ".join(fmt(x) for x in items[:_MAX_LISTED])
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return shown + more


def validate_state_dict(
    config: GeneratorConfig,
    state_dict: Mapping[str, object],
    *,
    require_w_avg: bool = True,
    source: str = "state dict",
) -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected or mis-shaped key.

    ``state_dict`` must use the canonical names (module doc); ``resample_filter`` buffers count
    as unexpected. ``source`` prefixes the message (e.g. the checkpoint path).
    """
    p = state_dict_problems(config, state_dict, require_w_avg=require_w_avg)
    parts = []
    if p["missing"]:
        parts.append(f"missing keys: {_listing(p['missing'])}")
    if p["unexpected"]:
        parts.append(f"unexpected keys: {_listing(p['unexpected'])}")
    if p["wrong_shape"]:
        parts.append("wrong shapes: " + _listing(p["wrong_shape"], lambda t: f"{t[0]} expected {t[1]} got {t[2]}"))
    if p["not_tensor"]:
        parts.append(f"not tensors: {_listing(p['not_tensor'])}")
    if parts:
        raise CheckpointError(f"{source}: generator weights do not match the inferred architecture; " + "; ".join(parts))


# --------------------------------------------------------------------------------------------
# Inference of a GeneratorConfig from canonical tensor shapes
# --------------------------------------------------------------------------------------------

_BLOCK_RE = re.compile(r"synthesis\.b(\d+)\.")
_FC_RE = re.compile(r"mapping\.fc(\d+)\.weight")


def _shape(sd: Mapping[str, torch.Tensor], key: str, ndim: int, source: str) -> tuple[int, ...]:
    v = sd[key]
    if not isinstance(v, torch.Tensor) or v.dim() != ndim:
        got = list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise CheckpointError(f"{source}: {key} should have {ndim} dimensions, got {got}")
    return tuple(v.shape)


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "state dict",
    source_format: str = "native",
    architecture: str | None = None,
    conv_clamp: float | None = None,
    num_fp16_res: int = 0,
    mapping_lr_multiplier: float = 0.01,
) -> GeneratorConfig:
    """Read every width of a canonical state dict from its tensor shapes.

    z_dim / c_dim / embed_features come from ``mapping.embed.weight [E, c_dim]`` and
    ``mapping.fc0.weight [hidden, z_dim + E]``; w_dim from the last fc layer; mapping_hidden
    from fc0; channels per resolution from each block's ``conv1.weight [C, C, 3, 3]`` (falling
    back to its other tensors so that a missing key is reported by :func:`validate_state_dict`
    rather than here); img_channels from a ``torgb.weight``. The architecture is ``resnet``
    when ``skip.weight`` keys exist, ``skip`` when every block has a torgb, else ``orig``
    (``architecture`` overrides). The remaining arguments are stored as given.
    """
    fc_idx = sorted(int(m.group(1)) for k in state_dict if (m := _FC_RE.fullmatch(k)))
    if not fc_idx:
        raise CheckpointError(f"{source}: no mapping network found (mapping.fc0.weight is missing)")
    if fc_idx != list(range(len(fc_idx))):
        missing = sorted(set(range(max(fc_idx) + 1)) - set(fc_idx))
        raise CheckpointError(f"{source}: mapping layers are not contiguous; missing mapping.fc{missing[0]}.weight")
    n_fc = len(fc_idx)
    hidden0, in0 = _shape(state_dict, "mapping.fc0.weight", 2, source)
    w_dim = _shape(state_dict, f"mapping.fc{n_fc - 1}.weight", 2, source)[0]
    c_dim = embed = 0
    if "mapping.embed.weight" in state_dict:
        embed, c_dim = _shape(state_dict, "mapping.embed.weight", 2, source)
    z_dim = in0 - embed
    if z_dim < 0:
        raise CheckpointError(f"{source}: mapping.fc0.weight input width {in0} is smaller than the label embedding {embed}")

    resolutions = sorted({int(m.group(1)) for k in state_dict if (m := _BLOCK_RE.match(k))})
    if not resolutions:
        raise CheckpointError(f"{source}: no synthesis blocks found (synthesis.b4.const is missing)")
    top = resolutions[-1]
    if top < 4 or top & (top - 1):
        raise CheckpointError(f"{source}: block resolution {top} is not a power of two >= 4")
    wanted = [2**i for i in range(2, top.bit_length())]
    absent = [r for r in wanted if r not in resolutions]
    odd = [r for r in resolutions if r not in wanted]
    if absent or odd:
        raise CheckpointError(
            f"{source}: synthesis blocks must cover 4..{top} in powers of two; "
            f"absent: {['synthesis.b%d' % r for r in absent]}, unexpected: {['synthesis.b%d' % r for r in odd]}"
        )

    # (key, ndim, axis holding the block width) in order of preference
    probes = [("conv1.weight", 4, 0), ("conv0.weight", 4, 0), ("torgb.weight", 4, 1), ("const", 3, 0),
              ("conv1.bias", 1, 0), ("skip.weight", 4, 0)]  # fmt: skip
    channels: dict[int, int] = {}
    for res in wanted:
        for suffix, ndim, axis in probes:
            key = f"synthesis.b{res}.{suffix}"
            if key in state_dict:
                channels[res] = _shape(state_dict, key, ndim, source)[axis]
                break
        else:
            raise CheckpointError(f"{source}: cannot tell the width of block synthesis.b{res} (no conv1/conv0/torgb weights)")

    torgb = [r for r in wanted if f"synthesis.b{r}.torgb.weight" in state_dict]
    img_channels = _shape(state_dict, f"synthesis.b{torgb[-1]}.torgb.weight", 4, source)[0] if torgb else 3
    if architecture is None:
        if any(f"synthesis.b{r}.skip.weight" in state_dict for r in wanted):
            architecture = "resnet"
        elif len(torgb) == len(wanted):
            architecture = "skip"
        else:
            architecture = "orig"
    try:
        return GeneratorConfig(
            z_dim=z_dim,
            w_dim=w_dim,
            img_resolution=top,
            channels=channels,
            c_dim=c_dim,
            img_channels=img_channels,
            mapping_layers=n_fc,
            mapping_hidden=hidden0 if n_fc > 1 else w_dim,
            embed_features=embed if c_dim > 0 else None,
            mapping_lr_multiplier=float(mapping_lr_multiplier),
            architecture=architecture,
            conv_clamp=None if conv_clamp is None else float(conv_clamp),
            num_fp16_res=int(num_fp16_res),
            source_format=source_format,
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: inconsistent generator configuration: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Values: every reader (foreign and native) holds weights and configs to the same rules
# --------------------------------------------------------------------------------------------

#: Largest mapping learning-rate multiplier accepted (StyleGAN2 uses 0.01; 1 means none).
MAX_LR_MULTIPLIER = 10.0
_MAX_DIM = 1 << 16  # any width, channel count or label count
_INT_FIELDS = ("z_dim", "w_dim", "img_resolution", "c_dim", "img_channels", "mapping_layers", "mapping_hidden",
               "embed_features", "num_fp16_res")  # fmt: skip


def checked_weights(state_dict: Mapping[str, object], source: str) -> dict[str, torch.Tensor]:
    """Fresh float32, contiguous CPU copies of ``state_dict``'s tensors.

    Raises :class:`CheckpointError` for a value that is not a floating-point tensor (an int32
    weight is refused, not cast) and for NaN or inf anywhere, naming the keys.
    """
    out: dict[str, torch.Tensor] = {}
    bad: list[str] = []
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            what = f"a {v.dtype} tensor" if isinstance(v, torch.Tensor) else f"a {type(v).__name__}"
            raise CheckpointError(f"{source}: {k} is {what}, not a floating-point tensor")
        # one fresh contiguous float32 copy: no view into the file's storages survives
        t = v.detach().to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)
        if not torch.isfinite(t).all():
            bad.append(k)
        out[k] = t
    if bad:
        raise CheckpointError(f"{source}: non-finite values (NaN/inf) in {_listing(bad)}")
    return out


def check_config_values(config: GeneratorConfig, source: str) -> None:
    """Raise :class:`CheckpointError` for hyper-parameters no real generator has: a mapping
    learning-rate multiplier outside ``(0, MAX_LR_MULTIPLIER]``, a non-finite or non-positive
    conv clamp, more fp16 blocks than blocks."""
    lr = config.mapping_lr_multiplier
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and 0 < lr <= MAX_LR_MULTIPLIER):
        raise CheckpointError(f"{source}: mapping learning-rate multiplier {lr!r} is outside (0, {MAX_LR_MULTIPLIER:g}]")
    clamp = config.conv_clamp
    if clamp is not None and not (isinstance(clamp, (int, float)) and math.isfinite(clamp) and clamp > 0):
        raise CheckpointError(f"{source}: conv_clamp {clamp!r} is not a positive finite number")
    if not 0 <= config.num_fp16_res <= len(config.block_resolutions):
        raise CheckpointError(f"{source}: num_fp16_res {config.num_fp16_res} is outside [0, {len(config.block_resolutions)}]")


def config_from_json(text: object, source: str) -> GeneratorConfig:
    """A :class:`GeneratorConfig` from the JSON a native file stores, every field type-checked.

    One :class:`CheckpointError` line for anything else: JSON nested too deeply, a field of the
    wrong type (``channels`` as a list or null, a width as text), unknown fields, values out of
    range (see :func:`check_config_values`).
    """
    from ..limits import check_json_object, load_json

    if not isinstance(text, (str, bytes)):
        raise CheckpointError(f"{source}: no generator config in the metadata")
    d = check_json_object(load_json(text, source, "generator config"), source, "generator config")
    known = {f.name for f in dataclasses.fields(GeneratorConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"{source}: unknown generator config keys {unknown[:8]}")
    for name in _INT_FIELDS:
        v = d.get(name)
        if name not in d or (v is None and name in ("mapping_hidden", "embed_features")):
            continue  # a missing required field is reported by the constructor below
        if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _MAX_DIM):
            raise CheckpointError(f"{source}: generator config {name} is {v!r}, expected an integer in [0, {_MAX_DIM}]")
    ch = d.get("channels")
    if not isinstance(ch, dict) or not ch:
        raise CheckpointError(f"{source}: generator config channels is {type(ch).__name__}, expected an object {{resolution: width}}")
    for k, v in ch.items():
        if not (isinstance(k, str) and k.isdigit() and len(k) <= 6) or not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= _MAX_DIM):
            raise CheckpointError(f"{source}: generator config channels entry {k!r}: {v!r} is not resolution: width in [1, {_MAX_DIM}]")
    for name in ("mapping_lr_multiplier", "conv_clamp"):
        v = d.get(name)
        if name in d and not (v is None and name == "conv_clamp") and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
            raise CheckpointError(f"{source}: generator config {name} is {v!r}, expected a number")
    for name in ("architecture", "source_format"):
        if name in d and not isinstance(d[name], str):
            raise CheckpointError(f"{source}: generator config {name} is {d[name]!r}, expected a string")
    try:
        config = GeneratorConfig(**{**d, "channels": {int(k): v for k, v in ch.items()}})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid generator config ({exc})") from None
    check_config_values(config, source)
    return config
