"""Hostile encoder files: a small file declaring a huge network is refused before the network is
allocated; bad weights and configs are one error line (issue 15)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bounded import run_cases
from encoders.learned import ENCODER_FORMAT, ENCODER_FORMAT_VERSION, build_encoder, load_encoder, save_encoder
from spatial_latent.errors import InputError


def _payload(config: dict, state: dict) -> dict:
    return {"format": ENCODER_FORMAT, "format_version": ENCODER_FORMAT_VERSION, "config": config, "state_dict": state,
            "generator_fingerprint": "", "extra": {}}  # fmt: skip


def test_small_file_declaring_a_huge_encoder_is_refused_before_allocating(tmp_path, G):
    cfg = dataclasses.asdict(build_encoder(G, base_channels=8, max_channels=16).config)
    cfg.update(img_resolution=1024, w_dim=512, num_ws=18, input_resolution=256, base_channels=4096, max_channels=4096)
    path = tmp_path / "huge.pt"
    torch.save(_payload(cfg, {}), path)
    assert path.stat().st_size < 4096  # the unchecked version built a network of several GB from this
    res = run_cases({"huge": f"load_encoder({str(path)!r})"}, setup="from encoders.learned import load_encoder", cap_mb=768)["huge"]
    print(res)
    assert "InputError" in res["mro"] and res["error"].startswith(f"{path}: encoder weights do not match its config (missing or mis-shaped: ["), res
    assert res["peak_growth_mb"] < 48 and res["seconds"] < 10, res


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda cfg, sd: sd.__setitem__(next(iter(sd)), torch.full_like(sd[next(iter(sd))], float("nan"))), "are not finite floating-point numbers"),
        (lambda cfg, sd: sd.__setitem__("w_avg", sd["w_avg"].to(torch.int32)), "are not finite floating-point numbers in ['w_avg']"),
        (lambda cfg, sd: cfg.__setitem__("base_channels", "8"), "encoder config base_channels is '8', expected an integer"),
        (lambda cfg, sd: cfg.__setitem__("base_channels", 2**40), "encoder config base_channels is 1099511627776, expected an integer in [0, 65536]"),
        (lambda cfg, sd: cfg.__setitem__("colour", 1), "inconsistent encoder file (TypeError"),
    ],
)
def test_bad_encoder_file_is_one_line(tmp_path, G, change, message):
    enc = build_encoder(G, base_channels=8, max_channels=16)
    cfg = dataclasses.asdict(enc.config)
    sd = {k: v.clone() for k, v in enc.state_dict().items()}
    change(cfg, sd)
    path = tmp_path / "bad.pt"
    torch.save(_payload(cfg, sd), path)
    with pytest.raises(InputError) as e:
        load_encoder(path)
    assert str(e.value).startswith(f"{path}") and message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_encoder_zip_declaring_more_than_it_holds(tmp_path, G):
    path = save_encoder(build_encoder(G, base_channels=8, max_channels=16), tmp_path / "e.pt")
    data = bytearray(path.read_bytes())
    i = data.rfind(b"PK\x01\x02")  # the last central directory entry declares 4 GB
    data[i + 20 : i + 28] = (0xFFFFFF00).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"^{path}: zip member '.*' runs past the end of the file; truncated or corrupt learned encoder file$"):
        load_encoder(path)
