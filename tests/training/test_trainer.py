"""Training: the discriminator, exact resume, learning on a trivial data set, the train CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from spatial_latent.cli import run_cli
from spatial_latent.training.data import CropSampler, load_images
from spatial_latent.training.discriminator import Discriminator
from spatial_latent.errors import InputError
from spatial_latent.checkpoints.loading import load_generator, random_generator
from spatial_latent.train import PRESETS, main
from spatial_latent.training.trainer import Trainer, TrainConfig, read_training_checkpoint, train_config_from

SMOKE = PRESETS["smoke"]


def solid_images(tmp_path, colours=((200, 40, 40), (180, 60, 30))):
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, c in enumerate(colours):
        pic = np.clip(np.array(c)[None, None] + rng.normal(0, 8, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pic).save(folder / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def make_trainer(images, steps=4, **kw) -> Trainer:
    torch.manual_seed(0)
    G = random_generator(SMOKE, seed=0)
    cfg = TrainConfig(crop=16, batch=4, steps=steps, r1_every=2, seed=1, **kw)
    return Trainer(G, CropSampler(images, 16), cfg, torch.device("cpu"))


def test_discriminator_shapes_and_size_check():
    D = Discriminator(32, {32: 16, 16: 32, 8: 32, 4: 32})
    assert D(torch.randn(6, 3, 32, 32)).shape == (6,)
    with pytest.raises(ValueError, match="32x32"):
        D(torch.randn(2, 3, 16, 16))


def test_resume_is_exact(tmp_path):
    images, _ = load_images(str(solid_images(tmp_path)))
    straight = make_trainer(images)
    for _ in range(4):
        straight.step()

    first = make_trainer(images)
    first.step(), first.step()
    ckpt = first.save(tmp_path / "ckpt.pt")
    state = read_training_checkpoint(ckpt)
    resumed = make_trainer(images)
    assert train_config_from(state).seed == 1
    resumed.load_state(state)
    resumed.step(), resumed.step()

    assert [h["loss_g"] for h in resumed.history] == [h["loss_g"] for h in straight.history]
    assert [h["loss_d"] for h in resumed.history] == [h["loss_d"] for h in straight.history]
    for a, b in zip(straight.G_ema.state_dict().values(), resumed.G_ema.state_dict().values()):
        assert torch.equal(a, b)


def test_generator_learns_the_colour_of_the_data(tmp_path):
    images, _ = load_images(str(solid_images(tmp_path)))
    target = torch.stack([im.mean(dim=(1, 2)) for im in images]).mean(0)
    tr = make_trainer(images, lr_g=0.01, lr_d=0.01, ema_kimg=0.0, ema_rampup=0.0)
    before = (tr.samples(4, (16, 16), ema=False).mean(dim=(0, 2, 3)) - target).norm()
    for _ in range(40):
        tr.step()
    after = (tr.samples(4, (16, 16), ema=False).mean(dim=(0, 2, 3)) - target).norm()
    assert after < 0.5 * before, (before, after)


def test_bad_training_input(tmp_path):
    with pytest.raises(InputError, match="unknown built-in image"):
        load_images("builtin:nope")
    with pytest.raises(InputError, match="folder of images"):
        load_images(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no readable images"):
        load_images(str(empty))
    images, _ = load_images(str(solid_images(tmp_path)))
    with pytest.raises(InputError, match="smaller than the 64 px"):
        CropSampler(images, 64)
    with pytest.raises(InputError, match="power of two"):
        TrainConfig(crop=24).validate()


def test_train_cli_writes_a_usable_generator_and_resumes(tmp_path, capsys):
    data = solid_images(tmp_path)
    out = tmp_path / "run"
    common = ["--data", str(data), "--out", str(out), "--preset", "smoke", "--crop", "16", "--batch", "4",
              "--sample-every", "2", "--checkpoint-every", "1", "--swd-images", "8"]
    assert main(common + ["--steps", "2"]) == 0
    for name in ("checkpoint.pt", "generator.safetensors", "samples_000002.png", "metrics.jsonl", "run.json"):
        assert (out / name).is_file(), name
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["step"] == 2 and rec["swd_1x"] > 0 and rec["swd_4x"] > 0

    G = load_generator(out / "generator.safetensors")
    assert G.img_resolution == SMOKE["img_resolution"]
    from spatial_latent.render.generator import SpatialGenerator

    img = SpatialGenerator(G, padding="none")(G_grid(G), window=(0, 0, 40, 24))
    assert img.shape == (1, 3, 24, 40) and torch.isfinite(img).all()

    # An existing run is not overwritten; --resume-from continues it.
    assert run_cli(main, common + ["--steps", "3"]) == 2
    assert "--resume-from" in capsys.readouterr().err
    assert main(common + ["--steps", "3", "--resume-from", str(out / "checkpoint.pt")]) == 0
    state = read_training_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 3 and len(json.loads(state["history_json"])) == 3
    with pytest.raises(Exception, match="not a spatial-latent training checkpoint"):
        read_training_checkpoint(_foreign(tmp_path))


def _foreign(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    return path


def G_grid(G):
    from spatial_latent.latents.grid import LatentGrid

    w = G.map(torch.randn(1, G.z_dim))[:, :1]  # [1, 1, C]
    return LatentGrid(w[..., None, None].expand(1, 1, G.w_dim, 12, 12).clone(), space="w", density=4)


@pytest.mark.parametrize("name", ["rosinality_32_cm1", "nvidia_tf_64"])
def test_fine_tunes_a_pretrained_checkpoint(tmp_path, name):
    from support import FIXTURE_SETS, fixture_set_dir

    ckpt = fixture_set_dir(name) / FIXTURE_SETS[name][0]
    data = solid_images(tmp_path)
    before = load_generator(ckpt)
    out = tmp_path / "run"
    argv = ["--data", str(data), "--out", str(out), "--init", str(ckpt), "--crop", "16", "--batch", "2", "--steps", "1",
            "--sample-every", "0", "--checkpoint-every", "0", "--swd-images", "4"]
    assert main(argv) == 0
    after = load_generator(out / "generator.safetensors")
    assert after.config.channels == before.config.channels
    moved = max((a - b).abs().max().item() for a, b in zip(after.state_dict().values(), before.state_dict().values()))
    assert 0 < moved < 1.0  # one small step away from the pretrained weights


def face_like_set(n=24, size=16, seed=0) -> np.ndarray:
    """Smooth blobs on a plain background: uint8 [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(0.4, 0.6, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05)
        col = rng.uniform(80, 220, 3)
        out.append(np.clip(40 + blob[..., None] * col, 0, 255))
    return np.stack(out).astype(np.uint8)


def make_whole_trainer(steps=4) -> Trainer:
    from spatial_latent.training.data import ImageSetSampler

    torch.manual_seed(0)
    G = random_generator(SMOKE, seed=0)
    cfg = TrainConfig(mode="whole", augment="color,translation,cutout", crop=16, batch=4, steps=steps, r1_every=2, seed=3)
    return Trainer(G, ImageSetSampler(face_like_set()), cfg, torch.device("cpu"))


def test_whole_image_mode_resumes_exactly(tmp_path):
    straight = make_whole_trainer()
    losses = [straight.step()["loss_g"] for _ in range(4)]
    first = make_whole_trainer()
    first.step(), first.step()
    resumed = make_whole_trainer()
    resumed.load_state(read_training_checkpoint(first.save(tmp_path / "ckpt.pt")))
    assert train_config_from(read_training_checkpoint(tmp_path / "ckpt.pt")).mode == "whole"
    resumed_losses = [resumed.step()["loss_g"] for _ in range(2)]
    assert resumed_losses == losses[2:]
    for (name, a), b in zip(straight.G_ema.state_dict().items(), resumed.G_ema.state_dict().values()):
        assert torch.equal(a, b), name
    # whole mode renders whole images with the generator's zero padding, from fixed seeds
    s1, s2 = straight.samples(3, (16, 16)), straight.samples(3, (16, 16))
    assert s1.shape == (3, 3, 16, 16) and torch.equal(s1, s2)


def test_whole_image_mode_checks_sizes_and_policy():
    from spatial_latent.training.data import ImageSetSampler

    G = random_generator(SMOKE, seed=0)
    with pytest.raises(InputError, match="16 px"):
        Trainer(G, ImageSetSampler(face_like_set(size=32)), TrainConfig(mode="whole", crop=32, batch=4), torch.device("cpu"))
    with pytest.raises(InputError, match="unknown augmentation 'rotate'"):
        TrainConfig(mode="whole", augment="color,rotate").validate()
    with pytest.raises(InputError, match="uint8"):
        ImageSetSampler(face_like_set().astype(np.float32))



def test_whole_image_mode_without_noise_keeps_strengths_at_zero():
    from spatial_latent.training.data import ImageSetSampler

    torch.manual_seed(0)
    G = random_generator(SMOKE, seed=0)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)  # as if an earlier run had learned to use noise
    cfg = TrainConfig(mode="whole", noise=False, crop=16, batch=4, steps=3, r1_every=2, seed=3)
    tr = Trainer(G, ImageSetSampler(face_like_set()), cfg, torch.device("cpu"))
    for _ in range(3):
        tr.step()
    strengths = [p for n, p in list(tr.G.named_parameters()) + list(tr.G_ema.named_parameters()) if n.endswith("noise_strength")]
    assert strengths and all(float(p.abs().max()) == 0.0 for p in strengths)
    z = torch.randn(2, tr.G_ema.z_dim)
    with torch.no_grad():
        assert torch.equal(tr.G_ema(z, noise_mode="random"), tr.G_ema(z, noise_mode="none"))
