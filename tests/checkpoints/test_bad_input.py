"""Bad inputs give one clear CheckpointError (or subclass) naming the path and the problem."""

from __future__ import annotations

import argparse
import pickle
import re
import struct

import numpy as np
import pytest
import torch

from spatial_latent.errors import CheckpointError, UnsafePickleError, UnsupportedCheckpointError
from spatial_latent.checkpoints.readers import detect_format, read_checkpoint

FILES = {
    "rosinality_64": "checkpoint.pt",
    "rosinality_32_cm1": "checkpoint.pt",
    "nvidia_ada_64": "network-snapshot.pkl",
    "nvidia_ada_cond_32": "network-snapshot.pkl",
    "nvidia_tf_64": "network-tf.pkl",
}


def _raises(path, error=CheckpointError, *fragments: str) -> CheckpointError:
    with pytest.raises(error, match=f"^{re.escape(str(path))}: ") as e:  # the message names the file first
        read_checkpoint(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return e.value


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pkl"
    _raises(path, CheckpointError, "not found")
    with pytest.raises(CheckpointError, match="not found"):
        detect_format(path)


def test_directory(tmp_path):
    _raises(tmp_path, CheckpointError, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    _raises(path, CheckpointError, "empty")


@pytest.mark.parametrize("name", list(FILES))
def test_truncated_fixture(fixtures_dir, tmp_path, name):
    data = (fixtures_dir / name / FILES[name]).read_bytes()
    path = tmp_path / FILES[name]
    path.write_bytes(data[: len(data) // 2])
    err = _raises(path, CheckpointError, "truncated or corrupt")
    assert not isinstance(err, (UnsafePickleError, UnsupportedCheckpointError))


@pytest.mark.parametrize("suffix, fragment", [(".bin", "unrecognised"), (".pkl", "corrupt"), (".pt", "unrecognised")])
def test_random_bytes(tmp_path, suffix, fragment):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(np.random.RandomState(0).bytes(4096))
    _raises(path, CheckpointError, fragment)


def test_random_bytes_with_pickle_header(tmp_path):
    path = tmp_path / "random.pkl"
    path.write_bytes(b"\x80\x04" + np.random.RandomState(1).bytes(4096))
    _raises(path, CheckpointError)


def test_pickle_of_list_of_ints(tmp_path):
    path = tmp_path / "ints.pkl"
    path.write_bytes(pickle.dumps(list(range(100))))
    _raises(path, CheckpointError, "list")


def test_pickle_of_unrelated_dict(tmp_path):
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0], "epoch": 3}))
    _raises(path, CheckpointError, "no generator found", "epoch", "weights")


def test_torch_file_of_unrelated_dict(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    _raises(path, CheckpointError, "no generator found", "model")


def test_safetensors_is_detected_not_read(tmp_path):
    header = b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path = tmp_path / "g.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")
    assert detect_format(path) == "safetensors"
    _raises(path, UnsupportedCheckpointError, "safetensors")


def test_zip_that_is_not_torch(tmp_path):
    import zipfile

    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    assert detect_format(path) == "unknown"
    _raises(path, CheckpointError, "unrecognised")


# ---- structurally wrong state dicts ---------------------------------------------------------


def _rosinality_g_ema(fixtures_dir):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(fixtures_dir / "rosinality_64" / "checkpoint.pt", weights_only=True)["g_ema"]


@pytest.fixture(scope="module")
def ada_state(fixtures_dir):
    return read_checkpoint(fixtures_dir / "nvidia_ada_64" / "network-snapshot.pkl").state_dict


def test_rosinality_missing_key(fixtures_dir, tmp_path):
    g = dict(_rosinality_g_ema(fixtures_dir))
    del g["convs.3.conv.weight"]  # conv1 of the 16x16 block
    path = tmp_path / "missing.pt"
    torch.save({"g_ema": g}, path)
    _raises(path, CheckpointError, "missing keys", "synthesis.b16.conv1.weight")


