"""TileSampler: seamless tiles, order and size independence, flat memory, resume, distributed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatial_latent import sample
from spatial_latent.cli import run_cli
from spatial_latent.errors import InputError
from spatial_latent.latents.field import LatentField
from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.latents.window import Window
from spatial_latent.render.generator import SpatialGenerator
from spatial_latent.io import tile_store
from spatial_latent.render import tiles
from spatial_latent.render.tiles import STOP_AFTER_TILES_ENV, TileSampler
from support import TINY_CONFIGS, noisy_generator

REPO = Path(__file__).resolve().parents[2]


def sampler(arch: str = "skip", tile: int = 16, batch: int = 3, noise_mode: str = "random") -> TileSampler:
    G = noisy_generator(arch, seed=1, strength=0.3)
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
    one = ts.render_window(Window(0, 0, W, H))
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


SAMPLE = [sys.executable, "-m", "spatial_latent.sample", "--network", "tiny", "--device", "cpu", "--no-progress"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # subprocesses compute like the in-process runs


def run_sample(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*SAMPLE, *args], capture_output=True, text=True, timeout=600, env=env or ONE_THREAD, **kw)


def sample_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """The sample CLI in this process (no interpreter start-up): ``(exit status, stderr)``, on one
    thread like the subprocess runs so that their bytes can be compared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        capsys.readouterr()
        code = run_cli(sample.main, ["--network", "tiny", "--device", "cpu", "--no-progress", *args])
        return code, capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


