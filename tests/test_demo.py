"""The README's main job (``python -m spatial_latent.demo``), run with the tiny generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatial_latent.demo import main
from spatial_latent.errors import CheckpointError
from spatial_latent.checkpoints.loading import DEMO_MODEL, load_generator


def test_demo_encodes_a_face_composes_faces_and_grows_a_scene(tmp_path, monkeypatch):
    from spatial_latent.checkpoints import loading

    loads, load = [], loading.load_generator
    monkeypatch.setattr(loading, "load_generator", lambda *a, **kw: loads.append(a[0]) or load(*a, **kw))
    out = tmp_path / "out"
    argv = ["--outdir", str(out), "--size", "256x64", "--steps", "40", "--settle-steps", "20", "--device", "cpu"]
    assert main(argv) == 0
    assert loads == ["faces", "demo"]  # each generator loaded once
    for name in ("target.png", "recon.png", "pasted.png", "paste_back.png", "three_eyes.png", "three_eyes.latent.safetensors", "astronaut.latent.safetensors", "metrics.json"):
        assert (out / "astronaut" / name).is_file(), name
    assert Image.open(out / "astronaut" / "three_eyes.png").size == (3 * 64, 64)  # reconstruction | copy | settled
    assert Image.open(out / "scene.png").size == (256, 64)
    assert Image.open(out / "six_faces.png").size == (192, 128)  # 2x3 faces of 64 px
    assert (out / "gallery.png").is_file()
    metrics = json.loads((out / "astronaut" / "metrics.json").read_text())
    target = np.asarray(Image.open(out / "astronaut" / "target.png"), dtype=np.float64)
    assert metrics["metrics"]["mse"] < 0.5 * target.var() / 127.5**2  # far better than a flat guess after 40 steps
    # the face found is the astronaut's (hand-measured eyes in the shipped crop: x 122 and 166, y 101)
    face = metrics["face"]
    assert abs(face["eye_left"][0] - 122) < 6 and abs(face["eye_right"][0] - 166) < 6 and abs(face["eye_left"][1] - 101) < 6
    # pasting back changes only the face's square in the photo
    photo = np.asarray(Image.open(out / "astronaut" / "pasted.png"), dtype=np.float64)
    assert photo.shape == (320, 320, 3)
    assert main(argv) == 0  # a second run replaces the outputs


def test_faces_model_is_embedded_with_its_template() -> None:
    from safetensors import safe_open

    from spatial_latent.checkpoints.loading import FACES_MODEL
    from spatial_latent.faces.align import FACES

    assert FACES_MODEL.is_file() and FACES_MODEL.stat().st_size < 10 * 2**20
    G = load_generator("faces")
    assert (G.img_resolution, G.z_dim, G.config.mapping_layers, G.align_template) == (64, 128, 2, FACES)
    assert G.config.channels == {4: 128, 8: 128, 16: 96, 32: 48, 64: 24}
    with safe_open(str(FACES_MODEL), "pt") as f:
        assert f.metadata()["fingerprint"] == G.fingerprint()
    # trained without noise inputs: every noise mode renders the same face
    import torch

    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G(z, noise_mode="random"), G(z, noise_mode="none"))


def test_generated_faces_are_found_by_the_face_detector() -> None:
    """dlib's HOG detector (which finds a face in 99% of real 64 px photos enlarged to 256 px)
    finds one in most of the faces model's samples at truncation 0.7."""
    pytest.importorskip("dlib")
    import cv2
    import torch

    from spatial_latent.faces.align import FaceDetector
    from spatial_latent.io.pictures import to_uint8

    G = load_generator("faces")
    z = torch.randn(40, G.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        pics = to_uint8(G(z, truncation_psi=0.7, noise_mode="const"))
    det = FaceDetector("dlib")
    found = sum(bool(det.detect(cv2.resize(p, (256, 256), interpolation=cv2.INTER_CUBIC))) for p in pics)
    assert found >= 20, f"only {found} of 40 generated faces were detected"


def test_demo_model_is_embedded() -> None:
    """The package ships the trained demo model (package data), as its model card describes it."""
    from safetensors import safe_open

    assert DEMO_MODEL.is_file(), f"{DEMO_MODEL} is missing: the package must ship the demo model"
    assert DEMO_MODEL.stat().st_size < 10 * 2**20
    G = load_generator("demo")
    # DEMO_MODEL_CARD.md: skip generator, 32 px, z 128, w 128, 4 mapping layers, 295 k parameters
    assert (G.config.architecture, G.img_resolution, G.z_dim, G.w_dim, G.config.mapping_layers) == ("skip", 32, 128, 128, 4)
    assert G.config.channels == {4: 64, 8: 64, 16: 32, 32: 32}
    assert abs(sum(p.numel() for p in G.parameters()) - 295_000) < 1_000
    with safe_open(str(DEMO_MODEL), "pt") as f:  # the weights are the ones that were saved
        assert f.metadata()["fingerprint"] == G.fingerprint()


def test_missing_demo_model_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spatial_latent.checkpoints import loading

    monkeypatch.setattr(loading, "DEMO_MODEL", tmp_path / "demo.safetensors")
    monkeypatch.setattr(loading, "WEIGHTS_DIR", tmp_path, raising=False)  # where embedded models are looked up
    with pytest.raises(CheckpointError, match=r"the embedded demo model is missing from this install \(.*demo\.safetensors\)"):
        load_generator("demo")
