"""read_checkpoint on every fixture set: detected format, inferred config, keys, shapes, values."""

from __future__ import annotations

import argparse
import json
import pickle
import re

import numpy as np
import pytest
import torch

from spatial_latent.checkpoints.readers import detect_format, expected_shapes, read_checkpoint, validate_state_dict
from spatial_latent.checkpoints.nvidia import convert_nvidia_snapshot
from spatial_latent.checkpoints.safe_pickle import load_pickle_bytes

SETS = {
    # set: (file, detect_format, source_format, network used)
    "rosinality_64": ("checkpoint.pt", "torch", "rosinality", "g_ema"),
    "rosinality_32_cm1": ("checkpoint.pt", "torch", "rosinality", "g_ema"),
    "nvidia_ada_64": ("network-snapshot.pkl", "nvidia-pkl", "nvidia-pkl", "G_ema"),
    "nvidia_ada_cond_32": ("network-snapshot.pkl", "nvidia-pkl", "nvidia-pkl", "G_ema"),
    "nvidia_tf_64": ("network-tf.pkl", "tf-pkl", "tf-pkl", "Gs"),
}

_cache: dict = {}


def _read(fixtures_dir, name):
    # each file is read once per session: the suite stays fast
    if name not in _cache:
        _cache[name] = read_checkpoint(fixtures_dir / name / SETS[name][0])
    return _cache[name]


def _meta(fixtures_dir, name):
    return json.loads((fixtures_dir / name / "meta.json").read_text())


def _raw_rosinality(fixtures_dir, name):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(fixtures_dir / name / "checkpoint.pt", map_location="cpu", weights_only=True)


