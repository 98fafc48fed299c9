"""Direction banks: exact round trip, refusal of pickles and foreign files, generator and shape
checks, atomic writes."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from attributes.bank import DirectionBank
from attributes.direction import Direction
from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid

FP = "0123456789abcdef"


def make_bank() -> DirectionBank:
    bank = DirectionBank(FP, w_dim=8, num_ws=6, meta={"note": "test"})
    bank.add(Direction("smile", torch.randn(1, 8, 4, 4), density=4, held_out=torch.rand(1, 4, 4), metric="accuracy", meta={"method": "logistic", "generator": FP}))
    bank.add(Direction("sefa0", torch.randn(1, 8, 1, 1), meta={"method": "sefa", "eigenvalue": 3.5}))
    bank.add(Direction("hair", torch.randn(6, 8, 2, 2), space="w+", density=2, layer_groups=[(0, 3), (3, 6)], held_out=torch.rand(2, 2, 2), metric="r2"))
    return bank


def test_round_trip_is_exact(tmp_path: Path) -> None:
    bank = make_bank()
    path = bank.save(tmp_path / "bank.npz")
    back = DirectionBank.load(path)
    assert back.names == ["smile", "sefa0", "hair"] and back.generator == FP and (back.w_dim, back.num_ws) == (8, 6)
    assert back.meta == {"note": "test"}
    for a in bank:
        b = back[a.name]
        assert torch.equal(a.vectors, b.vectors) and (a.space, a.density, a.metric, a.layer_groups) == (b.space, b.density, b.metric, b.layer_groups)
        assert (a.held_out is None and b.held_out is None) or torch.equal(a.held_out, b.held_out)
        assert a.meta == b.meta


def test_any_file_name_is_kept(tmp_path: Path) -> None:
    path = make_bank().save(tmp_path / "directions.bank")  # numpy would otherwise append .npz
    assert path.is_file() and not (tmp_path / "directions.bank.npz").exists()
    assert DirectionBank.load(path).names == ["smile", "sefa0", "hair"]


class Evil:
    """Unpickling this would create a file: proof that code ran."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_content_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    Evil.marker = str(marker)
    good = tmp_path / "good.npz"
    make_bank().save(good)
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["d0.vectors"] = np.array([Evil()], dtype=object)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)  # numpy pickles object arrays
    with pytest.raises(InputError, match="pickled"):
        DirectionBank.load(bad)
    assert not marker.exists()


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a zip at all", "not a direction bank"),
        ("npz:no-header", "no __bank__"),
        ("npz:wrong-format", "not a spatial-latent direction bank"),
        ("npz:missing-vectors", "no float32"),
        ("npz:bad-json", "not valid JSON"),
    ],
)
def test_foreign_and_broken_files(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "x.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        kind = content.split(":")[1]
        header = {"format": "spatial-latent-direction-bank", "format_version": "1", "generator": None, "w_dim": 8, "num_ws": 6,
                  "directions": [{"name": "a", "key": "d0", "space": "w", "density": 1, "cells": [1, 1], "layer_groups": None, "metric": "", "meta": {}}]}
        if kind == "no-header":
            write_npz(path, data=np.zeros(3))
        elif kind == "wrong-format":
            write_npz(path, __bank__=np.array(json.dumps(dict(header, format="other"))))
        elif kind == "missing-vectors":
            write_npz(path, __bank__=np.array(json.dumps(header)))
        else:
            write_npz(path, __bank__=np.array("{not json"))
    with pytest.raises(InputError, match=message):
        DirectionBank.load(path)


def test_missing_file() -> None:
    with pytest.raises(InputError, match="not found"):
        DirectionBank.load("/nonexistent/bank.npz")


def test_unknown_attribute_lists_the_names() -> None:
    with pytest.raises(InputError, match="unknown attribute 'age'.*smile, sefa0, hair"):
        make_bank()["age"]


def test_generator_and_shape_checks() -> None:
    bank = make_bank()
    bank.check_generator(FP)
    with pytest.raises(InputError, match="made for generator"):
        bank.check_generator("ffffffffffffffff")
    grid = LatentGrid(torch.zeros(1, 1, 8, 4, 4), space="w", density=4, meta={"fingerprint": "ffffffffffffffff"})
    with pytest.raises(InputError, match="made for generator"):
        bank.check_grid(grid, "smile")
    ok = grid.replace(grid.data, meta={"fingerprint": FP})
    bank.check_grid(ok, "smile")
    bank.check_grid(ok, "sefa0")
    with pytest.raises(InputError, match="4x4-cell grids at density 4; this grid is 8x8"):
        bank.check_grid(ok.tile(2, 2), "smile")
    bank.check_grid(ok.tile(2, 2), "sefa0")  # a global direction fits any grid
    with pytest.raises(InputError, match="per layer"):
        bank.check_grid(ok.replace(torch.zeros(1, 1, 8, 2, 2), density=2), "hair")
    with pytest.raises(InputError, match="channels"):
        bank.check_grid(LatentGrid(torch.zeros(1, 1, 9, 4, 4), space="w", density=4))
    with pytest.raises(InputError, match="layers"):
        bank.check_grid(LatentGrid(torch.zeros(1, 5, 8, 2, 2), space="w+", density=2))


def test_add_checks_shape_generator_and_names() -> None:
    bank = make_bank()
    with pytest.raises(InputError, match="w_dim 8"):
        bank.add(Direction("x", torch.zeros(1, 7, 1, 1)))
    with pytest.raises(InputError, match="layers"):
        bank.add(Direction("x", torch.zeros(4, 8, 1, 1), space="w+"))
    with pytest.raises(InputError, match="fitted for generator"):
        bank.add(Direction("x", torch.zeros(1, 8, 1, 1), meta={"generator": "ffffffffffffffff"}))
    with pytest.raises(InputError, match="already has"):
        bank.add(Direction("smile", torch.zeros(1, 8, 1, 1)))
    bank.add(Direction("smile", torch.ones(1, 8, 1, 1)), replace=True)
    assert bank["smile"].is_global


def test_failed_save_leaves_the_old_bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_bank().save(tmp_path / "bank.npz")
    before = path.read_bytes()

    def broken(f, **arrays):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        DirectionBank(FP, 8, 6).save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["bank.npz"]
    assert zipfile.is_zipfile(path)
