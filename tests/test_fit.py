"""python -m spatial_latent.fit: builds banks from drawn samples, CSV scores and the generator's
weights; bad input is one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attributes.bank import DirectionBank
from spatial_latent.fit import main
from attributes.labelers import pixel_stat
from spatial_latent.cli import run_cli
from spatial_latent.checkpoints.loading import load_generator

SMALL = ["--network", "tiny", "--samples", "60", "--batch", "30", "--density", "2", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def tiny_fp() -> str:
    return load_generator("tiny").fingerprint()


def test_fit_draw_label_and_sefa(tmp_path: Path, tiny_fp: str, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bank.npz"
    assert run_cli(main, [*SMALL, "--labeler", "brightness:left", "--sefa", "2", "--out", str(out)]) == 0
    bank = DirectionBank.load(out)
    assert bank.names == ["brightness", "sefa0", "sefa1"] and bank.generator == tiny_fp
    d = bank["brightness"]
    assert d.vectors.shape == (1, 64, 2, 2) and d.density == 2 and d.meta["num_samples"] == 60
    assert d.meta["labeler"] == "brightness:left" and d.meta["locations"] == "joint" and 0.5 <= d.held_out.mean() <= 1
    assert "held-out accuracy" in capsys.readouterr().out
    # --append adds a conditional direction and PCA directions to the same bank
    args = [*SMALL, "--labeler", "red", "--name", "redness", "--condition-on", "brightness", "--pca", "1", "--append", "--out", str(out)]
    assert run_cli(main, args) == 0
    bank = DirectionBank.load(out)
    assert bank.names == ["brightness", "sefa0", "sefa1", "redness", "pca0"]
    r, b = bank["redness"].vectors.reshape(-1), bank["brightness"].vectors.reshape(-1)
    assert abs(float(r @ b)) < 1e-4 * float(r.norm() * b.norm())


def test_export_samples_then_fit_from_the_csv(tmp_path: Path, tiny_fp: str) -> None:
    folder = tmp_path / "samples"
    assert run_cli(main, [*SMALL, "--samples", "40", "--export-samples", str(folder), "--out", str(tmp_path / "unused.npz")]) == 0
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 40 and len(list(folder.glob("*.safetensors"))) == 40
    assert (folder / "scores.csv").read_text().splitlines()[:2] == ["file,score", "sample000000.png,"]
    # Label the pictures "by hand": the brightness of each saved PNG.
    rows = ["file,score"]
    for p in pngs:
        pic = np.asarray(Image.open(p), dtype=np.float32) / 127.5 - 1
        rows.append(f"{p.name},{float(pixel_stat(torch.from_numpy(pic).permute(2, 0, 1)[None], 'brightness').mean()):.6f}")
    (folder / "scores.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "bank.npz"
    assert run_cli(main, ["--network", "tiny", "--labeler", str(folder / "scores.csv"), "--name", "bright", "--select", "0.5", "--out", str(out), "--quiet"]) == 0
    d = DirectionBank.load(out)["bright"]
    assert d.meta["num_samples"] == 40 and d.meta["generator"] == tiny_fp and d.vectors.shape == (1, 64, 2, 2)


def constant_labeler(images: torch.Tensor) -> torch.Tensor:
    return torch.ones(images.shape[0])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--labeler", "const_labels:constant_labeler"], "all one class"),
        (["--labeler", "loudness"], "unknown labeler"),
        (["--labeler", "brightness", "--append"], "--append: no bank"),
        (["--labeler", "brightness", "--condition-on", "x"], "--append"),
        ([], "nothing to do"),
        (["--labeler", "brightness", "--grid", "3x"], "bad --grid"),
        (["--labeler", "brightness", "--grid", "3", "--density", "8"], "whole pixels"),
        (["--labeler", "missing.csv"], "not found"),
        (["--labeler", "brightness", "--default-strength", "nan"], "finite"),
        (["--sefa", "1", "--region", "0,0,8,8"], "give --labeler"),
        (["--labeler", "brightness.csv", "--method", "gradient"], "differentiable"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    mod = types.ModuleType("const_labels")
    mod.constant_labeler = constant_labeler
    monkeypatch.setitem(sys.modules, "const_labels", mod)
    out = tmp_path / "bank.npz"
    assert run_cli(main, [*SMALL, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("region, message", [("8,0,4,8", "empty"), ("0,0,inf,8", "finite"), ("a,b", "use x0,y0,x1,y1")])
def test_a_region_the_bank_could_not_read_back_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, region: str, message: str) -> None:
    out = tmp_path / "bank.npz"
    with pytest.raises(SystemExit) as e:
        main([*SMALL, "--labeler", "brightness", "--region", region, "--out", str(out)])
    assert e.value.code == 2 and message in capsys.readouterr().err and not out.exists()


def test_gradient_method_records_the_edit_defaults(tmp_path: Path, tiny_fp: str) -> None:
    out = tmp_path / "bank.npz"
    args = [*SMALL, "--samples", "16", "--batch", "8", "--labeler", "brightness:left", "--method", "gradient", "--region", "0,0,16,32", "--default-strength", "2.5"]
    assert run_cli(main, [*args, "--out", str(out)]) == 0
    d = DirectionBank.load(out)["brightness"]
    assert d.meta["method"] == "gradient" and d.metric == "agreement" and d.vectors.shape == (1, 64, 2, 2)
    assert d.meta["region"] == [0, 0, 16, 32] and d.meta["default_strength"] == 2.5 and d.meta["generator"] == tiny_fp
    step = d.vectors[0].norm(dim=0)
    assert step[:, 0].mean() > step[:, 1].mean()  # the left half's brightness lives in the left column


@pytest.mark.slow
def test_help_runs_as_a_module() -> None:
    r = subprocess.run([sys.executable, "-m", "spatial_latent.fit", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--labeler" in r.stdout and "--export-samples" in r.stdout
    r = subprocess.run([sys.executable, "-c", "import sys, spatial_latent.fit; print('sklearn' in sys.modules, 'torch' in sys.modules)"], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["False", "False"]  # no heavy imports before they are needed