def test_rosinality_unknown_key(fixtures_dir, tmp_path):
    g = dict(_rosinality_g_ema(fixtures_dir))
    g["convs.3.extra.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pt"
    torch.save({"g_ema": g}, path)
    _raises(path, CheckpointError, "convs.3.extra.weight")


@pytest.mark.parametrize("key", ["synthesis.b8.conv1.weight", "synthesis.b64.torgb.bias", "mapping.fc3.bias"])
def test_nvidia_state_dict_missing_key(ada_state, tmp_path, key):
    sd = {k: v for k, v in ada_state.items() if k != key}
    path = tmp_path / "missing.pt"
    torch.save(sd, path)
    _raises(path, CheckpointError, "missing keys", key)


def test_nvidia_state_dict_wrong_in_channels(ada_state, tmp_path):
    sd = dict(ada_state)
    sd["synthesis.b16.conv0.weight"] = torch.zeros(64, 32, 3, 3)  # previous block has 64 channels
    path = tmp_path / "shape.pt"
    torch.save(sd, path)
    _raises(path, CheckpointError, "wrong shapes", "synthesis.b16.conv0.weight expected [64, 64, 3, 3] got [64, 32, 3, 3]")


def test_nvidia_state_dict_wrong_noise_shape(ada_state, tmp_path):
    sd = dict(ada_state)
    sd["synthesis.b32.conv1.noise_const"] = torch.zeros(16, 16)
    path = tmp_path / "noise.pt"
    torch.save({"G_ema": sd}, path)
    _raises(path, CheckpointError, "synthesis.b32.conv1.noise_const")


def test_nvidia_state_dict_nan(ada_state, tmp_path):
    sd = dict(ada_state)
    sd["synthesis.b8.conv1.bias"] = torch.full((64,), float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(sd, path)
    _raises(path, CheckpointError, "non-finite", "synthesis.b8.conv1.bias")


def test_custom_resample_filter_refused(ada_state, tmp_path):
    sd = dict(ada_state)
    f = torch.tensor([1.0, 2.0, 1.0, 0.0])
    sd["synthesis.b8.conv0.resample_filter"] = f.outer(f) / f.outer(f).sum()
    path = tmp_path / "filter.pt"
    torch.save(sd, path)
    _raises(path, UnsupportedCheckpointError, "synthesis.b8.conv0.resample_filter", "[1,3,3,1]")


def test_stylegan3_state_dict_refused(ada_state, tmp_path):
    sd = dict(ada_state)
    sd["synthesis.input.affine.weight"] = torch.zeros(4, 128)
    sd["synthesis.L0_36_512.weight"] = torch.zeros(4, 4, 3, 3)
    path = tmp_path / "sg3.pt"
    torch.save(sd, path)
    _raises(path, UnsupportedCheckpointError, "StyleGAN3")


def test_stylegan3_pickle_refused(tmp_path, fake_nvidia_modules):
    fm = fake_nvidia_modules
    inp = fm.Persistent("SynthesisInput", fm.state({"weight": torch.nn.Parameter(torch.zeros(4, 2))}))
    syn = fm.Persistent("SynthesisNetwork", fm.state(modules={"input": inp}))
    gen = fm.Persistent("Generator", fm.state(modules={"synthesis": syn}))
    path = tmp_path / "sg3.pkl"
    path.write_bytes(pickle.dumps({"G_ema": gen, "training_set_kwargs": fm.EasyDict(resolution=64)}, protocol=4))
    _raises(path, UnsupportedCheckpointError, "StyleGAN3")


def test_non_generator_network_refused(tmp_path, fake_nvidia_modules):
    fm = fake_nvidia_modules
    path = tmp_path / "disc.pkl"
    path.write_bytes(pickle.dumps({"G_ema": fm.Persistent("Discriminator", fm.state())}, protocol=4))
    _raises(path, CheckpointError, "Discriminator")


def _tf_net(fm, name, variables, components=None, **kwargs):
    return fm.TFNetwork({"version": 4, "name": name, "static_kwargs": kwargs, "components": components or {},
                         "build_module_src": "raise SystemExit('never run')", "build_func_name": "f",
                         "variables": variables})  # fmt: skip


def test_tf_conditional_refused(tmp_path, fake_nvidia_modules):
    fm = fake_nvidia_modules
    z = np.zeros
    mapping = _tf_net(fm, "G_mapping", [("LabelConcat/weight", z((10, 8), np.float32)), ("Dense0/weight", z((16, 8), np.float32))])
    synthesis = _tf_net(fm, "G_synthesis", [("4x4/Const/const", z((1, 8, 4, 4), np.float32))])
    gs = _tf_net(fm, "Gs", [("dlatent_avg", z(8, np.float32))], {"mapping": mapping, "synthesis": synthesis}, label_size=10)
    path = tmp_path / "cond-tf.pkl"
    path.write_bytes(pickle.dumps((gs, gs, gs), protocol=4))
    assert detect_format(path) == "tf-pkl"
    _raises(path, UnsupportedCheckpointError, "conditional", "LabelConcat")


def test_tf_unknown_variable(tmp_path, fake_nvidia_modules):
    fm = fake_nvidia_modules
    synthesis = _tf_net(fm, "G_synthesis", [("4x4/Const/const", np.zeros((1, 8, 4, 4), np.float32)),
                                            ("4x4/Mystery/weight", np.zeros(3, np.float32))])  # fmt: skip
    gs = _tf_net(fm, "Gs", [], {"synthesis": synthesis})
    path = tmp_path / "odd-tf.pkl"
    path.write_bytes(pickle.dumps((gs, gs, gs), protocol=4))
    _raises(path, CheckpointError, "synthesis/4x4/Mystery/weight")


def test_tf_tuple_of_wrong_length(tmp_path, fake_nvidia_modules):
    gs = _tf_net(fake_nvidia_modules, "Gs", [])
    path = tmp_path / "pair.pkl"
    path.write_bytes(pickle.dumps((gs, gs), protocol=4))
    _raises(path, CheckpointError, "(G, D, Gs)")
