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


def test_demo_writes_scene_roundtrip_and_edit(tmp_path, monkeypatch):
    from spatial_latent.checkpoints import loading

    loads, load = [], loading.load_generator
    monkeypatch.setattr(loading, "load_generator", lambda *a, **kw: loads.append(a) or load(*a, **kw))
    out = tmp_path / "out"
    argv = ["--network", "tiny", "--outdir", str(out), "--size", "256x64", "--steps", "30", "--samples", "100", "--device", "cpu"]
    assert main(argv) == 0
    assert len(loads) == 1  # one generator for the scene, the round trip, the fit and the edit
    for name in ("window_target.png", "window_recon.png", "window_compare.png", "window.latent.safetensors", "window_metrics.json"):
        assert (out / "roundtrip" / name).is_file(), name
    assert (out / "bank.npz").is_file() and (out / "edit_strip.png").is_file()
    assert Image.open(out / "scene.png").size == (256, 64)
    metrics = json.loads((out / "roundtrip" / "window_metrics.json").read_text())
    window = np.asarray(Image.open(out / "roundtrip" / "window_target.png"), dtype=np.float64)
    assert metrics["metrics"]["mse"] < window.var() / 127.5**2  # the reconstruction beats a flat grey guess
    recon = np.asarray(Image.open(out / "roundtrip" / "window_recon.png").convert("L"), dtype=np.float64)
    edited = np.asarray(Image.open(out / "edited.png").convert("L"), dtype=np.float64)
    change = edited - recon
    half = change.shape[1] // 2
    assert change[:, :half].mean() > 1.0  # brighter where the edit applies ...
    assert change[:, :half].mean() > 2 * abs(change[:, half:].mean())  # ... more than elsewhere
    # A second run refuses nothing and replaces the outputs.
    assert main(argv) == 0


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
