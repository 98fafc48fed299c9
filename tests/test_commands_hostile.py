"""Commands and careless users (issue 15): checks before work, one error line and exit 2, no silent
overwrite, no empty or half-written outputs, exit statuses documented in every --help."""

from __future__ import annotations

import importlib
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatial_latent.cli import EXIT_STATUS, run_cli

COMMANDS = ["convert", "demo", "edit", "encode", "fit", "generate", "prepare_faces", "sample", "train", "train_encoder", "train_labeler"]


def _cli(module: str, args: list[str], capsys) -> tuple[int, str]:
    code = run_cli(importlib.import_module(f"spatial_latent.{module}").main, args)
    return code, capsys.readouterr().err


def _one_line(err: str, fragment: str) -> None:
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert "usage:" not in err and "Traceback" not in err


@pytest.mark.parametrize("module", COMMANDS)
def test_help_documents_the_exit_statuses(module):
    text = importlib.import_module(f"spatial_latent.{module}").build_parser().format_help()
    assert "Exit status: 0 all done; 1 done, but some inputs were skipped" in " ".join(text.split()), text
    assert " ".join(EXIT_STATUS.split()) in " ".join(text.split())


def test_readme_documents_the_exit_statuses():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    assert "| `0` |" in section and "| `1` |" in section and "| `2` |" in section, section[:500]


def test_huge_seed_range_is_refused_before_building_it(capsys):
    tracemalloc.start()
    t0 = time.perf_counter()
    code, err = _cli("generate", ["--network", "tiny", "--seeds", "0-4294967295", "--device", "cpu"], capsys)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2
    _one_line(err, "too many seeds in '0-4294967295' (at most 100000)")
    assert seconds < 1 and peak < 1_000_000, (seconds, peak)  # the list of 2^32 seeds was 150 GB


@pytest.mark.parametrize("size, message", [("-5x512", "--size must be positive, got '-5x512'"), ("512x-5", "--size must be positive"), ("5x", "bad --size '5x'")])
def test_sample_bad_size_is_one_line(tmp_path, capsys, size, message):
    code, err = _cli("sample", ["--network", "tiny", "--size", size, "--out", str(tmp_path / "x.png")], capsys)
    assert code == 2
    _one_line(err, message)


