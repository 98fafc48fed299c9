"""Hostile and broken generator checkpoints: memory and time bounded by the file's real content,
one error line, nothing silently wrong (issue 15).

The attack files are built here, small; the loads that could allocate run in a child process
whose address space is capped (``tests/bounded.py``), which reports each case's peak memory
growth and time.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from bounded import run_cases
from support import TINY_CONFIGS
from spatial_latent.checkpoints.loading import load_generator, random_generator, save_generator
from spatial_latent.checkpoints.native import NATIVE_FORMAT, NATIVE_VERSION, read_native, write_native
from spatial_latent.cli import run_cli
from spatial_latent.errors import CheckpointError
from spatial_latent.io.safetensors_io import SHA256_KEY, save_safetensors

MB = 2**20


def _snapshot(fake, G, *, tsk=None, init_kwargs=None) -> bytes:
    """An NVIDIA snapshot pickle ``{G_ema, training_set_kwargs}`` of generator ``G``, written with
    the stand-in persistence modules (module tree from the state dict's dotted names)."""
    tree: dict = {}
    for key, t in G.state_dict().items():
        *mods, leaf = key.split(".")
        node = tree
        for m in mods:
            node = node.setdefault(m, {})
        node.setdefault("", {})[leaf] = t.clone()

    def build(node, cls, **attrs):
        kids = {k: build(v, "Module") for k, v in node.items() if k}
        return fake.Persistent(cls, fake.state(node.get("", {}), None, kids, **attrs))

    root = build(tree, "Generator", _init_kwargs=init_kwargs if init_kwargs is not None else fake.EasyDict(z_dim=G.z_dim))
    root.meta["state"]["_modules"]["mapping"].meta["state"]["_modules"]["fc0"].meta["state"]["bias_gain"] = G.config.mapping_lr_multiplier
    return pickle.dumps({"G_ema": root, "training_set_kwargs": tsk if tsk is not None else fake.EasyDict(resolution=32)}, protocol=4)


def _web(fake, levels: int = 30):
    """About 1 KB pickled, 4^30 entries once expanded: every level holds the one below 4 times."""
    web = fake.EasyDict(leaf=1)
    for _ in range(levels):
        web = fake.EasyDict(a=web, b=web, c=web, d=web)
    return web


def _sparse(path: Path, head: bytes, size: int) -> Path:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    if os.stat(path).st_blocks * 512 > 64 * MB:
        path.unlink()
        pytest.skip("this file system does not keep sparse files sparse")
    return path


def test_hostile_pickles_are_refused_within_bounded_memory_and_time(tmp_path, fake_nvidia_modules):
    fake = fake_nvidia_modules
    G = random_generator(TINY_CONFIGS["skip"], seed=3)
    good = _snapshot(fake, G)
    (tmp_path / "good.pkl").write_bytes(good)
    web_tsk = _snapshot(fake, G, tsk=_web(fake))
    web_init = _snapshot(fake, G, init_kwargs=_web(fake))
    assert len(web_tsk) - len(good) < 5000  # a few KB added ...
    (tmp_path / "web_tsk.pkl").write_bytes(web_tsk)
    (tmp_path / "web_init.pkl").write_bytes(web_init)
    # ... 9 bytes: PROTO 2, NONE, LONG_BINPUT 2^31-1, STOP: the memo table would be sized by the index
    memo = b"\x80\x02Nr" + struct.pack("<I", 2**31 - 1) + b"."
    assert len(memo) == 9
    (tmp_path / "memo.pkl").write_bytes(memo)
    _sparse(tmp_path / "sparse4.pkl", good, 4 * 10**9)  # a real snapshot, then 4 GB of holes
    _sparse(tmp_path / "sparse10.pkl", good, 10 * 10**9)
    fp = G.fingerprint()

    res = run_cases(
        {
            "good": f"assert load_generator({str(tmp_path / 'good.pkl')!r}).fingerprint() == {fp!r}",
            "web_tsk": f"read_checkpoint({str(tmp_path / 'web_tsk.pkl')!r})",
            "web_init": f"read_checkpoint({str(tmp_path / 'web_init.pkl')!r})",
            "memo": f"read_checkpoint({str(tmp_path / 'memo.pkl')!r})",
            "sparse4": f"assert load_generator({str(tmp_path / 'sparse4.pkl')!r}).fingerprint() == {fp!r}",
            "sparse10": f"load_generator({str(tmp_path / 'sparse10.pkl')!r})",
        },
        setup="from spatial_latent.checkpoints.readers import read_checkpoint\nfrom spatial_latent.checkpoints.loading import load_generator",
        cap_mb=768,
    )
    print({k: (round(v["peak_growth_mb"], 1), round(v["seconds"], 2)) for k, v in res.items()})
    assert res["good"]["type"] is None and res["sparse4"]["type"] is None, res
    expected = {
        "web_tsk": f"{tmp_path / 'web_tsk.pkl'}: training_set_kwargs expands to more than 100000 entries",
        "web_init": f"{tmp_path / 'web_init.pkl'}: G_ema._init_kwargs expands to more than 100000 entries",
        "memo": f"{tmp_path / 'memo.pkl'}: corrupt or hostile pickle (memo index 2147483647 at byte 3, after only 3 opcodes)",
        "sparse10": f"{tmp_path / 'sparse10.pkl'}: the file is 10.0 GB (10000000000 bytes); a generator checkpoint is at most 4.3 GB",
    }
    for name, start in expected.items():
        r = res[name]
        assert "CheckpointError" in r["mro"] and r["error"].startswith(start), (name, r)
        assert "\n" not in r["error"]
    for name, r in res.items():
        # the file's real content is < 0.3 MB: a few MB of Python objects at most, in well under
        # a second (10 s allowed for a loaded CI machine); the unbounded versions took GBs
        assert r["peak_growth_mb"] < 48, (name, r)
        assert r["seconds"] < 10, (name, r)


def test_torch_zip_declaring_more_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "bomb.pt"
    torch.save({"g_ema": {"x": torch.zeros(16)}}, path)
    data = bytearray(path.read_bytes())
    i = data.find(b"PK\x01\x02")
    while i >= 0:  # every central directory entry now declares 4 GB
        struct.pack_into("<II", data, i + 20, 0xFFFFFF00, 0xFFFFFF00)
        i = data.find(b"PK\x01\x02", i + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"^{path}: zip member '.*' runs past the end of the file; truncated or corrupt torch checkpoint$"):
        load_generator(path)


# --- native files are held to the rules foreign ones are ------------------------------------


def _native(tmp_path: Path, name: str, *, config: dict | None = None, raw_config: str | None = None, tweak=None) -> Path:
    G = random_generator(TINY_CONFIGS["skip"], seed=1)
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    if tweak:
        tweak(sd)
    cfg = raw_config if raw_config is not None else json.dumps(config if config is not None else G.config.to_dict())
    meta = {"format": NATIVE_FORMAT, "format_version": NATIVE_VERSION, "config": cfg}
    path = tmp_path / f"{name}.safetensors"
    save_safetensors(path, sd, meta)
    return path


def _config(**changes) -> dict:
    d = random_generator(TINY_CONFIGS["skip"], seed=1).config.to_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("nan", dict(tweak=lambda sd: sd["synthesis.b8.conv1.weight"].view(-1)[7].fill_(float("nan"))),
         "non-finite values (NaN/inf) in synthesis.b8.conv1.weight"),
        ("inf", dict(tweak=lambda sd: sd["mapping.w_avg"].fill_(float("inf"))), "non-finite values (NaN/inf) in mapping.w_avg"),
        ("int32", dict(tweak=lambda sd: sd.__setitem__("synthesis.b4.const", sd["synthesis.b4.const"].to(torch.int32))),
         "synthesis.b4.const is a torch.int32 tensor, not a floating-point tensor"),
        ("lr", dict(config=_config(mapping_lr_multiplier=1e308)), "mapping learning-rate multiplier 1e+308 is outside (0, 10]"),
        ("lr0", dict(config=_config(mapping_lr_multiplier=-0.01)), "mapping learning-rate multiplier -0.01 is outside (0, 10]"),
        ("clamp", dict(config=_config(conv_clamp=float("inf"))), "conv_clamp inf is not a positive finite number"),
        ("nested", dict(raw_config='{"a": ' * 50_000 + "1" + "}" * 50_000), "generator config is nested more than 32 levels deep"),
        ("list", dict(config=_config(channels=[32, 32, 16, 16])), "generator config channels is list, expected an object"),
        ("null", dict(config=_config(channels=None)), "generator config channels is NoneType, expected an object"),
        ("text", dict(config=_config(w_dim="32")), "generator config w_dim is '32', expected an integer"),
        ("huge", dict(config=_config(channels={"4": 2**20})), "channels entry '4': 1048576 is not resolution: width"),
        ("json", dict(raw_config="[1, 2"), "generator config is not valid JSON"),
        ("array", dict(raw_config="[1, 2]"), "generator config is a JSON list, expected an object"),
    ],
)
def test_native_file_is_validated_like_foreign_ones(tmp_path, capsys, name, kwargs, message):
    from spatial_latent import convert

    path = _native(tmp_path, name, **kwargs)
    with pytest.raises(CheckpointError) as e:
        load_generator(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)
    # the command line: one error line, exit 2, no output file
    out = tmp_path / "out.safetensors"
    assert run_cli(convert.main, [str(path), str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()


def test_native_file_checksum_and_reproducible_bytes(tmp_path):
    G = random_generator(TINY_CONFIGS["skip"], seed=2)
    a = save_generator(G, tmp_path / "a.safetensors")
    b = save_generator(G, tmp_path / "b.safetensors")
    assert a.read_bytes() == b.read_bytes()  # sorted metadata: same generator, same bytes
    _, _, meta = read_native(a)
    assert len(meta[SHA256_KEY]) == 64
    raw = a.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")], object_pairs_hook=list)
    assert [k for k, _ in header] == sorted(k for k, _ in header)  # header and metadata keys in order
    assert [k for k, _ in dict(header)["__metadata__"]] == sorted(meta)
    data = bytearray(a.read_bytes())
    data[-5] ^= 0x10  # one bit of the last tensor: still finite, still the right shape
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"^{bad}: checksum mismatch: the file records tensors with sha256 {meta[SHA256_KEY]}, its tensors hash to [0-9a-f]{{64}}; the file is corrupt or was altered$"):
        load_generator(bad)
    # a file from before the checksum (no tensors_sha256) still loads
    sd = G.state_dict()
    old = tmp_path / "old.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(old), metadata={"format": NATIVE_FORMAT, "format_version": NATIVE_VERSION, "config": G.config.to_json()})
    assert load_generator(old).fingerprint() == G.fingerprint()


def test_write_native_output_is_a_plain_safetensors_file(tmp_path):
    from safetensors.torch import load_file

    G = random_generator(TINY_CONFIGS["cond"], seed=0)
    path = write_native(tmp_path / "g.safetensors", G.config, G.state_dict())
    back = load_file(str(path))
    assert set(back) == set(G.state_dict())
    assert all(torch.equal(back[k], v) for k, v in G.state_dict().items())
