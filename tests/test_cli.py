"""The generate and convert command-line tools, run as a user would (python -m ...)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatial_latent.__main__ import COMMANDS
from support import fixture_set_dir

pytestmark = pytest.mark.slow  # every test here starts the commands as subprocesses


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_generate_writes_one_png_per_seed_and_a_grid(tmp_path: Path) -> None:
    r = run("spatial_latent.generate", "--network", "tiny", "--seeds", "0-2,7", "--trunc", "0.7", "--outdir", str(tmp_path), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    img = np.asarray(Image.open(tmp_path / "seed0007.png"))
    assert img.shape == (32, 32, 3) and img.std() > 1
    assert np.asarray(Image.open(tmp_path / "grid.png")).shape == (64, 64, 3)


def test_generate_conditional_needs_class(tmp_path: Path) -> None:
    pkl = fixture_set_dir("nvidia_ada_cond_32") / "network-snapshot.pkl"
    r = run("spatial_latent.generate", "--network", str(pkl), "--seeds", "0", "--outdir", str(tmp_path))
    assert r.returncode == 2 and "--class" in r.stderr and "Traceback" not in r.stderr
    r = run("spatial_latent.generate", "--network", str(pkl), "--seeds", "0", "--class", "3", "--outdir", str(tmp_path))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--network", "nope.pkl"], "not found"),
        (["--network", "tiny", "--seeds", "7-3"], "bad seed list"),
        (["--network", "tiny", "--device", "tpu"], "device"),
    ],
)
def test_generate_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    r = run("spatial_latent.generate", *args, "--outdir", str(tmp_path / "o"))
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# What --help must not load: torch and the libraries that come with the real work.
HEAVY = {"torch", "numpy", "PIL", "cv2", "dlib", "sklearn", "safetensors", "lpips", "tqdm", "skimage", "scipy"}


def imported_modules(importtime_log: str) -> set[str]:
    """Top-level names of the modules a ``python -X importtime`` run imported."""
    rows = [line.split("|")[-1].strip() for line in importtime_log.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in rows[1:]}  # rows[0] is the header


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [pytest.param(None, id="spatial-latent")] + list(COMMANDS),
)
def test_help_explains_and_does_no_work(command: str | None, tmp_path: Path) -> None:
    """``--help`` answers without importing torch, building kernels, downloading or writing anything."""
    module = "spatial_latent" if command is None else f"spatial_latent.{COMMANDS[command]}"
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "HOME": str(home), "SPATIAL_LATENT_CACHE": str(home / "cache"), "TORCH_HOME": str(home / "torch"),
           "TORCH_EXTENSIONS_DIR": str(home / "extensions"), "XDG_CACHE_HOME": str(home / "xdg")}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", module, "--help"], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("usage:")
    if command is None:
        assert all(f"  {name} " in r.stdout for name in COMMANDS)
    modules = imported_modules(r.stderr)
    assert "spatial_latent" in modules  # (the log is read right)
    assert sorted(modules & HEAVY) == []
    assert list(tmp_path.rglob("*")) == [cwd]  # no cache, no kernels, no output: nothing written


def test_convert_to_native_and_render_the_same(tmp_path: Path) -> None:
    src = fixture_set_dir("nvidia_tf_64") / "network-tf.pkl"
    out = tmp_path / "net.safetensors"
    r = run("spatial_latent.convert", str(src), str(out))
    assert r.returncode == 0, r.stderr
    assert "fingerprint" in r.stdout and out.is_file()
    a = run("spatial_latent.generate", "--network", str(src), "--seeds", "3", "--outdir", str(tmp_path / "a"))
    b = run("spatial_latent.generate", "--network", str(out), "--seeds", "3", "--outdir", str(tmp_path / "b"))
    assert a.returncode == 0 and b.returncode == 0
    assert (tmp_path / "a/seed0003.png").read_bytes() == (tmp_path / "b/seed0003.png").read_bytes()
    again = run("spatial_latent.convert", str(src), str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_convert_refuses_unsafe_pickle_and_writes_nothing(tmp_path: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"G_ema": Evil()}))
    out = tmp_path / "out.safetensors"
    r = run("spatial_latent.convert", str(bad), str(out))
    assert r.returncode == 2 and "pwned" not in r.stdout and "builtins" in r.stderr
    assert not out.exists()