def test_sample_checks_before_the_progress_bar_and_creates_the_folder(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "scene.png"
    args = ["--network", "tiny", "--size", "40x24", "--tile", "16", "--device", "cpu", "--out", str(out)]
    code, err = _cli("sample", args, capsys)
    assert code == 0 and out.is_file(), err  # the missing folders were created
    assert Image.open(out).size == (40, 24)
    code, err = _cli("sample", args, capsys)  # the output exists: refused before any bar is drawn
    assert code == 2
    _one_line(err, f"{out} exists; pass --overwrite to replace it")
    bad = tmp_path / "none" / "scene.bmp"
    code, err = _cli("sample", [*args[:-1], str(bad)], capsys)
    assert code == 2
    _one_line(err, "unsupported output type '.bmp'")
    assert not (tmp_path / "none").exists()  # a refused run leaves no folder behind


def test_generate_refuses_to_overwrite(tmp_path, capsys):
    args = ["--network", "tiny", "--seeds", "3-4", "--device", "cpu", "--outdir", str(tmp_path / "out")]
    assert _cli("generate", args, capsys)[0] == 0
    before = (tmp_path / "out" / "seed0003.png").read_bytes()
    code, err = _cli("generate", [*args[:3], "2-3", *args[4:]], capsys)
    assert code == 2
    _one_line(err, f"{tmp_path / 'out' / 'seed0003.png'} exists (2 of the outputs do); pass --overwrite")
    assert (tmp_path / "out" / "seed0003.png").read_bytes() == before and not (tmp_path / "out" / "seed0002.png").exists()
    assert _cli("generate", [*args, "--overwrite"], capsys)[0] == 0


def test_edit_and_fit_refuse_to_overwrite(tmp_path, capsys):
    from attributes.bank import DirectionBank
    from attributes.direction import Direction
    from attributes.sampling import sample_grids
    from spatial_latent.checkpoints.loading import load_generator

    G = load_generator("tiny")
    bank = DirectionBank.for_generator(G)
    bank.add(Direction("g", torch.randn(1, G.w_dim, 1, 1)))
    bank.save(tmp_path / "bank.npz")
    sample_grids(G, 1, (4, 4), 4, seed=0).save(tmp_path / "l.safetensors")
    for flag in ("--out", "--save-latent", "--strip"):
        target = tmp_path / f"taken{flag[2:]}.bin"
        target.write_bytes(b"mine")
        argv = [str(tmp_path / "l.safetensors"), "--bank", str(tmp_path / "bank.npz"), "--network", "tiny", "--attr", "g", flag, str(target), "--device", "cpu"]
        code, err = _cli("edit", argv, capsys)
        assert code == 2 and target.read_bytes() == b"mine"
        _one_line(err, f"{target} exists; pass --overwrite to replace it")
    code, err = _cli("fit", ["--network", "tiny", "--out", str(tmp_path / "bank.npz"), "--pca", "1"], capsys)
    assert code == 2
    _one_line(err, f"{tmp_path / 'bank.npz'} exists; pass --append to add to it or --overwrite to replace it")


def _photo(path: Path, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_encode_single_rejected_photo_leaves_no_outdir(tmp_path, capsys):
    bad = tmp_path / "letter.jpg"
    bad.write_text("Dear user, this is not a picture.")
    out = tmp_path / "out"
    code, err = _cli("encode", [str(bad), "--network", "tiny", "--no-align", "--loss", "mse", "--steps", "0", "--device", "cpu", "--outdir", str(out)], capsys)
    assert code == 2
    _one_line(err, str(bad))
    assert not out.exists()


def test_encode_writes_whole_sets_and_refuses_to_overwrite(tmp_path, capsys, monkeypatch):
    from spatial_latent import encode

    a, b = _photo(tmp_path / "a.png", 0), _photo(tmp_path / "b.png", 1)
    out = tmp_path / "out"
    common = ["--network", "tiny", "--no-align", "--loss", "mse", "--steps", "1", "--density", "2", "--batch-size", "1", "--device", "cpu", "--outdir", str(out)]
    import spatial_latent.io.pictures as pictures

    calls = []
    original = pictures.save_picture

    def dies_in_the_second_set(pic, path, *a, **k):  # as if the run were killed while writing b's pictures
        calls.append(Path(path).name)
        if Path(path).name == "b_recon.png":
            raise KeyboardInterrupt
        return original(pic, path, *a, **k)

    monkeypatch.setattr(pictures, "save_picture", dies_in_the_second_set)
    assert run_cli(encode.main, [str(a), str(b), *common]) == 130
    monkeypatch.undo()
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == ["a.latent.safetensors", "a_compare.png", "a_metrics.json", "a_recon.png", "a_target.png"]  # b: nothing, not half a set
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [f".b.tmp-{os.getpid()}"]
    capsys.readouterr()
    code, err = _cli("encode", [str(a), *common], capsys)  # a is done: refused, not silently replaced
    assert code == 2
    _one_line(err, f"{out / 'a.latent.safetensors'} exists; pass --overwrite to replace it")
    assert _cli("encode", [str(a), str(b), *common], capsys)[0] == 1  # b done, a skipped (exists)
    assert (out / "b_metrics.json").is_file() and (out / "summary.json").is_file()
    code, err = _cli("encode", [str(a), str(b), *common], capsys)
    assert code == 2
    _one_line(err, f"{out / 'summary.json'} exists (an earlier run); pass --overwrite")
    assert _cli("encode", [str(a), str(b), *common, "--overwrite"], capsys)[0] == 0
