"""expected_shapes / validate_state_dict / infer_config on synthetic configurations."""

from __future__ import annotations

import pytest
import torch

from spatial_latent.errors import CheckpointError, UnsupportedCheckpointError
from spatial_latent.checkpoints.validate import (
    check_resample_filter,
    expected_shapes,
    infer_config,
    standard_resample_filter,
    state_dict_problems,
    validate_state_dict,
)
from spatial_latent.networks import GeneratorConfig


def _cfg(**kw) -> GeneratorConfig:
    base = dict(z_dim=16, w_dim=12, img_resolution=32, channels={4: 24, 8: 20, 16: 10, 32: 6})
    base.update(kw)
    return GeneratorConfig(**base)


def _zeros(config: GeneratorConfig) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(s) for k, s in expected_shapes(config).items()}


CONFIGS = {
    "skip": _cfg(),
    "resnet": _cfg(architecture="resnet"),
    "orig": _cfg(architecture="orig", img_channels=1),
    "cond": _cfg(c_dim=7, embed_features=5, mapping_layers=3, mapping_hidden=9),
    "cond_no_z": _cfg(z_dim=0, c_dim=3, mapping_layers=2),
    "one_fc": _cfg(mapping_layers=1, img_resolution=8, channels={4: 3, 8: 2}),
}


def test_expected_shapes_layout():
    exp = expected_shapes(CONFIGS["resnet"])
    assert exp["synthesis.b4.const"] == (24, 4, 4)
    assert exp["synthesis.b8.conv0.weight"] == (20, 24, 3, 3)
    assert exp["synthesis.b8.conv0.affine.weight"] == (24, 12)
    assert exp["synthesis.b8.conv1.affine.weight"] == (20, 12)
    assert exp["synthesis.b16.skip.weight"] == (10, 20, 1, 1)
    assert exp["synthesis.b32.conv1.noise_const"] == (32, 32) and exp["synthesis.b32.conv1.noise_strength"] == ()
    assert [k for k in exp if ".torgb." in k] == [f"synthesis.b32.torgb.{p}" for p in ("weight", "bias", "affine.weight", "affine.bias")]
    assert "synthesis.b4.skip.weight" not in exp and not any("embed" in k for k in exp)
    assert sum(".torgb.weight" in k for k in expected_shapes(CONFIGS["skip"])) == 4
    assert not any(".skip." in k for k in expected_shapes(CONFIGS["orig"]))
    assert expected_shapes(CONFIGS["orig"])["synthesis.b32.torgb.weight"] == (1, 6, 1, 1)


def test_expected_mapping_shapes():
    c = expected_shapes(CONFIGS["cond"])
    assert c["mapping.embed.weight"] == (5, 7) and c["mapping.embed.bias"] == (5,)
    assert c["mapping.fc0.weight"] == (9, 16 + 5)
    assert c["mapping.fc1.weight"] == (9, 9)
    assert c["mapping.fc2.weight"] == (12, 9) and "mapping.fc3.weight" not in c
    assert c["mapping.w_avg"] == (12,)
    assert expected_shapes(CONFIGS["cond_no_z"])["mapping.fc0.weight"] == (12, 12)  # embed only, E = w_dim
    assert expected_shapes(CONFIGS["one_fc"])["mapping.fc0.weight"] == (12, 16)
    assert "mapping.w_avg" not in expected_shapes(CONFIGS["skip"], include_w_avg=False)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_infer_config_round_trip(name):
    cfg = CONFIGS[name]
    sd = _zeros(cfg)
    validate_state_dict(cfg, sd)
    got = infer_config(sd, source_format=cfg.source_format)
    assert got == cfg


def test_validate_reports_every_problem():
    cfg = CONFIGS["skip"]
    sd = _zeros(cfg)
    del sd["synthesis.b8.conv1.weight"]
    sd["synthesis.b16.conv0.weight"] = torch.zeros(10, 24, 3, 3)
    sd["synthesis.b8.resample_filter"] = standard_resample_filter()
    sd["mapping.fc0.bias"] = [0.0] * 12
    with pytest.raises(CheckpointError, match="^ckpt.pt: generator weights do not match the inferred architecture; ") as e:
        validate_state_dict(cfg, sd, source="ckpt.pt")
    msg = str(e.value)
    assert msg.startswith("ckpt.pt:")
    assert "missing keys: synthesis.b8.conv1.weight" in msg
    assert "unexpected keys: synthesis.b8.resample_filter" in msg
    assert "synthesis.b16.conv0.weight expected [10, 20, 3, 3] got [10, 24, 3, 3]" in msg
    assert "not tensors: mapping.fc0.bias" in msg
    p = state_dict_problems(cfg, sd)
    assert p["missing"] == ["synthesis.b8.conv1.weight"] and len(p["wrong_shape"]) == 1


def test_w_avg_optional():
    cfg = CONFIGS["skip"]
    sd = _zeros(cfg)
    del sd["mapping.w_avg"]
    validate_state_dict(cfg, sd, require_w_avg=False)
    with pytest.raises(CheckpointError, match="mapping.w_avg"):
        validate_state_dict(cfg, sd)


def test_long_listings_are_capped():
    cfg = CONFIGS["skip"]
    with pytest.raises(CheckpointError, match=r"\(\+\d+ more\)"):
        validate_state_dict(cfg, {})


def test_infer_config_errors():
    sd = _zeros(CONFIGS["skip"])
    no_map = {k: v for k, v in sd.items() if not k.startswith("mapping.fc")}
    with pytest.raises(CheckpointError, match="mapping.fc0.weight"):
        infer_config(no_map)
    gap = {k: v for k, v in sd.items() if not k.startswith("mapping.fc1.")}
    with pytest.raises(CheckpointError, match="mapping.fc1.weight"):
        infer_config(gap)
    no_b16 = {k: v for k, v in sd.items() if not k.startswith("synthesis.b16.")}
    with pytest.raises(CheckpointError, match="synthesis.b16"):
        infer_config(no_b16)
    bad_ndim = dict(sd)
    bad_ndim["synthesis.b8.conv1.weight"] = torch.zeros(20)
    with pytest.raises(CheckpointError, match="synthesis.b8.conv1.weight"):
        infer_config(bad_ndim)


def test_resample_filter_check():
    std = standard_resample_filter()
    assert std.shape == (4, 4) and float(std.sum()) == pytest.approx(1.0)
    assert torch.allclose(std[0], torch.tensor([1.0, 3, 3, 1]) / 64)
    check_resample_filter("f", std)
    check_resample_filter("f", std * 4, gains=(1.0, 4.0))
    for bad in (std * 4, torch.ones(4, 4) / 16, std[:3, :3], std.flip(0) + 0.01):
        with pytest.raises(UnsupportedCheckpointError, match="f is not the standard"):
            check_resample_filter("f", bad)