def test_cli_writes_png_and_tiff_with_the_same_pixels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import tifffile

    common = ["--size", "100x60", "--seed", "2", "--tile", "32", "--correlation", "1"]
    assert sample_main(capsys, *common, "--out", str(tmp_path / "a.png"))[0] == 0
    assert sample_main(capsys, *common, "--out", str(tmp_path / "a.tif"))[0] == 0
    png = np.asarray(Image.open(tmp_path / "a.png"))
    tif = tifffile.imread(tmp_path / "a.tif")
    assert png.shape == (60, 100, 3) and np.array_equal(png, tif)
    with tifffile.TiffFile(tmp_path / "a.tif") as t:
        assert t.is_bigtiff and t.pages[0].is_tiled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.tif"]  # no parts left behind


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_bytes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--size", "192x128", "--seed", "5", "--tile", "32", "--batch", "2"]  # 24 tiles, 12 batches
    code, err = sample_main(capsys, *common, "--out", str(tmp_path / "ref.png"))
    assert code == 0, err
    out = tmp_path / "scene.png"
    parts = tmp_path / "scene.png.parts"
    # Killed by the tiles hook right after its 5th stored tile: batches [0, 1] .. [2, 3] are done
    # and batch [4, 5] is half stored, so the resume must finish a batch it started.
    r = run_sample(*common, "--out", str(out), env={**ONE_THREAD, STOP_AFTER_TILES_ENV: "5"})
    assert r.returncode == (-signal.SIGKILL if hasattr(signal, "SIGKILL") else 137), r.stderr[-2000:]
    assert sorted(p.name for p in parts.glob("tile*.npy")) == [f"tile{i:07d}.npy" for i in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.png", "scene.png.parts"]  # no output, no temporary file
    code, err = sample_main(capsys, *common, "--out", str(out))
    assert code == 2 and "--resume" in err
    code, err = sample_main(capsys, *common, "--out", str(out), "--resume")
    assert code == 0, err
    assert out.read_bytes() == (tmp_path / "ref.png").read_bytes()
    assert not parts.exists()


def test_resume_keeps_stored_tiles_and_renders_only_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: a run stopped after 3 of 8 tiles (batch 2) renders 5 tiles on resume, none twice."""
    ts = sampler(tile=16, batch=2)
    H, W = 32, 64  # 2 x 4 tiles
    ts.render_to_file(tmp_path / "ref.png", H, W)

    def interrupt() -> None:  # the hook's kill, made catchable so that this process survives it
        raise KeyboardInterrupt("killed by the tiles hook")

    monkeypatch.setattr(tiles, "_die_as_if_killed", interrupt)
    monkeypatch.setenv(STOP_AFTER_TILES_ENV, "3")
    with pytest.raises(KeyboardInterrupt, match="killed by the tiles hook"):
        ts.render_to_file(tmp_path / "s.png", H, W)
    parts = tmp_path / "s.png.parts"
    assert sorted(p.name for p in parts.glob("tile*.npy")) == [f"tile{i:07d}.npy" for i in range(3)]
    monkeypatch.delenv(STOP_AFTER_TILES_ENV)
    put: list[int] = []
    real_put = tile_store.TileStore.put

    def counting_put(self: tile_store.TileStore, index: int, tile: np.ndarray) -> None:
        put.append(index)
        real_put(self, index, tile)

    monkeypatch.setattr(tile_store.TileStore, "put", counting_put)
    ts.render_to_file(tmp_path / "s.png", H, W, resume=True)
    assert put == [3, 4, 5, 6, 7]
    assert (tmp_path / "s.png").read_bytes() == (tmp_path / "ref.png").read_bytes()


def test_stop_hook_is_off_unless_set_to_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STOP_AFTER_TILES_ENV, raising=False)
    assert tiles._stop_after_tiles() == 0
    monkeypatch.setenv(STOP_AFTER_TILES_ENV, " 7 ")
    assert tiles._stop_after_tiles() == 7
    monkeypatch.setenv(STOP_AFTER_TILES_ENV, "seven")
    with pytest.raises(InputError, match=f"{STOP_AFTER_TILES_ENV} must be a whole number of tiles, got 'seven'"):
        tiles._stop_after_tiles()


def test_resume_refuses_different_settings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "x.png"
    parts = tmp_path / "x.png.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"height": 1}))
    code, err = sample_main(capsys, "--size", "64x64", "--out", str(out), "--resume")
    assert code == 2 and "settings differ" in err


@pytest.mark.slow
def test_two_processes_make_the_same_image(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch.distributed as dist

    common = ["--size", "96x64", "--seed", "3", "--tile", "16", "--batch", "2"]
    assert sample_main(capsys, *common, "--out", str(tmp_path / "one.png"))[0] == 0
    # What torchrun --nproc_per_node 2 sets up, without its launcher process: env:// rendezvous,
    # gloo, and the launcher's store, which this test hosts. It binds port 0 (the OS picks a free
    # one) and holds it until both ranks are done, so no other process can take the port between
    # choosing and using it; TORCHELASTIC_USE_AGENT_STORE makes both ranks its clients, as under torchrun.
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    env = {
        **ONE_THREAD, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port),
        "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RESTART_COUNT": "0",
    }
    procs = [
        subprocess.Popen([*SAMPLE, *common, "--out", str(tmp_path / "two.png")], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    del store
    assert all(p.returncode == 0 for p in procs), [e[-2000:] for _, e in results]
    assert "wrote" in results[0][0] and "wrote" not in results[1][0]  # rank 0 assembles
    assert (tmp_path / "two.png").read_bytes() == (tmp_path / "one.png").read_bytes()


PEAK_SCRIPT = r"""
import re, resource, sys
from spatial_latent.checkpoints.loading import load_generator
from spatial_latent.latents.field import LatentField
from spatial_latent.render.generator import SpatialGenerator
from spatial_latent.render.tiles import TileSampler
G = load_generator("tiny")
ts = TileSampler(SpatialGenerator(G, padding="none"), LatentField(G, seed=1), tile=64, batch=2)
side = int(sys.argv[1])
try:  # Linux: restart the RSS high-water mark here, so that import-time peaks cannot hide the render
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
ts.render_to_file(sys.argv[2], side, side)
m = re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()) if sys.platform == "linux" else None
print(int(m.group(1)) if m else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_stays_flat_as_the_image_grows(tmp_path: Path) -> None:
    peaks = {}
    for side in (128, 512):  # 16x the pixels
        r = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(side), str(tmp_path / f"s{side}.tif")], capture_output=True, text=True, timeout=600, env=ONE_THREAD)
        assert r.returncode == 0, r.stderr[-2000:]
        peaks[side] = int(r.stdout.split()[-1])
    # A one-shot 512^2 render would hold 32 MiB per 32-channel activation, several at once: well
    # above 10% of the ~300 MiB baseline of a process with torch loaded.
    assert peaks[512] <= 1.10 * peaks[128], peaks


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "0x10", "--out", "o.png"], "positive"),
        (["--size", "abcx10", "--out", "o.png"], "WIDTHxHEIGHT"),
        (["--size", "2000000x10", "--out", "o.tif"], "maximum side"),
        (["--size", "70000x100", "--out", "o.jpg"], "JPEG"),
        (["--size", "64x64", "--out", "/dev/null/dir/o.png"], "cannot create output folder /dev/null/dir"),  # a missing folder is created
        (["--size", "64x64", "--out", "o.gif"], "unsupported output"),
        (["--size", "64x64", "--out", "o.dzi", "--dzi-overlap", "300"], "overlap"),
        (["--size", "64x64", "--out", "o.png", "--tile", "12"], "multiple of 8"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = sample_main(capsys, *args)
    assert code == 2, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_help_explains_every_flag() -> None:
    r = run_sample("--help")
    assert r.returncode == 0
    for action in sample.build_parser()._actions:
        assert action.help, action.option_strings
    for word in (".dzi", "scene_files", "scene.html", "--dzi-tile-size", "--dzi-overlap", "--dzi-format", "--quality", "--resume", "--overwrite"):
        assert word in r.stdout, word


def test_existing_output_and_disk_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "o.png").write_bytes(b"keep me")
    code, err = sample_main(capsys, "--size", "64x64", "--out", str(tmp_path / "o.png"))
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "o.png").read_bytes() == b"keep me"
    import shutil

    from spatial_latent.io import tile_store

    monkeypatch.setattr(tile_store.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 10))
    with pytest.raises(InputError, match="GiB of disk"):
        tile_store.check_output(tmp_path / "big.tif", 4096, 4096, overwrite=False, resume=False)
