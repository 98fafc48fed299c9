"""load_generator / save_generator: round trips between formats, names, bad input."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_latent.checkpoints import hub
from spatial_latent.errors import CheckpointError, DownloadError, InputError
from spatial_latent.checkpoints.loading import load_generator, random_generator, resolve_device, save_generator
from support import TINY_CONFIGS, fixture_set_dir


@torch.no_grad()
def test_nvidia_pkl_to_native_round_trip_is_exact(tmp_path: Path) -> None:
    d = fixture_set_dir("nvidia_ada_cond_32")
    G = load_generator(d / "network-snapshot.pkl")
    path = save_generator(G, tmp_path / "g.safetensors")
    H = load_generator(path)
    assert H.config.to_dict() | {"source_format": ""} == G.config.to_dict() | {"source_format": ""}
    z, c = torch.from_numpy(np.load(d / "z.npy")), torch.from_numpy(np.load(d / "c.npy"))
    assert torch.equal(G(z, c, truncation_psi=0.7), H(z, c, truncation_psi=0.7))
    assert G.fingerprint() == H.fingerprint()


@torch.no_grad()
def test_same_weights_from_rosinality_and_nvidia_layouts_give_same_images(tmp_path: Path) -> None:
    d = fixture_set_dir("rosinality_64")
    G = load_generator(d / "checkpoint.pt")  # rosinality layout
    torch.save({"g_ema": G.state_dict()}, tmp_path / "nvidia_layout.pt")  # same tensors, NVIDIA names
    H = load_generator(tmp_path / "nvidia_layout.pt")
    z = torch.from_numpy(np.load(d / "z.npy"))
    assert (G(z) - H(z)).abs().max() == 0
    assert G.fingerprint() == H.fingerprint()


@torch.no_grad()
def test_tf_and_pytorch_pickles_of_the_same_network_agree() -> None:
    # Same weights; the configs differ (TF StyleGAN2 has no conv_clamp and no fp16 blocks).
    tf = load_generator(fixture_set_dir("nvidia_tf_64") / "network-tf.pkl")
    pt = load_generator(fixture_set_dir("nvidia_ada_64") / "network-snapshot.pkl")
    a, b = tf.state_dict(), pt.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tf.config.conv_clamp, pt.config.conv_clamp) == (None, 256)
    z = torch.randn(2, tf.z_dim)
    assert torch.equal(tf(z), pt(z))


def test_rosinality_without_w_avg_gets_one_computed() -> None:
    G = load_generator(fixture_set_dir("rosinality_32_cm1") / "checkpoint.pt")
    mean = torch.from_numpy(np.load(fixture_set_dir("rosinality_32_cm1") / "mean_latent.npy"))[0]
    # Our 10k-sample estimate and rosinality's 4096-sample one estimate the same mean.
    assert (G.mapping.w_avg - mean).abs().max() < 0.1 * mean.abs().max()


def test_builtin_tiny_generator_is_deterministic() -> None:
    a, b = load_generator("tiny"), load_generator("tiny")
    assert a.fingerprint() == b.fingerprint()
    assert a(torch.zeros(1, a.z_dim)).shape == (1, 3, a.img_resolution, a.img_resolution)


def test_well_known_name_offline_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a local port nobody listens on: "offline" without touching the internet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = hub.KnownNetwork(name="ffhq", url=f"http://127.0.0.1:{port}/ffhq.pkl", sha256=None, resolution=1024, format="nvidia-pkl", description="test")
    monkeypatch.setattr(hub, "KNOWN_NETWORKS", {"ffhq": entry})
    monkeypatch.setenv("SPATIAL_LATENT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DownloadError, match=r"could not download 'ffhq' from .* If this machine is offline, download") as err:
        load_generator("ffhq")
    msg = str(err.value)
    assert entry.url in msg and str(tmp_path / "cache" / "ffhq.pkl") in msg
    assert not list((tmp_path / "cache").glob("*"))


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p / "missing.pkl", "not found"),
        (lambda p: p, "directory"),
        (lambda p: _file(p / "empty.pkl", b""), "empty"),
        (lambda p: _file(p / "rand.pt", np.random.RandomState(0).bytes(4096)), "rand.pt"),
    ],
    ids=["missing", "directory", "empty", "random-bytes"],
)
def test_bad_files_raise_checkpoint_errors(tmp_path: Path, make, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        load_generator(make(tmp_path))


def test_truncated_native_file(tmp_path: Path) -> None:
    path = save_generator(random_generator(TINY_CONFIGS["skip"]), tmp_path / "g.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: corrupt or truncated safetensors file"):
        load_generator(tmp_path / "cut.safetensors")


def test_native_file_with_missing_tensor(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    G = random_generator(TINY_CONFIGS["skip"])
    path = save_generator(G, tmp_path / "g.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "synthesis.b8.conv1.weight"}
    save_file(tensors, str(tmp_path / "broken.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="synthesis.b8.conv1.weight"):
        load_generator(tmp_path / "broken.safetensors")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spatial_latent.checkpoints import native

    old = random_generator(TINY_CONFIGS["orig"], seed=0)
    path = save_generator(old, tmp_path / "g.safetensors")
    before = path.read_bytes()
    real_save = native.save_safetensors

    def fail_half_way(filename, tensors, metadata):  # the disk fills up in the middle of the write
        real_save(filename, tensors, metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(native, "save_safetensors", fail_half_way)
    with pytest.raises(OSError, match="No space left on device"):
        save_generator(random_generator(TINY_CONFIGS["orig"], seed=1), path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temporary file left
    assert path.read_bytes() == before  # the old file is intact ...
    assert load_generator(path).fingerprint() == old.fingerprint()  # ... and still loads
    new = random_generator(TINY_CONFIGS["orig"], seed=1)
    save_generator(new, path)  # a write that completes replaces it
    assert load_generator(path).fingerprint() == new.fingerprint() != old.fingerprint()
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device 'tpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(InputError, match="device 'cuda' requested but no CUDA GPU is available; use --device cpu"):
            resolve_device("cuda")


def test_saved_files_get_normal_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from spatial_latent.atomic import _umask

    G = random_generator(TINY_CONFIGS["skip"], seed=0)
    path = save_generator(G, tmp_path / "g.safetensors")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~_umask()  # safetensors alone makes 0600
