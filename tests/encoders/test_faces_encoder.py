"""The learned encoder shipped for the embedded ``faces`` model: it loads by name, fits the model,
starts encodings closer than the average latent, and the encode command takes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from encoders.learned import EMBEDDED_ENCODERS, load_encoder, read_encoder_file
from encoders.optimize import OptimizeConfig
from encoders.pipeline import encode
from spatial_latent.checkpoints.loading import load_generator
from spatial_latent.faces import ASTRONAUT


def test_the_faces_encoder_is_shipped_and_fits_the_faces_model() -> None:
    assert EMBEDDED_ENCODERS["faces"].is_file() and EMBEDDED_ENCODERS["faces"].stat().st_size < 8 << 20
    G = load_generator("faces")
    enc = load_encoder("faces", G=G)
    payload = read_encoder_file("faces")
    assert payload["generator_fingerprint"] == G.fingerprint()
    assert enc.config.density == 8 and enc.config.img_resolution == G.img_resolution
    assert "optimizer" not in json.dumps(payload["extra"])  # weights only, no training state


def test_encoder_start_beats_the_average_latent_on_faces_it_never_saw() -> None:
    G = load_generator("faces")
    enc = load_encoder("faces", G=G)
    gen = torch.Generator().manual_seed(12345)  # not the training seed
    with torch.no_grad():
        ws = G.map(torch.randn(8, G.z_dim, generator=gen), truncation_psi=0.7)
        faces = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
    cfg0 = OptimizeConfig(steps=0, density=8, loss="mse")
    mse = lambda inv: sum(m["mse"] for m in inv.metrics) / len(inv.metrics)  # noqa: E731
    only, avg = mse(encode(G, faces, cfg0, encoder=enc)), mse(encode(G, faces, cfg0))
    # measured 2026-12-07: 0.072 of the average latent's error (bench/encode_real.py gives the
    # numbers on real photos)
    assert only < 0.2 * avg, (only, avg)


def test_encode_command_takes_the_shipped_encoder(tmp_path: Path) -> None:
    out = tmp_path / "enc"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "spatial_latent.encode", str(ASTRONAUT), "--encoder", "faces", "--steps", "0", "--outdir", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "astronaut_metrics.json").read_text())
    assert metrics["encoder"] == "faces" and metrics["steps"] == 0
    assert metrics["metrics"]["psnr"] > 20.0  # encoder alone on a real photo it never saw: 23.5 dB measured
