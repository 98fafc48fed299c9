"""Hostile and malformed training checkpoints: refused with one line before any network is built
from them (issue 15)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bounded import run_cases
from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.cli import run_cli
from spatial_latent.errors import CheckpointError
from spatial_latent.train import PRESETS, main
from spatial_latent.training.trainer import CHECKPOINT_FORMAT, TrainConfig, default_d_channels, generator_config_dict, read_training_checkpoint
from spatial_latent.training.discriminator import Discriminator


def _state() -> dict:
    """A well-formed checkpoint state of the smoke preset (what Trainer.state() holds)."""
    G = random_generator(PRESETS["smoke"], seed=0)
    cfg = TrainConfig(crop=16, batch=4)
    cfg.d_channels = default_d_channels(G, 16)
    D = Discriminator(16, cfg.d_channels)
    opt = torch.optim.Adam(G.parameters())
    return {"format": CHECKPOINT_FORMAT, "step": 2, "train_config": dataclasses.asdict(cfg), "generator_config": generator_config_dict(G.config),
            "G": G.state_dict(), "G_ema": G.state_dict(), "D": D.state_dict(), "opt_g": opt.state_dict(), "opt_d": opt.state_dict(),
            "history_json": "[]"}  # fmt: skip


def test_small_checkpoint_declaring_a_huge_generator_is_refused(tmp_path):
    state = _state()
    state["generator_config"]["channels"] = {str(2**k): 8192 for k in range(2, 11)}
    state["generator_config"]["img_resolution"] = 1024
    state.update(G={}, G_ema={}, D={})
    path = tmp_path / "huge.pt"
    torch.save(state, path)
    assert path.stat().st_size < 8192  # built unchecked, this generator would take about 5 GB
    res = run_cases({"huge": f"read_training_checkpoint({str(path)!r})"}, setup="from spatial_latent.training.trainer import read_training_checkpoint", cap_mb=768)["huge"]
    print(res)
    assert "CheckpointError" in res["mro"] and res["error"].startswith(f"{path}: G: generator weights do not match the inferred architecture; missing keys: "), res
    assert res["peak_growth_mb"] < 48 and res["seconds"] < 10, res


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["generator_config"].__setitem__("channels", [32, 32]), "generator_config: generator config channels is list, expected an object"),
        (lambda s: s["generator_config"].__setitem__("channels", None), "generator config channels is NoneType, expected an object"),
        (lambda s: s.__setitem__("generator_config", "z_dim=64"), "malformed training checkpoint: generator_config is a str, not a dict"),
        (lambda s: s["generator_config"].__setitem__("w_dim", _deep(40)), "generator config is nested more than 32 levels deep"),
        (lambda s: s["generator_config"].__setitem__("mapping_lr_multiplier", 1e308), "mapping learning-rate multiplier 1e+308 is outside (0, 10]"),
        (lambda s: s["train_config"].__setitem__("colour", 1), "malformed training checkpoint: train_config (TypeError"),
        (lambda s: s["train_config"].__setitem__("crop", "16"), "malformed training checkpoint: train_config (TypeError"),
        (lambda s: s["train_config"].__setitem__("d_channels", {"16": 2**30}), "discriminator widths"),
        (lambda s: s.__setitem__("step", -1), "malformed training checkpoint: step is -1"),
        (lambda s: s["D"].__setitem__("fc_bias", torch.zeros(3)), "malformed training checkpoint: D does not match its configured widths"),
        (lambda s: s["G"].__setitem__("mapping.w_avg", torch.full_like(s["G"]["mapping.w_avg"], float("nan"))), "G: weights are not finite floating-point tensors in ['mapping.w_avg']"),
        (lambda s: s.__setitem__("opt_d", None), "malformed training checkpoint: no opt_d optimizer state"),
    ],
)
def test_malformed_checkpoint_is_one_line(tmp_path, capsys, change, message):
    state = _state()
    assert read_training_checkpoint(_save(tmp_path / "good.pt", state))["step"] == 2
    change(state)
    path = _save(tmp_path / "bad.pt", state)
    with pytest.raises(CheckpointError) as e:
        read_training_checkpoint(path)
    assert str(e.value).startswith(f"{path}") and message in str(e.value) and "\n" not in str(e.value), str(e.value)
    # the train command: one error line, exit 2
    assert run_cli(main, ["--data", "builtin:grass", "--out", str(tmp_path / "run"), "--resume-from", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def _deep(n: int) -> list:
    x: list = [1]
    for _ in range(n):
        x = [x]
    return x


def _save(path, state):
    torch.save(state, path)
    return path
