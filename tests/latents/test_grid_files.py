"""Latent files: checksummed, reproducible bytes, hostile metadata refused with one line (issue 15)."""

from __future__ import annotations

import json

import pytest
import torch

from spatial_latent.errors import InputError
from spatial_latent.io.safetensors_io import SHA256_KEY, save_safetensors
from spatial_latent.latents.grid import LATENT_FORMAT, LATENT_FORMAT_VERSION, LatentGrid


def _grid() -> LatentGrid:
    g = LatentGrid(torch.randn(1, 4, 8, 3, 5, generator=torch.Generator().manual_seed(0)), space="w+", density=2)
    g.meta.update(network="tiny", b=1, a=[1, 2])
    return g


def test_same_grid_same_bytes_and_checksum(tmp_path):
    g = _grid()
    a, b = g.save(tmp_path / "a.safetensors"), g.save(tmp_path / "b.safetensors")
    assert a.read_bytes() == b.read_bytes()
    back = LatentGrid.load(a)
    assert torch.equal(back.data, g.data) and back.meta == g.meta
    data = bytearray(a.read_bytes())
    data[-3] ^= 0x01  # one bit of the last cell
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"^{bad}: checksum mismatch: the file records tensors with sha256 [0-9a-f]{{64}}, its tensors hash to [0-9a-f]{{64}}; the file is corrupt or was altered$"):
        LatentGrid.load(bad)


@pytest.mark.parametrize(
    "meta, message",
    [
        ('{"a": ' * 10_000 + "1" + "}" * 10_000, "latent meta is nested more than 32 levels deep"),
        ("[1, 2]", "latent meta is a JSON list, expected an object"),
        ("{", "latent meta is not valid JSON"),
    ],
)
def test_hostile_meta_is_one_line(tmp_path, meta, message):
    path = tmp_path / "m.safetensors"
    save_safetensors(path, {"grid": torch.zeros(1, 1, 4, 2, 2)}, {"format": LATENT_FORMAT, "format_version": LATENT_FORMAT_VERSION,
                                                                   "space": "w", "density": "2", "meta": meta})  # fmt: skip
    with pytest.raises(InputError) as e:
        LatentGrid.load(path)
    assert str(e.value) == f"{path}: {message}" or (str(e.value).startswith(f"{path}: {message}") and "\n" not in str(e.value)), str(e.value)


def test_latent_file_larger_than_any_real_one_is_refused(tmp_path):
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:
        f.truncate(5 * 2**30)  # sparse: nothing is written
    with pytest.raises(InputError, match=rf"^{path}: the file is 5\.4 GB \(5368709120 bytes\); a latent file is at most 4\.3 GB"):
        LatentGrid.load(path)


def test_files_without_checksum_still_load(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"
    save_file({"grid": torch.ones(1, 1, 4, 2, 2)}, str(path), metadata={"format": LATENT_FORMAT, "format_version": LATENT_FORMAT_VERSION,
                                                                        "space": "w", "density": "2", "meta": json.dumps({})})  # fmt: skip
    assert LatentGrid.load(path).data.sum() == 16
    assert SHA256_KEY not in json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])["__metadata__"]
