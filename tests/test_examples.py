"""Smoke tests of the scripts in examples/: each runs on the built-in tiny generator (32 px) with
few steps, and writes its outputs at the expected sizes."""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from spatial_latent import LatentGrid, load_generator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
R = 32  # the tiny generator's resolution
FAST = ["--network", "tiny", "--device", "cpu"]


@pytest.fixture
def example(monkeypatch):
    """Import ``examples/<name>.py`` as a module (with examples/ importable, as when run as a script)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


def size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a picture."""
    with Image.open(path) as im:
        return im.size


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_multi_face_places_each_latent_on_its_block(example, tmp_path, capsys):
    assert example("multi_face").main([*FAST, "--seeds", "0-2", "--rows", "1", "--outdir", str(tmp_path)]) == 0
    assert size(tmp_path / "multi_face.png") == (3 * R, R)
    assert str(tmp_path / "multi_face.png") in capsys.readouterr().out
    grid = LatentGrid.load(tmp_path / "multi_face.latent.safetensors")
    assert grid.cells == (4, 12) and grid.density == 4
    # Cells deep inside a block (farther than the 1-cell feather from the others) hold exactly
    # that face's latents, as python -m spatial_latent.generate draws seed 1.
    G = load_generator("tiny")
    ws = G.map(torch.from_numpy(np.random.RandomState(1).randn(1, G.z_dim)).float(), truncation_psi=0.7)
    torch.testing.assert_close(grid.data[0, :, :, 1, 5], ws[0], rtol=0, atol=1e-5)
    assert (grid.data[0, :, :, 1, 1] - ws[0]).abs().max() > 1e-2  # another face's block


