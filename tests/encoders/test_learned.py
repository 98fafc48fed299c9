"""The learned encoder: shapes, start at w_avg, save/load, training samples, checkpoints and resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from encoders.learned import EncoderConfig, build_encoder, load_encoder, save_encoder
from encoders.optimize import OptimizeConfig
from encoders.pipeline import encode
from encoders.training import KINDS, TrainConfig, iteration_generator, learning_rate, sample_grids, train_encoder
from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.networks import Generator
from spatial_latent.render.generator import SpatialGenerator
from support import TINY_CONFIGS

SMALL = dict(density=4, base_channels=8, max_channels=32)


def small_cfg(**kw: object) -> TrainConfig:
    base = dict(iters=4, batch=3, lr=2e-3, **SMALL)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_untrained_encoder_returns_w_avg(G: Generator) -> None:
    enc = build_encoder(G, density=4, base_channels=8, max_channels=32)
    img = torch.randn(2, 3, G.img_resolution, G.img_resolution)
    out = enc(img)
    assert out.shape == (2, G.num_ws, G.w_dim, 4, 4)
    assert torch.allclose(out, G.mapping.w_avg.view(1, 1, -1, 1, 1).expand_as(out))
    grid = enc.encode(img)
    assert isinstance(grid, LatentGrid) and grid.space == "w+" and grid.density == 4
    assert enc(torch.randn(1, 3, 64, 64)).shape == (1, G.num_ws, G.w_dim, 4, 4)  # other sizes are resized
    with pytest.raises(InputError, match=r"encoder input must be \[B, 3, H, W\], got \(1, 1, 32, 32\)"):
        enc(torch.randn(1, 1, 32, 32))


def test_layer_groups_cover_every_row_once() -> None:
    for res, num_ws in ((32, 8), (64, 10), (1024, 18)):
        groups = EncoderConfig(res, 16, num_ws).layer_groups()
        assert sum(groups, []) == list(range(num_ws))
    assert EncoderConfig(1024, 512, 18).layer_groups()[0] == [0, 1, 2]  # 4x4 and 8x8 layers are coarse


def test_save_load_round_trip_and_bad_files(G: Generator, tmp_path: Path) -> None:
    enc = build_encoder(G, **SMALL)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_encoder(enc, tmp_path / "e.pt", G.fingerprint())
    back = load_encoder(path, G=G)
    img = torch.randn(2, 3, G.img_resolution, G.img_resolution)
    with torch.no_grad():
        assert torch.equal(back(img), enc(img))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not a readable encoder"):
        load_encoder(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a spatial-latent encoder"):
        load_encoder(tmp_path / "other.pt")
    with pytest.raises(InputError, match="not found"):
        load_encoder(tmp_path / "missing.pt")
    other = random_generator(TINY_CONFIGS["orig"])  # 16 px
    with pytest.raises(InputError, match="trained for a 32px generator"):
        load_encoder(path, G=other)


def test_training_samples(G: Generator) -> None:
    for kind in range(4):
        mix = [0.0] * 4
        mix[kind] = 1.0
        lat = sample_grids(G, 3, 4, torch.Generator().manual_seed(kind), mix)
        assert lat.shape == (3, G.num_ws, G.w_dim, 4, 4)
        over_cells = float((lat - lat[..., :1, :1]).abs().max())
        over_layers = float((lat - lat[:, :1]).abs().max())
        name = KINDS[kind]
        assert (over_cells < 1e-6) == (name in ("plain", "mixed")), name  # composed and fields vary over cells
        assert (over_layers < 1e-6) == (name != "mixed"), name  # only style mixing varies over layers
    a = sample_grids(G, 4, 4, iteration_generator(0, 7))
    b = sample_grids(G, 4, 4, iteration_generator(0, 7))
    assert torch.equal(a, b) and not torch.equal(a, sample_grids(G, 4, 4, iteration_generator(0, 8)))


def test_resumed_training_equals_an_uninterrupted_run(G: Generator, tmp_path: Path) -> None:
    full = train_encoder(G, small_cfg(iters=4, lr_decay=0.5), tmp_path / "full.pt", checkpoint_every=0)
    part = tmp_path / "part.pt"
    seen: list[int] = []

    def interrupt_after_two(i: int, n: int, losses: dict) -> None:
        seen.append(i)
        if i == 2:
            raise KeyboardInterrupt  # Ctrl-C: the checkpoint after 2 iterations is written

    with pytest.raises(KeyboardInterrupt):
        train_encoder(G, small_cfg(iters=4, lr_decay=0.5), part, checkpoint_every=0, callback=interrupt_after_two)
    assert seen == [1, 2] and torch.load(part, weights_only=True)["extra"]["train"]["iteration"] == 2
    resumed = train_encoder(G, small_cfg(iters=4, lr_decay=0.5), part, resume=True, callback=lambda i, n, l: seen.append(i))
    assert seen == [1, 2, 3, 4]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    payload = torch.load(part, weights_only=True)
    assert payload["extra"]["train"]["iteration"] == 4 and len(payload["extra"]["train"]["history"]) == 4
    assert payload["generator_fingerprint"] == G.fingerprint()
    with pytest.raises(InputError, match="exists"):
        train_encoder(G, small_cfg(), part)
    with pytest.raises(InputError, match="different settings: lr"):
        train_encoder(G, small_cfg(iters=6, lr=1e-2), part, resume=True)


def test_training_learning_rate_decays_at_the_end() -> None:
    cfg = small_cfg(iters=100, lr=1e-3, lr_decay=0.3)
    lrs = [learning_rate(i, cfg) for i in range(100)]
    assert lrs[:70] == [1e-3] * 70 and lrs[85] == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    assert all(a > b for a, b in zip(lrs[70:], lrs[71:])) and 5e-5 < lrs[99] < 6e-5  # down to lr / 20
    assert all(learning_rate(i, small_cfg(iters=100, lr_decay=0.0)) == 2e-3 for i in (0, 99))
    with pytest.raises(InputError, match="lr-decay"):
        small_cfg(lr_decay=1.5).validate()


def test_training_learns_and_the_pipeline_uses_it(G: Generator, tmp_path: Path) -> None:
    enc = train_encoder(G, small_cfg(iters=40, batch=4, lr=3e-3), tmp_path / "e.pt", checkpoint_every=0)
    held_out = sample_grids(G, 6, 4, torch.Generator().manual_seed(999))  # grids it never saw
    with torch.no_grad():
        imgs = SpatialGenerator(G)(LatentGrid(held_out, space="w+", density=4)).clamp(-1, 1)
    cfg0 = OptimizeConfig(steps=0, density=4, loss="mse")
    from_avg = encode(G, imgs, cfg0)
    only = encode(G, imgs, cfg0, encoder=enc)
    mse = lambda inv: sum(m["mse"] for m in inv.metrics)  # noqa: E731
    assert mse(only) < 0.8 * mse(from_avg)  # the encoder's grid already beats the average latent
    with torch.no_grad():
        assert torch.allclose(only.grid.data, enc(imgs))  # steps=0 is the encoder's grid itself
    refined = encode(G, imgs[:2], OptimizeConfig(steps=15, density=4, loss="mse"), encoder=enc)
    assert refined.grid.meta["start"] == "encoder" and only.grid.meta["start"] == "encoder"
    assert mse(refined) < sum(m["mse"] for m in only.metrics[:2])  # and optimization improves on it


@pytest.mark.slow
def test_train_cli(tmp_path: Path) -> None:
    out = tmp_path / "enc.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "spatial_latent.train_encoder", "--network", "tiny", "--out", str(out), "--batch", "2", "--density", "2", "--channels", "8", "--max-channels", "16", "--device", "cpu"]
    r = subprocess.run([*args, "--iters", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert torch.load(out, weights_only=True)["extra"]["train"]["iteration"] == 2
    r = subprocess.run([*args, "--iters", "3"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "--resume" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([*args, "--iters", "3", "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert torch.load(out, weights_only=True)["extra"]["train"]["iteration"] == 3
    r = subprocess.run([sys.executable, "-m", "spatial_latent.train_encoder", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "--resume" in r.stdout and "--real-dir" in r.stdout


def test_training_with_real_pictures(G: Generator, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + 10 * i, 50, 3), dtype=np.uint8)).save(real / f"{i}.png")
    (real / "broken.png").write_text("not a picture")  # reported and skipped
    seen: list[dict[str, float]] = []
    cfg = small_cfg(iters=2, batch=3, real_dir=str(real), real_per_batch=1, latent_weight=1.0)
    train_encoder(G, cfg, tmp_path / "e.pt", checkpoint_every=0, callback=lambda i, n, l: seen.append(l))
    assert len(seen) == 2 and all(set(s) == {"latent", "image", "loss"} for s in seen)
    only_real = small_cfg(iters=1, batch=2, real_dir=str(real), real_per_batch=2)
    train_encoder(G, only_real, tmp_path / "r.pt", checkpoint_every=0, callback=lambda i, n, l: seen.append(l))
    assert set(seen[-1]) == {"image", "loss"}  # no latent to regress for real pictures
    with pytest.raises(InputError, match="--real-dir"):
        small_cfg(real_per_batch=1).validate()
