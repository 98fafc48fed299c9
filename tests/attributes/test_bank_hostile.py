"""Hostile direction banks: sizes checked before anything is decompressed or allocated, one
error line (issue 15)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from attributes.bank import DirectionBank
from attributes.direction import Direction
from bounded import run_cases
from spatial_latent.errors import InputError


def _bank(path):
    bank = DirectionBank("fp", 8, 4)
    bank.add(Direction("g", torch.randn(1, 8, 1, 1)))
    return bank.save(path)


def _npy_header(shape, dtype="<f4") -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
    return f.getvalue()


def test_hostile_banks_are_refused_within_bounded_memory_and_time(tmp_path):
    bomb = _bank(tmp_path / "bomb.npz")
    raw = 256 * 2**20  # 256 MB of zeros, deflated to about 1 MB
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("d1.vectors.npy", "w") as f:
            f.write(_npy_header((raw // 4,)))
            chunk = bytes(2**22)
            for _ in range(raw // len(chunk)):
                f.write(chunk)
    assert bomb.stat().st_size < 2 * 2**20
    liar = _bank(tmp_path / "liar.npz")  # a stored member whose header claims 4 GB
    with zipfile.ZipFile(liar, "a") as zf:
        zf.writestr("d1.vectors.npy", _npy_header((10**9,)) + bytes(16))
    nested = tmp_path / "nested.npz"
    with open(nested, "wb") as f:
        np.savez(f, __bank__=np.array("[" * 100_000 + "]" * 100_000))

    res = run_cases(
        {name: f"DirectionBank.load({str(tmp_path / (name + '.npz'))!r})" for name in ("bomb", "liar", "nested")},
        setup="from attributes.bank import DirectionBank",
        cap_mb=768,
    )
    print({k: (round(v["peak_growth_mb"], 1), round(v["seconds"], 2)) for k, v in res.items()})
    size = bomb.stat().st_size
    declared = sum(i.file_size for i in zipfile.ZipFile(bomb).infolist())
    assert declared > raw
    expected = {
        "bomb": f"{bomb}: its zip members declare {declared} bytes for a {size}-byte file (a zip bomb, or not a direction bank); refusing to unpack",
        "liar": f"{liar}: member 'd1.vectors.npy' declares [1000000000] x float32 (4000000000 bytes) but holds 16 bytes",
        "nested": f"{nested}: bank header is nested more than 32 levels deep; refusing it",
    }
    for name, message in expected.items():
        r = res[name]
        assert "InputError" in r["mro"] and r["error"] == message, (name, r)
        assert r["peak_growth_mb"] < 48 and r["seconds"] < 10, (name, r)


@pytest.mark.parametrize(
    "header, message",
    [
        ({"directions": "x"}, "malformed direction bank"),
        ({"directions": [{"name": "g", "key": "d0", "cells": None}]}, "malformed direction bank"),
        ({"w_dim": [8]}, "malformed direction bank"),
        ({"meta_region": ["a", 0, 1, 1]}, "bad default region"),
        ({"meta_region": [10, 0, 5, 8]}, "bad default region"),
        ({"meta_default_strength": "NaN"}, "bad default strength"),
    ],
)
def test_malformed_bank_header_is_one_line(tmp_path, header, message):
    good = _bank(tmp_path / "good.npz")
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    full = json.loads(str(arrays["__bank__"]))
    for key in [k for k in header if k.startswith("meta_")]:  # an edit default a direction records
        full["directions"][0]["meta"][key[5:]] = header.pop(key)
    full.update(header)
    arrays["__bank__"] = np.array(json.dumps(full))
    path = tmp_path / "bad.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(InputError, match=message) as e:
        DirectionBank.load(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