def test_multi_face_encodes_photos_at_given_positions(example, tmp_path):
    photos = []
    for i, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
        photos.append(tmp_path / f"photo{i}.png")
        Image.new("RGB", (48, 48), colour).save(photos[-1])
    args = [*FAST, "--photos", *map(str, photos), "--aligned", "--steps", "3", "--loss", "mse", "--positions", "0,0", "2,4", "--outdir", str(tmp_path / "out")]
    assert example("multi_face").main(args) == 0
    assert size(tmp_path / "out" / "multi_face.png") == (2 * R, 3 * R // 2)  # cells (6, 8) at density 4


def test_three_eyes_copies_the_eye_cells_to_the_forehead(example, tmp_path, capsys):
    from spatial_latent.faces.align import FACES

    mod = example("three_eyes")
    # box x0, y0, x1, y1 over the image-left eye, forehead cell (row, col) above the eyes' middle
    assert mod.default_boxes(16) == ((5, 7, 7, 9), (4, 7))  # FFHQ: eyes at 47.5% / 37.5%
    assert mod.default_boxes(16, FACES) == ((4, 5, 6, 7), (2, 7))  # faces: eyes at 36% / 32%
    plain = [*FAST, "--steps", "3", "--loss", "mse", "--settle-steps", "0", "--outdir", str(tmp_path)]
    assert mod.main(plain) == 0  # the astronaut by default
    assert size(tmp_path / "three_eyes.png") == (3 * R, R)  # encoded | copied | settled
    assert "three_eyes.png" in capsys.readouterr().out
    grid = LatentGrid.load(tmp_path / "three_eyes.latent.safetensors")
    assert grid.cells == (16, 16) and grid.space == "w+"
    # The pasted block's lower row (outside the feather of the eye's upper row) is the eye's lower row.
    torch.testing.assert_close(grid.data[..., 5, 7:9], grid.data[..., 8, 5:7], rtol=0, atol=0)
    pic = pixels(tmp_path / "three_eyes.png")
    assert np.abs(pic[:, :R] - pic[:, R : 2 * R]).max() > 0
    assert mod.main([*plain[:-4], "--settle-steps", "4", "--outdir", str(tmp_path / "settled")]) == 0
    settled = LatentGrid.load(tmp_path / "settled" / "three_eyes.latent.safetensors")
    assert settled.meta["settled_steps"] == 4 and not torch.equal(settled.data, grid.data)


def test_extended_scene_png_and_deep_zoom(example, tmp_path, capsys):
    mod = example("extended_scene")
    assert mod.main([*FAST, "--size", "96x64", "--outdir", str(tmp_path / "small")]) == 0
    assert size(tmp_path / "small" / "scene.png") == (96, 64)
    assert mod.main([*FAST, "--size", "96x64", "--zoom-above", "0.001", "--outdir", str(tmp_path / "large")]) == 0
    dzi = tmp_path / "large" / "scene.dzi"
    size_el = ET.parse(dzi).getroot()[0]
    assert (size_el.get("Width"), size_el.get("Height")) == ("96", "64")
    assert (tmp_path / "large" / "scene.html").is_file() and (tmp_path / "large" / "scene_files").is_dir()
    assert "scene.html" in capsys.readouterr().out


def test_edit_attributes_fits_a_bank_then_reuses_it(example, tmp_path):
    mod = example("edit_attributes")
    common = [*FAST, "--steps", "3", "--loss", "mse", "--density", "4"]
    assert mod.main([*common, "--samples", "48", "--outdir", str(tmp_path / "fit")]) == 0
    assert size(tmp_path / "fit" / "edited.png") == (2 * R, R)
    assert size(tmp_path / "fit" / "strip.png") == (6 * R, R)  # -1 .. 1.5 x the strength
    bank = tmp_path / "fit" / "bank.npz"
    assert bank.is_file()
    assert mod.main([*common, "--bank", str(bank), "--strip", "-1", "0", "1", "--outdir", str(tmp_path / "reuse")]) == 0
    assert not (tmp_path / "reuse" / "bank.npz").exists()
    strip = pixels(tmp_path / "reuse" / "strip.png")
    before = pixels(tmp_path / "reuse" / "edited.png")[:, :R]
    assert strip.shape == (R, 3 * R, 3)
    assert np.abs(strip[:, R : 2 * R] - before).max() <= 1  # strength 0 is the unedited face
    assert np.abs(strip[:, :R] - strip[:, 2 * R :]).max() > 0


def test_edit_attributes_uses_the_faces_bank(example, tmp_path, capsys):
    mod = example("edit_attributes")
    args = ["--network", "faces", "--device", "cpu", "--photo", "", "--seed", "1", "--steps", "3", "--attr", "bangs", "--outdir", str(tmp_path)]
    assert mod.main(args) == 0
    assert not (tmp_path / "bank.npz").exists()  # the shipped bank: nothing fitted
    assert size(tmp_path / "edited.png") == (2 * 64, 64) and size(tmp_path / "strip.png") == (6 * 64, 64)
    out = capsys.readouterr().out
    assert "bangs x 4 in [4.0, 0.0, 60.0, 24.0]" in out  # the bank's recorded strength and region
    pic = pixels(tmp_path / "edited.png")
    assert np.abs(pic[:20, :64] - pic[:20, 64:]).mean() > 3 * np.abs(pic[44:, :64] - pic[44:, 64:]).mean()  # the forehead, not the chin


OUR_PACKAGES = ("spatial_latent", "encoders", "attributes")


@pytest.mark.parametrize("package", OUR_PACKAGES)
def test_public_names_resolve_lazily(package):
    """Every name the examples and docs use from a package resolves, and ``dir()`` lists it."""
    mod = importlib.import_module(package)
    for name in mod.__all__:
        value = getattr(mod, name)
        if name == "__version__":
            assert re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", value), value
            continue
        # the real class or function of that name, defined in this project (not a stand-in), the
        # same object its defining module holds, and cached: a second access is a plain lookup
        assert inspect.isclass(value) or inspect.isfunction(value), (name, value)
        assert value.__name__ == name and value.__module__.split(".")[0] in OUR_PACKAGES, (name, value.__module__)
        assert getattr(sys.modules[value.__module__], name) is value, name
        assert vars(mod)[name] is value, name
    assert set(mod.__all__) <= set(dir(mod))
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(mod, "no_such_name")


@pytest.mark.slow
def test_package_imports_stay_light():
    """``import spatial_latent, encoders, attributes`` loads no torch: names import on first use."""
    code = "import sys, spatial_latent, encoders, attributes; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["False"], r.stderr
