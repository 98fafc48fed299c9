"""python -m spatial_latent.edit: applies bank directions inside regions, writes the picture, the
strip of strengths and the edited latent; bad input is one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attributes.bank import DirectionBank
from attributes.direction import Direction
from attributes.edits import edit
from attributes.labelers import RegionLabeler
from attributes.supervised import AttributeModel
from attributes.sampling import sample_grids, sample_labeled
from spatial_latent.cli import run_cli
from spatial_latent.edit import main
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.latents.masks import box_mask
from spatial_latent.checkpoints.loading import load_generator
from support import set_noise_strength

CELLS, DENSITY = (4, 4), 4  # the tiny generator renders 32 px: 8-px cells


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bank (per-location 'bright' + global 'g') for the tiny generator and a latent of 2 grids."""
    folder = tmp_path_factory.mktemp("edit_cli")
    G = load_generator("tiny")
    grids, y = sample_labeled(G, RegionLabeler("brightness", (0, 0, 0.5, 1)), 80, CELLS, DENSITY, batch_size=40)
    bank = DirectionBank.for_generator(G)
    bank.add(AttributeModel(locations="independent").fit(grids, y, name="bright"))
    bank.add(Direction("g", torch.randn(1, G.w_dim, 1, 1)))
    bank.save(folder / "bank.npz")
    latent = sample_grids(G, 2, CELLS, DENSITY, seed=7)
    latent.meta["generator_fingerprint"] = G.fingerprint()  # as the encode tool records it
    latent.save(folder / "latent.safetensors")
    return {"bank": folder / "bank.npz", "latent": folder / "latent.safetensors", "dir": folder}


def run(files: dict[str, Path], *args: str) -> int:
    return run_cli(main, [str(files["latent"]), "--bank", str(files["bank"]), "--network", "tiny", "--device", "cpu", *args])


