"""TileSampler: seamless tiles, order and size independence, flat memory, resume, distributed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatial_latent.errors import InputError
from spatial_latent.field import LatentField
from spatial_latent.loading import random_generator
from spatial_latent.spatial import SpatialGenerator, Window
from spatial_latent.tiling import TileSampler
from support import TINY_CONFIGS

REPO = Path(__file__).resolve().parents[1]


def sampler(arch: str = "skip", tile: int = 16, batch: int = 3, noise_mode: str = "random") -> TileSampler:
    G = random_generator(TINY_CONFIGS[arch], seed=1)
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            m.noise_strength.data.fill_(0.3)
    field = LatentField(G, seed=7, correlation=1.5, density=2)
    return TileSampler(SpatialGenerator(G, padding="none"), field, tile=tile, batch=batch, noise_mode=noise_mode)


def stitch(ts: TileSampler, height: int, width: int, order: list[int] | None = None, batch: int | None = None) -> torch.Tensor:
    pos = ts.positions(height, width)
    order = order or list(range(len(pos)))
    batch = batch or ts.batch
    canvas = torch.full((1, 3, height, width), float("nan"))
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        for k, t in zip(idx, ts.render_tiles([pos[j] for j in idx])):
            y, x = pos[k]
            canvas[0, :, y : y + ts.tile, x : x + ts.tile] = t[:, : min(ts.tile, height - y), : min(ts.tile, width - x)]
    return canvas


@torch.no_grad()
@pytest.mark.parametrize("arch", ["skip", "resnet", "orig"])
def test_tiled_equals_one_shot(arch: str) -> None:
    ts = sampler(arch)
    H, W = 40, 72  # not a multiple of the tile: edge tiles are cropped
    one = ts.render_window(Window(0, H, 0, W))
    tiled = stitch(ts, H, W)
    assert not torch.isnan(tiled).any()
    assert (tiled - one).abs().max() <= 1e-4


@torch.no_grad()
def test_tile_order_batch_and_canvas_size_do_not_matter() -> None:
    ts = sampler("skip", noise_mode="const")
    a = stitch(ts, 32, 48)
    b = stitch(ts, 32, 48, order=list(range(6))[::-1], batch=1)
    assert (a - b).abs().max() <= 1e-5
    bigger = stitch(ts, 64, 80)
    assert (bigger[..., :32, :48] - a).abs().max() <= 1e-5


def test_tile_size_must_fit_the_plan() -> None:
    with pytest.raises(InputError, match="multiple of 8"):
        sampler(tile=12)
    G = random_generator(TINY_CONFIGS["skip"])
    with pytest.raises(InputError, match="padding-free"):
        TileSampler(SpatialGenerator(G), LatentField(G))


def run_sample(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "spatial_latent.sample", "--network", "tiny", "--device", "cpu", "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, **kw)


def test_cli_writes_png_and_tiff_with_the_same_pixels(tmp_path: Path) -> None:
    import tifffile

    common = ["--size", "100x60", "--seed", "2", "--tile", "32", "--correlation", "1"]
    assert run_sample(*common, "--out", str(tmp_path / "a.png")).returncode == 0
    assert run_sample(*common, "--out", str(tmp_path / "a.tif")).returncode == 0
    png = np.asarray(Image.open(tmp_path / "a.png"))
    tif = tifffile.imread(tmp_path / "a.tif")
    assert png.shape == (60, 100, 3) and np.array_equal(png, tif)
    with tifffile.TiffFile(tmp_path / "a.tif") as t:
        assert t.is_bigtiff and t.pages[0].is_tiled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.tif"]  # no parts left behind


def test_killed_run_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    common = ["--size", "128x128", "--seed", "5", "--tile", "32", "--batch", "2"]
    ref = run_sample(*common, "--out", str(tmp_path / "ref.png"))
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "scene.png"
    parts = tmp_path / "scene.png.parts"
    cmd = [sys.executable, "-m", "spatial_latent.sample", "--network", "tiny", "--device", "cpu", "--no-progress", *common, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("tile*.npy"))) < 4:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(parts.glob("tile*.npy")))
    assert 0 < finished < 16, finished  # killed mid-run
    assert not out.exists()
    again = run_sample(*common, "--out", str(out))
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_sample(*common, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == (tmp_path / "ref.png").read_bytes()
    assert not parts.exists()


def test_resume_refuses_different_settings(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    parts = tmp_path / "x.png.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"height": 1}))
    r = run_sample("--size", "64x64", "--out", str(out), "--resume")
    assert r.returncode == 2 and "settings differ" in r.stderr


def test_two_processes_make_the_same_image(tmp_path: Path) -> None:
    common = ["--size", "96x64", "--seed", "3", "--tile", "16", "--batch", "2"]
    assert run_sample(*common, "--out", str(tmp_path / "one.png")).returncode == 0
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "spatial_latent.sample", "--network", "tiny", "--device", "cpu", "--no-progress", *common, "--out", str(tmp_path / "two.png")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "two.png").read_bytes() == (tmp_path / "one.png").read_bytes()


PEAK_SCRIPT = """
import resource, sys
from spatial_latent.loading import load_generator
from spatial_latent.field import LatentField
from spatial_latent.spatial import SpatialGenerator
from spatial_latent.tiling import TileSampler
G = load_generator("tiny")
ts = TileSampler(SpatialGenerator(G, padding="none"), LatentField(G, seed=1), tile=128, batch=2)
side = int(sys.argv[1])
ts.render_to_file(sys.argv[2], side, side)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_stays_flat_as_the_image_grows(tmp_path: Path) -> None:
    peaks = {}
    for side in (256, 1024):  # 16x the pixels
        r = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(side), str(tmp_path / f"s{side}.tif")], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        peaks[side] = int(r.stdout.split()[-1])
    # A one-shot 1024^2 render would hold 128 MiB per 32-channel activation: far above 10%.
    assert peaks[1024] <= 1.10 * peaks[256], peaks


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "0x10", "--out", "o.png"], "positive"),
        (["--size", "abcx10", "--out", "o.png"], "WIDTHxHEIGHT"),
        (["--size", "2000000x10", "--out", "o.tif"], "maximum side"),
        (["--size", "70000x100", "--out", "o.jpg"], "JPEG"),
        (["--size", "64x64", "--out", "no/such/dir/o.png"], "does not exist"),
        (["--size", "64x64", "--out", "o.gif"], "unsupported output"),
        (["--size", "64x64", "--out", "o.png", "--tile", "12"], "multiple of 8"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    r = run_sample(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_existing_output_and_disk_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "o.png").write_bytes(b"keep me")
    r = run_sample("--size", "64x64", "--out", str(tmp_path / "o.png"))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert (tmp_path / "o.png").read_bytes() == b"keep me"
    import shutil

    from spatial_latent import tile_store

    monkeypatch.setattr(tile_store.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 10))
    with pytest.raises(InputError, match="GiB of disk"):
        tile_store.check_output(tmp_path / "big.tif", 4096, 4096, overwrite=False, resume=False)