def _expected_config(meta: dict, name: str) -> dict:
    """The config facts of one set, written down from meta.json only."""
    if name.startswith("rosinality"):
        c = meta["constructor"]["Generator"]
        return dict(z_dim=c["style_dim"], w_dim=c["style_dim"], img_resolution=c["size"], c_dim=0,
                    mapping_layers=c["n_mlp"], num_ws=meta["n_latent"], architecture="skip",
                    conv_clamp=None, num_fp16_res=0,
                    channels={int(r): v for r, v in meta["channels_per_resolution"].items()})  # fmt: skip
    if name == "nvidia_tf_64":
        k = meta["G_static_kwargs"]
        base, cmax = 2 * k["fmap_base"], k["fmap_max"]
        return dict(z_dim=k["latent_size"], w_dim=k["dlatent_size"], img_resolution=k["resolution"], c_dim=0,
                    mapping_layers=k["mapping_layers"], num_ws=meta["num_ws"], architecture="skip",
                    conv_clamp=None, num_fp16_res=0,
                    channels={2**i: min(base // 2**i, cmax) for i in range(2, 7)})  # fmt: skip
    k = meta["G_init_kwargs"]
    syn = k["synthesis_kwargs"]
    return dict(z_dim=k["z_dim"], w_dim=k["w_dim"], img_resolution=k["img_resolution"], c_dim=k["c_dim"],
                mapping_layers=k["mapping_kwargs"]["num_layers"], num_ws=meta["num_ws"],
                architecture=syn.get("architecture", "skip"), conv_clamp=syn["conv_clamp"],
                num_fp16_res=syn["num_fp16_res"],
                channels={int(b[1:]): io[1] for b, io in meta["block_channels_in_out"].items()})  # fmt: skip


@pytest.mark.parametrize("name", list(SETS))
def test_detect_format(fixtures_dir, name):
    assert detect_format(fixtures_dir / name / SETS[name][0]) == SETS[name][1]


@pytest.mark.parametrize("name", list(SETS))
def test_config_matches_meta(fixtures_dir, name):
    ck = _read(fixtures_dir, name)
    exp = _expected_config(_meta(fixtures_dir, name), name)
    cfg = ck.config
    assert cfg.channels == exp["channels"]
    for field in ("z_dim", "w_dim", "img_resolution", "c_dim", "mapping_layers", "architecture", "num_fp16_res"):
        assert getattr(cfg, field) == exp[field], field
    assert cfg.conv_clamp == (None if exp["conv_clamp"] is None else float(exp["conv_clamp"]))
    assert cfg.num_ws == exp["num_ws"]
    assert cfg.img_channels == 3
    assert cfg.mapping_lr_multiplier == pytest.approx(0.01, rel=1e-12)
    assert ck.source_format == cfg.source_format == SETS[name][2]
    assert ck.info["network"] == SETS[name][3]
    if name == "nvidia_ada_cond_32":
        assert cfg.embed_features == 64 and cfg.mapping_hidden == 64


@pytest.mark.parametrize("name", list(SETS))
def test_state_dict_is_canonical(fixtures_dir, name):
    ck = _read(fixtures_dir, name)
    validate_state_dict(ck.config, ck.state_dict)
    exp = expected_shapes(ck.config)
    assert {k: tuple(v.shape) for k, v in ck.state_dict.items()} == exp
    for k, v in ck.state_dict.items():
        assert v.dtype == torch.float32 and v.is_contiguous() and v.device.type == "cpu", k
        assert "resample_filter" not in k


@pytest.mark.parametrize("name", ["nvidia_ada_64", "nvidia_ada_cond_32"])
def test_nvidia_keys_and_shapes_match_meta(fixtures_dir, name):
    meta = _meta(fixtures_dir, name)
    ck = _read(fixtures_dir, name)
    listed = {k: tuple(s) for k, s in meta["G_ema_state_dict"] if not k.endswith("resample_filter")}
    assert {k: tuple(v.shape) for k, v in ck.state_dict.items()} == listed
    assert ck.w_avg_present
    np.testing.assert_array_equal(ck.state_dict["mapping.w_avg"].numpy(), np.load(fixtures_dir / name / "w_avg.npy"))
    assert ck.info["training_set_resolution"] == meta["training_set_kwargs"]["resolution"]


def _tf_name_to_canonical(name: str) -> str | None:
    """Independent restatement of the TF naming table of the fixtures README."""
    if name in ("lod",):
        return None
    if name == "dlatent_avg":
        return "mapping.w_avg"
    if m := re.fullmatch(r"mapping/Dense(\d+)/(\w+)", name):
        return f"mapping.fc{m[1]}.{m[2]}"
    if m := re.fullmatch(r"synthesis/noise(\d+)", name):
        i = int(m[1])
        res = 2 ** ((i + 5) // 2)
        return f"synthesis.b{res}.{'conv1' if i == 0 or i % 2 == 0 else 'conv0'}.noise_const"
    if name == "synthesis/4x4/Const/const":
        return "synthesis.b4.const"
    m = re.fullmatch(r"synthesis/(\d+)x\d+/(\w+)/(\w+)", name)
    layer = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb"}[m[2]]
    param = {"mod_weight": "affine.weight", "mod_bias": "affine.bias"}.get(m[3], m[3])
    return f"synthesis.b{m[1]}.{layer}.{param}"


def test_tf_variables_cover_state_dict(fixtures_dir):
    meta = _meta(fixtures_dir, "nvidia_tf_64")
    ck = _read(fixtures_dir, "nvidia_tf_64")
    gs = meta["variables"]["Gs"]
    names = gs["top"] + [f"mapping/{n}" for n in gs["mapping"]] + [f"synthesis/{n}" for n in gs["synthesis"]]
    mapped = {_tf_name_to_canonical(n) for n in names} - {None}
    assert mapped == set(ck.state_dict)
    assert ck.info["static_kwargs"]["fmap_base"] == meta["G_static_kwargs"]["fmap_base"]


def test_tf_equals_ada_exactly(fixtures_dir):
    """The TF pickle holds nvidia_ada_64's G_ema: every converted tensor must be bit-identical.

    This pins down the TF transforms (transposes, Conv0_up flips, mod_bias + 1, squeezes)."""
    tf = _read(fixtures_dir, "nvidia_tf_64").state_dict
    ada = _read(fixtures_dir, "nvidia_ada_64").state_dict
    assert set(tf) == set(ada)
    max_diff = max((tf[k] - ada[k]).abs().max().item() for k in ada)
    assert max_diff == 0.0
    assert all(torch.equal(tf[k], ada[k]) for k in ada)
    np.testing.assert_array_equal(tf["mapping.w_avg"].numpy(), np.load(fixtures_dir / "nvidia_tf_64" / "w_avg.npy"))


def _rosinality_expected(raw: dict) -> dict[str, torch.Tensor]:
    """Canonical tensors written out from the raw rosinality dict by the README's table."""
    out = {}
    n_mlp = sum(1 for k in raw if re.fullmatch(r"style\.\d+\.weight", k))
    for j in range(n_mlp):
        out[f"mapping.fc{j}.weight"] = raw[f"style.{j + 1}.weight"]
        out[f"mapping.fc{j}.bias"] = raw[f"style.{j + 1}.bias"]
    out["synthesis.b4.const"] = raw["input.input"][0]

    def styled(src, dst, noise):
        out[f"{dst}.weight"] = raw[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = raw[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = raw[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = raw[f"{src}.noise.weight"][0]
        out[f"{dst}.bias"] = raw[f"{src}.activate.bias"]
        out[f"{dst}.noise_const"] = raw[f"noises.noise_{noise}"][0, 0]

    def rgb(src, dst):
        out[f"{dst}.weight"] = raw[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = raw[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = raw[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = raw[f"{src}.bias"].flatten()

    styled("conv1", "synthesis.b4.conv1", 0)
    rgb("to_rgb1", "synthesis.b4.torgb")
    n_rgbs = sum(1 for k in raw if re.fullmatch(r"to_rgbs\.\d+\.bias", k))
    for i in range(n_rgbs):
        res = 2 ** (i + 3)
        styled(f"convs.{2 * i}", f"synthesis.b{res}.conv0", 2 * i + 1)
        styled(f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1", 2 * i + 2)
        rgb(f"to_rgbs.{i}", f"synthesis.b{res}.torgb")
    return out


@pytest.mark.parametrize("name", ["rosinality_64", "rosinality_32_cm1"])
def test_rosinality_values_are_reshapes_of_raw(fixtures_dir, name):
    raw_ck = _raw_rosinality(fixtures_dir, name)
    ck = _read(fixtures_dir, name)
    expected = _rosinality_expected(raw_ck["g_ema"])
    assert set(ck.state_dict) == set(expected) | {"mapping.w_avg"}
    for k, v in expected.items():
        assert torch.equal(ck.state_dict[k], v), k
    # g_ema, not g, was used
    assert not torch.equal(ck.state_dict["mapping.fc0.weight"], raw_ck["g"]["style.1.weight"])
    meta = _meta(fixtures_dir, name)
    listed = [k for k, _ in meta["g_ema_state_dict"] if not k.endswith(".kernel")]
    assert len(listed) == len(ck.state_dict) - 1  # + the w_avg placeholder
    assert sum(v.numel() for k, v in ck.state_dict.items() if k != "mapping.w_avg") == sum(
        int(np.prod(s)) for k, s in meta["g_ema_state_dict"] if not k.endswith(".kernel")
    )
    # training checkpoints store no average W: a zero placeholder, flagged for the caller
    assert not ck.w_avg_present
    assert torch.equal(ck.state_dict["mapping.w_avg"], torch.zeros(ck.config.w_dim))
    assert ck.info["args"] == {k: v for k, v in vars(raw_ck["args"]).items()}


def test_nvidia_falls_back_to_G_without_G_ema(fixtures_dir):
    path = fixtures_dir / "nvidia_ada_64" / "network-snapshot.pkl"
    snap = load_pickle_bytes(path.read_bytes(), source=str(path))
    g_ema_cfg, g_ema_sd, _ = convert_nvidia_snapshot(snap, source="x")
    del snap["G_ema"]
    cfg, sd, info = convert_nvidia_snapshot(snap, source="x")
    assert info["network"] == "G" and "G_ema" in info["note"]
    assert cfg.channels == g_ema_cfg.channels
    assert not torch.equal(sd["mapping.fc0.weight"], g_ema_sd["mapping.fc0.weight"])


def test_rosinality_converted_and_psp_layouts(fixtures_dir, tmp_path):
    """convert_weight.py-style {g_ema, latent_avg} and pSp/e4e {state_dict, latent_avg, opts}."""
    raw = _raw_rosinality(fixtures_dir, "rosinality_32_cm1")
    g_ema = raw["g_ema"]
    avg = torch.randn(64)

    conv = tmp_path / "converted.pt"
    torch.save({"g_ema": g_ema, "latent_avg": avg}, conv)
    ck = read_checkpoint(conv)
    assert ck.w_avg_present and torch.equal(ck.state_dict["mapping.w_avg"], avg)
    assert ck.source_format == "rosinality"

    psp = tmp_path / "psp.pt"
    sd = {f"decoder.{k}": v for k, v in g_ema.items()}
    sd["encoder.input_layer.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save({"state_dict": sd, "latent_avg": avg.repeat(8, 1), "opts": {"encoder_type": "Encoder4Editing"}}, psp)
    ck2 = read_checkpoint(psp)
    assert ck2.source_format == "psp" and ck2.info["opts"]["encoder_type"] == "Encoder4Editing"
    assert torch.equal(ck2.state_dict["mapping.w_avg"], avg)
    assert all(torch.equal(ck2.state_dict[k], ck.state_dict[k]) for k in ck.state_dict)


def test_nvidia_layout_torch_state_dict(fixtures_dir, tmp_path):
    ada = _read(fixtures_dir, "nvidia_ada_64")
    sd = dict(ada.state_dict)
    sd["synthesis.b8.conv0.resample_filter"] = torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 64
    path = tmp_path / "g_ema_state.pt"
    torch.save({"G_ema": sd}, path)
    ck = read_checkpoint(path)
    assert ck.source_format == "nvidia-torch" and ck.w_avg_present
    assert ck.config.channels == ada.config.channels and ck.config.conv_clamp is None
    assert set(ck.state_dict) == set(ada.state_dict)


def test_real_snapshot_pickle_never_imports_nvidia_modules(fixtures_dir):
    import sys

    _read(fixtures_dir, "nvidia_ada_64")
    _read(fixtures_dir, "nvidia_tf_64")
    assert not any(m == "dnnlib" or m.startswith(("dnnlib.", "torch_utils")) for m in sys.modules)


def test_pickle_stub_roundtrip_is_plain_data(fixtures_dir):
    """Converted state dicts hold ordinary tensors that pickle/unpickle normally."""
    ck = _read(fixtures_dir, "nvidia_ada_cond_32")
    clone = pickle.loads(pickle.dumps(ck.state_dict))
    assert all(torch.equal(clone[k], v) for k, v in ck.state_dict.items())


def test_plain_pickled_state_dict(fixtures_dir, tmp_path):
    """A canonical state dict written with pickle.dump (not torch.save) goes the safe path too."""
    ada = _read(fixtures_dir, "nvidia_ada_64")
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"G_ema": ada.state_dict}, protocol=4))
    assert detect_format(path) == "nvidia-pkl"
    ck = read_checkpoint(path)
    assert ck.source_format == "nvidia-torch"
    assert all(torch.equal(ck.state_dict[k], v) for k, v in ada.state_dict.items())


def test_detect_format_with_memoised_module_name(tmp_path, fake_nvidia_modules):
    """The TF marker is found even when the module string comes from the pickle memo."""
    net = fake_nvidia_modules.TFNetwork({"version": 4})
    data = pickle.dumps(("dnnlib.tflib.network", net), protocol=4)  # module string memoised first
    path = tmp_path / "memo.pkl"
    path.write_bytes(data)
    assert detect_format(path) == "tf-pkl"
