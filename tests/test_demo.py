"""The README's main job (``python -m spatial_latent.demo``), run with the tiny generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from spatial_latent.demo import main
from spatial_latent.errors import CheckpointError
from spatial_latent.checkpoints.loading import DEMO_MODEL, load_generator


def test_demo_writes_scene_roundtrip_and_edit(tmp_path):
    out = tmp_path / "out"
    argv = ["--network", "tiny", "--outdir", str(out), "--size", "256x64", "--steps", "30", "--samples", "100", "--device", "cpu"]
    assert main(argv) == 0
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
    # A second run refuses nothing and replaces the outputs (--overwrite implied for the scene).
    assert main(argv) == 0


def test_demo_model_is_embedded_or_reported():
    if DEMO_MODEL.is_file():
        G = load_generator("demo")
        assert G.img_resolution >= 32
        assert DEMO_MODEL.stat().st_size < 10 * 2**20
    else:
        with pytest.raises(CheckpointError, match="demo model is missing"):
            load_generator("demo")
