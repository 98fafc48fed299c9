"""``python -m spatial_latent.encode`` run as a user would: outputs, bad inputs, faces, LPIPS offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.checkpoints.loading import load_generator

skimage_data = pytest.importorskip("skimage.data")

pytestmark = pytest.mark.slow  # every test here runs the command as a subprocess


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "spatial_latent.encode", *args], capture_output=True, text=True, timeout=300, env=full_env)


def two_faces() -> np.ndarray:
    import cv2

    big = skimage_data.astronaut()[20:260, 120:330]
    canvas = np.full((300, 420, 3), 200, np.uint8)
    canvas[20:260, 10:220] = big
    canvas[60:180, 280:385] = cv2.resize(big, (105, 120), interpolation=cv2.INTER_AREA)
    return canvas


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) / 255).__pow__(2).mean()
    return float(10 * np.log10(1 / mse))


def test_folder_with_faces_a_non_face_and_a_broken_file(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(src / "astro.jpg", quality=92)
    Image.fromarray(two_faces()).save(src / "two.png")
    Image.fromarray(skimage_data.coffee()).save(src / "coffee.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    out = tmp_path / "out"
    r = run(str(src), "--network", "tiny", "--steps", "6", "--loss", "mse", "--density", "4", "--batch-size", "2",
            "--all-faces", "--paste-back", "--detector", "opencv", "--device", "cpu", "--outdir", str(out))
    assert r.returncode == 1, r.stderr  # some pictures skipped, the rest done
    assert "Traceback" not in r.stderr
    assert "coffee.png: no face found" in r.stderr and "--no-align" in r.stderr
    assert "broken.jpg: corrupt or truncated image" in r.stderr

    summary = json.loads((out / "summary.json").read_text())
    assert sorted(e["name"] for e in summary["encoded"]) == ["astro_face0", "two_face0", "two_face1"]
    assert sorted(Path(s["source"]).name for s in summary["skipped"]) == ["broken.jpg", "coffee.png"]

    G = load_generator("tiny")
    R = G.img_resolution
    for name in ("astro_face0", "two_face0", "two_face1"):
        target = np.asarray(Image.open(out / f"{name}_target.png"))
        recon = np.asarray(Image.open(out / f"{name}_recon.png"))
        compare = np.asarray(Image.open(out / f"{name}_compare.png"))
        assert target.shape == recon.shape == (R, R, 3) and compare.shape == (R, 2 * R, 3)
        assert np.array_equal(compare[:, :R], target) and np.array_equal(compare[:, R:], recon)
        metrics = json.loads((out / f"{name}_metrics.json").read_text())
        assert len(metrics["loss_curve"]) == len(metrics["recon_curve"]) == 6
        assert metrics["metrics"]["psnr"] == pytest.approx(psnr(target, recon), abs=0.5)
        grid = LatentGrid.load(out / f"{name}.latent.safetensors")
        assert grid.data.shape == (1, G.num_ws, G.w_dim, 4, 4) and grid.density == 4
        assert grid.meta["generator_fingerprint"] == G.fingerprint() and grid.meta["optimize"]["steps"] == 6
        assert len(grid.meta["alignment"]["matrix"]) == 2 and grid.meta["toolkit_version"]
        noise = [grid.extras[f"noise.{i}"] for i in range(G.num_ws - 1)]
        from encoders.noise_maps import render
        from spatial_latent.render.generator import SpatialGenerator

        with torch.no_grad():
            again = render(SpatialGenerator(G), grid, noise)
        again_u8 = (again[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
        assert np.abs(again_u8.astype(int) - recon.astype(int)).max() <= 1  # the file reproduces the picture
    # the face boxes of the two-face picture: face 0 is the larger, on the left
    meta0 = LatentGrid.load(out / "two_face0.latent.safetensors").meta
    meta1 = LatentGrid.load(out / "two_face1.latent.safetensors").meta
    assert meta0["face"]["box"][2] > meta1["face"]["box"][2] and meta0["face"]["box"][0] < meta1["face"]["box"][0]
    # paste-back: the photo's size, changed only around the face
    photo = np.asarray(Image.open(src / "astro.jpg").convert("RGB"))
    pasted = np.asarray(Image.open(out / "astro_face0_pasted.png"))
    assert pasted.shape == photo.shape
    assert np.array_equal(pasted[400:], photo[400:]) and not np.array_equal(pasted[90:150, 190:260], photo[90:150, 190:260])


def test_face_index_and_paste_back_region(tmp_path: Path) -> None:
    import cv2

    from spatial_latent.faces.align import AlignTransform
    from spatial_latent.encode import main

    photo = two_faces()
    Image.fromarray(photo).save(tmp_path / "two.png")
    out = tmp_path / "out"
    common = ["--network", "tiny", "--steps", "2", "--loss", "mse", "--density", "2", "--detector", "opencv", "--device", "cpu", "--outdir", str(out)]
    assert main([str(tmp_path / "two.png"), "--face", "1", "--paste-back", *common]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [e["name"] for e in summary["encoded"]] == ["two_face1"] and summary["encoded"][0]["face_index"] == 1
    meta = LatentGrid.load(out / "two_face1.latent.safetensors").meta
    assert meta["face"]["box"][0] > 220  # face 1 is the smaller one, on the right

    pasted = np.asarray(Image.open(out / "two_face1_pasted.png"))
    assert pasted.shape == photo.shape
    # the aligned square, mapped into the photo: the only place the paste may change
    t = AlignTransform.from_dict(meta["alignment"])
    corners = t.to_source([[0, 0], [t.size, 0], [t.size, t.size], [0, t.size]])
    inside = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillConvexPoly(inside, np.round(corners).astype(np.int32), 1)
    near = cv2.dilate(inside, np.ones((5, 5), np.uint8)).astype(bool)
    assert np.array_equal(pasted[~near], photo[~near])
    core = t.to_source([[t.size / 2, t.size / 2]])[0].astype(int)  # the face's centre, well inside the feathered border
    patch = (slice(core[1] - 10, core[1] + 10), slice(core[0] - 10, core[0] + 10))
    assert np.abs(pasted[patch].astype(int) - photo[patch].astype(int)).mean() > 10  # a random tiny generator is no face
    with pytest.raises(InputError, match="only 2 face"):
        main([str(tmp_path / "two.png"), "--face", "2", *common, "--overwrite"])  # the run above left summary.json


def test_no_align_modes_and_spaces(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[:20, ..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(src / "rgba.png")
    Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)).save(src / "deep.png")  # 16-bit, not square
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(skimage_data.astronaut()[50:200, 150:300]).convert("L").save(src / "gray.jpg", exif=exif.tobytes())
    out = tmp_path / "out"
    r = run(str(src), "--network", "tiny", "--no-align", "--space", "w+", "--steps", "3", "--loss", "mse", "--device", "cpu", "--outdir", str(out), "--batch-size", "4")
    assert r.returncode == 0, r.stderr
    G = load_generator("tiny")
    for name in ("rgba", "deep", "gray"):
        grid = LatentGrid.load(out / f"{name}.latent.safetensors")
        assert grid.data.shape == (1, G.num_ws, G.w_dim, 1, 1) and grid.space == "w+"
        assert grid.meta["aligned"] is False and grid.meta["face"] is None
    target = np.asarray(Image.open(out / "rgba_target.png"))
    assert tuple(target[2, 16]) == (0, 200, 0) and tuple(target[-2, 16]) == (255, 255, 255)  # alpha over white
    deep = LatentGrid.load(out / "deep.latent.safetensors").meta["alignment"]
    assert deep["source_size"] == [48, 64] and deep["matrix"][0][2] == pytest.approx(8)  # centre square of 64x48


def test_encoder_only(tmp_path: Path) -> None:
    from encoders.training import TrainConfig, train_encoder

    G = load_generator("tiny")
    enc = train_encoder(G, TrainConfig(iters=2, batch=2, density=4, base_channels=8, max_channels=16), tmp_path / "enc.pt", checkpoint_every=0)
    Image.fromarray(skimage_data.chelsea()[:, 50:350]).save(tmp_path / "cat.png")
    r = run(str(tmp_path / "cat.png"), "--network", "tiny", "--no-align", "--encoder", str(tmp_path / "enc.pt"), "--steps", "0", "--loss", "mse", "--density", "4", "--device", "cpu", "--outdir", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    target = torch.from_numpy(np.array(Image.open(tmp_path / "out" / "cat_target.png"))).permute(2, 0, 1)[None].float() / 127.5 - 1
    grid = LatentGrid.load(tmp_path / "out" / "cat.latent.safetensors")
    with torch.no_grad():
        assert torch.allclose(grid.data, enc(target), atol=1e-5)
    assert grid.meta["encoder"].endswith("enc.pt") and grid.meta["start"] == "encoder"


def test_lpips_without_weights_is_one_line(tmp_path: Path) -> None:
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "a.png")
    env = {"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    r = run(str(tmp_path / "a.png"), "--network", "tiny", "--loss", "lpips", "--steps", "2", "--device", "cpu", "--outdir", str(tmp_path / "out"), env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "--loss mse" in lines[0] and str(tmp_path / "torch" / "hub" / "checkpoints") in lines[0]
    assert not (tmp_path / "out" / "a_recon.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--density", "0"], "--density 0: cells per image side must be in [1, 256]"),
        (["--density", "257"], "--density 257"),
        (["--face", "1", "--all-faces"], "either --face or --all-faces"),
        (["--batch-size", "0"], "--batch-size"),
        (["--lr-rampup", "2"], "lr_rampup is a fraction of the run"),
    ],
)
def test_bad_flags_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "a.png")
    r = run(str(tmp_path / "a.png"), "--network", "tiny", *args, "--outdir", str(tmp_path / "out"))
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_single_bad_picture_and_missing_input(tmp_path: Path) -> None:
    r = run(str(tmp_path / "nope.jpg"), "--network", "tiny", "--outdir", str(tmp_path / "out"))
    assert r.returncode == 2 and "no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    Image.fromarray(skimage_data.coffee()).save(tmp_path / "coffee.png")
    r = run(str(tmp_path / "coffee.png"), "--network", "tiny", "--loss", "mse", "--detector", "opencv", "--outdir", str(tmp_path / "out"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: no face found") and "--no-align" in r.stderr


def test_help() -> None:
    r = run("--help")
    assert r.returncode == 0 and "--no-align" in r.stdout and "--paste-back" in r.stdout
    # the offline defaults are explained: the embedded faces model and the auto loss
    assert "default: faces" in r.stdout and "auto" in r.stdout and "MSE otherwise" in r.stdout



def test_a_photo_with_no_flags_encodes_offline_with_the_faces_model(tmp_path) -> None:
    """``encode face.jpg`` alone: the embedded faces model, its alignment template, and the auto
    loss falling back to MSE (said on the first line) when LPIPS's backbone is absent."""
    from PIL import Image

    photo = tmp_path / "face.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    out = tmp_path / "out"
    r = run(str(photo), "--steps", "20", "--outdir", str(out), env={"TORCH_HOME": str(tmp_path / "torch")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("loss: mse (no LPIPS backbone at ")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["network"] == "faces"
    grid = LatentGrid.load(out / "face.latent.safetensors")
    assert grid.cells == (8, 8)
    target = np.asarray(Image.open(out / "face_target.png"))
    assert target.shape == (64, 64, 3)
    # aligned with the faces model's own template, exactly as the library aligns it
    from spatial_latent.faces.align import FACES, align_face
    from spatial_latent.io.pictures import read_image

    expected = align_face(read_image(photo).pixels, 64, template=FACES)[0]
    assert np.abs(target.astype(int) - expected.astype(int)).max() <= 1