def test_region_edit_picture_strip_and_latent(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, strip, lat = tmp_path / "edited.png", tmp_path / "strip.png", tmp_path / "edited.safetensors"
    assert run(files, "--attr", "bright", "--strength", "2", "--region", "0,0,16,32", "--out", str(out), "--strip", str(strip), "--save-latent", str(lat)) == 0
    assert np.asarray(Image.open(out)).shape == (32, 64, 3)  # two 32-px images side by side
    assert np.asarray(Image.open(strip)).shape == (32, 7 * 32, 3)  # strengths -3..3
    original = LatentGrid.load(files["latent"])
    edited = LatentGrid.load(lat)
    bank = DirectionBank.load(files["bank"])
    expected = edit(original, bank["bright"], 2.0, box_mask(CELLS, (0, 0, 2, 4)))
    assert torch.allclose(edited.data, expected.data, atol=1e-6)
    assert torch.equal(edited.data[..., 2:], original.data[..., 2:])  # right half of the cells untouched
    assert edited.meta["edits"][0]["name"] == "bright" and "wrote" in capsys.readouterr().out
    # The strip's middle picture (strength 0) is the unedited first image.
    pics = np.asarray(Image.open(strip))
    G = load_generator("tiny")
    from spatial_latent.io.pictures import to_uint8
    from spatial_latent.render.generator import SpatialGenerator

    with torch.no_grad():
        ref = to_uint8(SpatialGenerator(G)(original.replace(original.data[:1])))[0]
    assert np.abs(pics[:, 3 * 32 : 4 * 32].astype(int) - ref.astype(int)).max() <= 1
    assert np.abs(pics[:, 6 * 32 :].astype(int) - ref.astype(int)).max() > 10


def test_strip_strengths(files: dict[str, Path], tmp_path: Path) -> None:
    strip = tmp_path / "strip.png"
    assert run(files, "--attr", "g", "--strip", str(strip), "--strip-strengths", "-1.5", "0", "2") == 0
    assert np.asarray(Image.open(strip)).shape == (32, 3 * 32, 3)


def test_mask_png_equals_the_same_region(files: dict[str, Path], tmp_path: Path) -> None:
    m = np.zeros((32, 32), np.uint8)
    m[:, :16] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert run(files, "--attr", "bright", "--mask", str(tmp_path / "mask.png"), "--save-latent", str(a)) == 0
    assert run(files, "--attr", "bright", "--region", "0,0,16,32", "--save-latent", str(b)) == 0
    assert torch.allclose(LatentGrid.load(a).data, LatentGrid.load(b).data, atol=1e-6)


def test_several_attrs_cells_and_layers(files: dict[str, Path], tmp_path: Path) -> None:
    lat = tmp_path / "e.safetensors"
    assert run(files, "--attr", "bright", "--attr", "g", "--strength", "1", "--strength", "-2", "--edit-cells", "0,0", "3,3", "--layers", "0-1", "--save-latent", str(lat)) == 0
    original, edited = LatentGrid.load(files["latent"]), LatentGrid.load(lat)
    assert edited.space == "w+" and edited.num_layers == 8
    diff = (edited.data - original.data.expand(-1, 8, -1, -1, -1)).abs()
    assert diff[:, 2:].max() == 0 and diff[:, :2, :, 0, 0].max() > 0  # rows 2.. untouched
    mask = torch.zeros(4, 4)
    mask[0, 0] = mask[3, 3] = 1
    assert diff[:, :, :, mask == 0].max() == 0  # only the two listed cells moved
    bank = DirectionBank.load(files["bank"])
    step = bank["bright"].vectors[0, :, 3, 3] - 2 * bank["g"].vectors[0, :, 0, 0]
    assert torch.allclose(edited.data[0, 1, :, 3, 3] - original.data[0, 0, :, 3, 3], step, atol=1e-5)


def test_network_recorded_in_the_latent(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    g = LatentGrid.load(files["latent"])
    g.meta["network"] = "tiny"
    g.save(tmp_path / "named.safetensors")
    argv = ["--bank", str(files["bank"]), "--attr", "g", "--out", str(tmp_path / "e.png")]
    assert run_cli(main, [str(tmp_path / "named.safetensors"), *argv]) == 0 and (tmp_path / "e.png").is_file()
    assert run_cli(main, [str(files["latent"]), *argv, "--overwrite"]) == 2  # e.png exists from the run above
    assert "--network is required" in capsys.readouterr().err


def test_faces_latent_uses_the_shipped_bank_with_its_regions_and_strengths(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No --bank, --strength or --region: the faces bank, and each direction's recorded region and
    strength (the mouth for smile); a density-16 grid gets the 8x8 steps resampled."""
    G = load_generator("faces")
    bank = DirectionBank.load("faces")
    for density in (8, 16):
        g = sample_grids(G, 1, (density, density), density, cell_mix=0.0, seed=3)
        g.meta.update(network="faces", generator_fingerprint=G.fingerprint())
        g.save(tmp_path / f"face{density}.safetensors")
        lat = tmp_path / f"edited{density}.safetensors"
        argv = [str(tmp_path / f"face{density}.safetensors"), "--attr", "smile", "--attr", "age", "--save-latent", str(lat), "--device", "cpu"]
        assert run_cli(main, argv) == 0
        err = capsys.readouterr().err
        smile, age = bank["smile"], bank["age"]
        assert f"smile: strength {smile.meta['default_strength']:g}, region 8,28,56,60" in err and "age: strength 2, the whole grid" in err
        cell = G.img_resolution / density
        expected = edit(edit(g, smile, smile.meta["default_strength"], box_mask(g.cells, smile.meta["region"], cell_size=cell)), age, age.meta["default_strength"])
        assert torch.allclose(LatentGrid.load(lat).data, expected.data, atol=1e-5)
    assert run_cli(main, [str(files_latent_tiny(tmp_path)), "--attr", "smile", "--out", str(tmp_path / "x.png")]) == 2
    assert "no direction bank ships for network 'tiny'" in capsys.readouterr().err


def files_latent_tiny(tmp_path: Path) -> Path:
    g = sample_grids(load_generator("tiny"), 1, CELLS, DENSITY)
    g.meta["network"] = "tiny"
    return g.save(tmp_path / "tiny.safetensors")


def test_saved_noise_maps_reproduce_the_encoded_reconstruction(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from encoders.optimize import OptimizeConfig, invert
    from spatial_latent.edit import render_grid
    from spatial_latent.io.pictures import to_uint8
    from spatial_latent.checkpoints.loading import save_generator
    from spatial_latent.render.generator import SpatialGenerator

    G = load_generator("tiny")
    set_noise_strength(G, 0.5)  # the built-in tiny model has no noise; give it some so the maps matter
    net = save_generator(G, tmp_path / "noisy.safetensors")
    bank = DirectionBank.for_generator(G)
    bank.add(Direction("g", torch.randn(1, G.w_dim, 1, 1, generator=torch.Generator().manual_seed(1))))
    bank.save(tmp_path / "bank.npz")
    with torch.no_grad():
        target = SpatialGenerator(G)(sample_grids(G, 1, CELLS, DENSITY, seed=3)).clamp(-1, 1)
    inv = invert(G, target, OptimizeConfig(steps=3, density=DENSITY, loss="mse"))
    inv.grid.save(tmp_path / "face.latent.safetensors")
    out, lat = tmp_path / "e.png", tmp_path / "e.safetensors"
    argv = [str(tmp_path / "face.latent.safetensors"), "--bank", str(tmp_path / "bank.npz"), "--network", str(net), "--device", "cpu", "--attr", "g", "--strength", "0"]
    assert run_cli(main, [*argv, "--out", str(out), "--save-latent", str(lat)]) == 0
    assert "saved noise maps" in capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(out)), to_uint8(inv.images)[0])
    edited = LatentGrid.load(lat)
    sg = SpatialGenerator(G)
    with torch.no_grad():
        assert (render_grid(sg, edited, edited.noise_maps()) - inv.images).abs().max() <= 1e-5
        assert (render_grid(sg, edited) - inv.images).abs().max() > 1e-2  # the stored maps differ
    assert run_cli(main, [*argv, "--out", str(out), "--ignore-saved-noise", "--overwrite"]) == 0
    with torch.no_grad():
        const = to_uint8(sg(edited))[0]
    assert np.array_equal(np.asarray(Image.open(out)), const)


def test_list(files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert run_cli(main, [str(files["latent"]), "--bank", str(files["bank"]), "--list"]) == 0
    out = capsys.readouterr().out
    assert "bright: w, 4x4 cells @ density 4" in out and "g: w, global" in out


def other_bank(files: dict[str, Path]) -> Path:
    bank = DirectionBank("ffffffffffffffff", 64, 8)
    bank.add(Direction("bright", torch.zeros(1, 64, 1, 1)))
    return bank.save(files["dir"] / "other.npz")


def pickled_bank(files: dict[str, Path]) -> Path:
    path = files["dir"] / "pickled.npz"
    np.savez(path, __bank__=np.array([{"x": 1}], dtype=object))
    return path


def wrong_cells_latent(files: dict[str, Path]) -> Path:
    G = load_generator("tiny")
    g = sample_grids(G, 1, (8, 8), 4)
    return g.save(files["dir"] / "big.safetensors")


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["--attr", "smile", "--out", "x.png"], "unknown attribute 'smile'; this bank has: bright, g"),
        (other_bank, ["--attr", "bright", "--out", "x.png"], "made for generator ffffffffffffffff"),
        (pickled_bank, ["--attr", "bright", "--out", "x.png"], "pickled"),
        (wrong_cells_latent, ["--attr", "bright", "--out", "x.png"], "4x4-cell grids at density 4; this grid is 8x8"),
        ("mask", ["--attr", "bright", "--out", "x.png"], "the image is 32x32"),
        (None, ["--attr", "bright", "--strength", "1", "--strength", "2", "--out", "x.png"], "2 values of --strength for 1 --attr"),
        (None, ["--attr", "bright", "--region", "100,100,120,120", "--out", "x.png"], "outside the grid"),
        (None, ["--attr", "bright", "--region", "1,2,3", "--out", "x.png"], "expected 4"),
        (None, ["--attr", "bright"], "nothing to write"),
        (None, ["--attr", "bright", "--region", "0,0,8,8", "--edit-cells", "0,0", "--out", "x.png"], "choose one"),
        (None, ["--attr", "bright", "--layers", "0-20", "--out", "x.png"], "not in 0..7"),
    ],
)
def test_bad_input_is_one_line(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, setup, args: list[str], message: str) -> None:
    argv = [str(files["latent"]), "--bank", str(files["bank"]), "--network", "tiny", "--device", "cpu"]
    if setup == "mask":
        Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "m.png")
        argv += ["--mask", str(tmp_path / "m.png")]
    elif setup is not None:
        path = setup(files)
        argv[0 if path.suffix == ".safetensors" else 2] = str(path)
    args = [str(tmp_path / a) if a.endswith(".png") else a for a in args]
    assert run_cli(main, [*argv, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_help_runs_as_a_module() -> None:
    r = subprocess.run([sys.executable, "-m", "spatial_latent.edit", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--region" in r.stdout and "--strip" in r.stdout and "--bank" in r.stdout
