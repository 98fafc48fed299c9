"""The restricted unpickler: hostile pickles are refused and nothing in them ever runs.

Every payload would create a sentinel file if it were executed. Each test asserts the right
error AND that the sentinel does not exist. ``test_payloads_are_live`` is the positive
control: plain ``pickle.loads`` of the same bytes does create the sentinel (it only touches a
file under ``tmp_path``), which proves the refusals are meaningful.
"""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from spatial_latent.errors import CheckpointError, UnsafePickleError
from spatial_latent.checkpoints.readers import read_checkpoint
from spatial_latent.checkpoints.safe_pickle import (
    EasyDictStub,
    SafeUnpickler,
    TFNetworkStub,
    load_pickle_bytes,
    read_legacy_storage,
)

# ---- a tiny pickle assembler (protocol 3 opcodes), so payloads name any global we like ----


def G(module: str, name: str) -> bytes:  # GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def S(x: str) -> bytes:  # BINUNICODE
    b = x.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def B(x: bytes) -> bytes:  # BINBYTES
    return b"B" + struct.pack("<I", len(x)) + x


def I(n: int) -> bytes:  # BININT, or LONG1 beyond 32 bits
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def T(*items: bytes) -> bytes:  # MARK ... TUPLE
    return b"(" + b"".join(items) + b"t"


def L(*items: bytes) -> bytes:  # MARK ... LIST
    return b"(" + b"".join(items) + b"l"


def D(*pairs: tuple[bytes, bytes]) -> bytes:  # EMPTY_DICT MARK ... SETITEMS
    return b"}(" + b"".join(k + v for k, v in pairs) + b"u"


def R(fn: bytes, *args: bytes) -> bytes:  # REDUCE
    return fn + T(*args) + b"R"


NONE, TRUE, FALSE = b"N", b"\x88", b"\x89"


def P(body: bytes) -> bytes:
    return b"\x80\x03" + body + b"."


def persistent(class_name: str, state: bytes, module_src: str = "# none\n") -> bytes:
    meta = D((S("type"), S("class")), (S("version"), I(6)), (S("module_src"), S(module_src)),
             (S("class_name"), S(class_name)), (S("state"), state))  # fmt: skip
    return R(G("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)


def empty_module_state() -> bytes:
    return D((S("_parameters"), D()), (S("_buffers"), D()), (S("_modules"), D()))


# ---- payloads -------------------------------------------------------------------------------


def _payloads(sentinel) -> dict[str, bytes]:
    p = str(sentinel)
    touch_py = f"open({p!r}, 'w').close()"
    return {
        "os.system": P(R(G("os", "system"), S(f"touch '{p}'"))),
        "posix.system": P(R(G("posix", "system"), S(f"touch '{p}'"))),
        "builtins.eval": P(R(G("builtins", "eval"), S(touch_py))),
        "builtins.exec": P(R(G("builtins", "exec"), S(touch_py))),
        "subprocess.Popen": P(R(G("subprocess", "Popen"), L(S("touch"), S(p)))),
        "subprocess.check_call": P(R(G("subprocess", "check_call"), L(S("touch"), S(p)))),
        "builtins.getattr": P(R(R(G("builtins", "getattr"), R(G("builtins", "__import__"), S("os")), S("system")), S(f"touch '{p}'"))),
        "builtins.__import__": P(R(G("builtins", "__import__"), S("os"))),
        "copyreg._reconstructor": P(R(G("copyreg", "_reconstructor"), G("builtins", "object"), G("builtins", "object"), NONE)),
        "torch.load": P(R(G("torch", "load"), S(p))),
        "pickle.loads": P(R(G("pickle", "loads"), B(pickle.dumps(1)))),
        "numpy.load": P(R(G("numpy", "load"), S(p))),
        # a valid-looking snapshot with the payload tucked into a nested dict
        "nested-in-snapshot": P(D(
            (S("training_set_kwargs"), D((S("resolution"), I(64)))),
            (S("G_ema"), persistent("Generator", D(
                (S("_parameters"), D()), (S("_buffers"), D()), (S("_modules"), D()),
                (S("_init_kwargs"), D((S("extra"), D((S("x"), R(G("os", "system"), S(f"touch '{p}'"))))))),
            ))),
            (S("augment_pipe"), NONE),
        )),  # fmt: skip
    }


_LIVE = ["os.system", "posix.system", "builtins.eval", "builtins.exec", "subprocess.check_call", "builtins.getattr"]


class _Evil:
    """Pickles as a call of os.system (the stdlib writes it as the global posix.system)."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.mark.parametrize("kind", list(_payloads("x")))
def test_malicious_global_refused(tmp_path, kind):
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "evil.pkl"
    path.write_bytes(_payloads(sentinel)[kind])
    with pytest.raises(UnsafePickleError, match=r"refused to load global '[\w.]+': it is not on the allow-list") as e:
        read_checkpoint(path)
    assert not sentinel.exists()
    if kind != "nested-in-snapshot":
        assert f"'{kind}'" in str(e.value) or kind.split(".")[0] in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("kind", _LIVE)
def test_payloads_are_live(tmp_path, kind):
    """Positive control: the same bytes DO run under plain pickle (they only touch a file)."""
    sentinel = tmp_path / "sentinel"
    try:
        pickle.loads(_payloads(sentinel)[kind])
    except Exception:
        pass
    assert sentinel.exists()


def test_reduce_class_payload(tmp_path):
    sentinel = tmp_path / "sentinel"
    data = pickle.dumps({"G_ema": {"weights": [1, 2, _Evil(f"touch '{sentinel}'")]}}, protocol=4)
    path = tmp_path / "reduce.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        read_checkpoint(path)
    assert not sentinel.exists()


def test_module_src_is_never_executed(tmp_path, fixtures_dir, fake_nvidia_modules):
    """A snapshot whose embedded network source writes a file: read works, source never runs."""
    sentinel = tmp_path / "sentinel"
    src = f"open({str(sentinel)!r}, 'w').write('pwned')\n"
    ada = read_checkpoint(fixtures_dir / "nvidia_ada_64" / "network-snapshot.pkl")
    params = {k: torch.nn.Parameter(v.clone(), requires_grad=False) for k, v in ada.state_dict.items() if k != "mapping.w_avg"}
    buffers = {"mapping.w_avg": ada.state_dict["mapping.w_avg"].clone()}
    gen = fake_nvidia_modules.Persistent("Generator", fake_nvidia_modules.state(params, buffers), module_src=src)
    path = tmp_path / "src.pkl"
    path.write_bytes(pickle.dumps({"G_ema": gen}, protocol=4))
    ck = read_checkpoint(path)
    assert not sentinel.exists()
    assert all(torch.equal(ck.state_dict[k], v) for k, v in ada.state_dict.items())

    # and with nothing else in it, it is simply a snapshot without a usable generator
    empty = fake_nvidia_modules.Persistent("Generator", fake_nvidia_modules.state(), module_src=src)
    path.write_bytes(pickle.dumps({"G_ema": empty}, protocol=4))
    with pytest.raises(CheckpointError, match="mapping"):
        read_checkpoint(path)
    assert not sentinel.exists()


def test_real_fixture_with_hostile_module_src(tmp_path, fixtures_dir):
    """Swap the fixture's placeholder source for code that writes a file; load must succeed."""
    sentinel = tmp_path / "sentinel"
    data = (fixtures_dir / "nvidia_ada_64" / "network-snapshot.pkl").read_bytes()
    placeholder = "# Module source omitted from this fixture. A safe loader never executes it.\n".encode()
    old = b"X" + struct.pack("<I", len(placeholder)) + placeholder
    assert data.count(old) == 1
    hostile = f"open({str(sentinel)!r}, 'w').write('pwned')\nimport os; os.system('touch {sentinel}')\n".encode()
    path = tmp_path / "hostile.pkl"
    path.write_bytes(data.replace(old, b"X" + struct.pack("<I", len(hostile)) + hostile))
    ck = read_checkpoint(path)
    assert ck.config.img_resolution == 64
    assert not sentinel.exists()


def test_torch_zip_with_malicious_reduce(tmp_path):
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "x": _Evil(f"touch '{sentinel}'")}, path)
    with pytest.raises(CheckpointError, match=r"refused to load global '(os|posix)\.system' outside torch's weights-only allow-list") as e:
        read_checkpoint(path)
    assert isinstance(e.value, UnsafePickleError)
    assert "system" in str(e.value) and str(path) in str(e.value)
    assert not sentinel.exists()


def test_legacy_storage_blob_with_malicious_global(tmp_path):
    sentinel = tmp_path / "sentinel"
    header = pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2) + pickle.dumps({"little_endian": True}, 2)
    blob = header + P(R(G("os", "system"), S(f"touch '{sentinel}'")))
    with pytest.raises(UnsafePickleError, match="os.system"):
        read_legacy_storage(blob)
    path = tmp_path / "blob.pkl"
    path.write_bytes(P(D((S("G_ema"), R(G("torch.storage", "_load_from_bytes"), B(blob))))))
    with pytest.raises(UnsafePickleError, match="refused to load global 'os.system' inside a tensor storage blob"):
        read_checkpoint(path)
    assert not sentinel.exists()


# ---- abuse of the allowed callables ---------------------------------------------------------


def _rebuild(storage: bytes, offset=I(0), size=T(I(2)), stride=T(I(1))) -> bytes:
    return R(G("torch._utils", "_rebuild_tensor_v2"), storage, offset, size, stride, FALSE, R(G("collections", "OrderedDict")))


def _blob(numel: int, data: bytes) -> bytes:
    pid = T(S("storage"), G("torch", "FloatStorage"), S("0"), S("cpu"), I(numel), NONE)
    return (pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2) + pickle.dumps({"little_endian": True}, 2)
            + b"\x80\x02" + pid + b"Q." + pickle.dumps(["0"], 2) + struct.pack("<q", numel) + data)  # fmt: skip


@pytest.mark.parametrize(
    "body, error, match",
    [
        (_rebuild(S("not a storage")), UnsafePickleError, "storage"),
        (_rebuild(R(G("torch.storage", "_load_from_bytes"), B(_blob(2, b"\0" * 8))), offset=I(-1)), UnsafePickleError, "offset"),
        (_rebuild(R(G("torch.storage", "_load_from_bytes"), B(_blob(2, b"\0" * 8))), offset=I(1)), CheckpointError, "does not fit"),
        # zero strides: a 10^6-element view of a 2-element storage would be copied later
        (_rebuild(R(G("torch.storage", "_load_from_bytes"), B(_blob(2, b"\0" * 8))), size=T(I(1000), I(1000)), stride=T(I(0), I(0))),
         CheckpointError, "more elements than its storage"),
        (_rebuild(R(G("torch.storage", "_load_from_bytes"), B(_blob(2, b"\0" * 8))), size=T(I(2), I(2)), stride=T(I(1))),
         UnsafePickleError, "differ"),
        (R(G("torch.storage", "_load_from_bytes"), B(_blob(10**12, b"\0" * 8))), CheckpointError, "declared"),
        (R(G("torch.storage", "_load_from_bytes"), S("text")), UnsafePickleError, "not bytes"),
        (R(G("numpy", "dtype"), S("O"), FALSE, TRUE), UnsafePickleError, "dtype"),
        (R(G("numpy", "dtype"), S("V8"), FALSE, TRUE), UnsafePickleError, "dtype"),
        (R(G("numpy.core.multiarray", "_reconstruct"), G("dnnlib.util", "EasyDict"), T(I(0)), B(b"b")), UnsafePickleError, "ndarray"),
        (R(G("numpy.core.multiarray", "scalar"), S("f4"), B(b"\0" * 4)), UnsafePickleError, "scalar"),
        (R(G("torch._utils", "_rebuild_parameter"), S("x"), TRUE, R(G("collections", "OrderedDict"))), UnsafePickleError, "parameter"),
        (R(G("collections", "OrderedDict"), S("abc")), UnsafePickleError, "OrderedDict"),
        (R(G("torch_utils.persistence", "_reconstruct_persistent_obj"), S("meta")), UnsafePickleError, "not a dict"),
        # BUILD on an allowed callable, and on a stand-in class with slot state
        (R(G("collections", "OrderedDict")) + G("collections", "OrderedDict") + D((S("_fn"), I(1))) + b"b",
         UnsafePickleError, "state"),
        (G("dnnlib.util", "EasyDict") + T(NONE, D((S("__setstate__"), I(1)))) + b"b", CheckpointError, None),
        (G("numpy", "ndarray") + b")\x81", UnsafePickleError, "ndarray"),  # NEWOBJ on the marker
        (S("pid") + b"Q", UnsafePickleError, "persistent id"),  # BINPERSID
    ],
)
def test_allowed_callables_validate_arguments(body, error, match):
    with pytest.raises(error, match=match):
        load_pickle_bytes(P(body), source="crafted")


def test_stand_in_classes_cannot_be_modified():
    for cls in (EasyDictStub, TFNetworkStub):
        with pytest.raises(UnsafePickleError, match=f"pickle tried to set attribute '__setstate__' on stand-in class {cls.__name__}"):
            setattr(cls, "__setstate__", None)
    # after a hostile BUILD attempt the stand-in still behaves
    with pytest.raises(CheckpointError, match=r"^x: truncated or corrupt pickle \(TypeError: EasyDictStub.__setstate__"):
        load_pickle_bytes(P(G("dnnlib.util", "EasyDict") + T(NONE, D((S("__setstate__"), I(1)))) + b"b"), source="x")
    assert load_pickle_bytes(P(G("dnnlib.util", "EasyDict") + b")\x81" + D((S("a"), I(1)))[1:]), source="x") == {"a": 1}


def test_torch_zip_with_expanded_tensor(tmp_path):
    """A zero-stride tensor in a torch file is refused before any copy could blow up."""
    path = tmp_path / "expanded.pt"
    torch.save({"g_ema": {"input.input": torch.zeros(1).expand(1, 64, 4, 4)}}, path)
    with pytest.raises(CheckpointError, match="more elements than its storage"):
        read_checkpoint(path)


def test_huge_declared_length_is_refused_without_allocating():
    # BINBYTES8 claiming 1 TiB inside a tiny file
    data = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc."
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_pickle_bytes(data, source="huge")


def test_numpy_and_tf_stub_paths(fake_nvidia_modules):
    """Real numpy pickling (both numpy spellings) goes through the validated stand-ins."""
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    net = fake_nvidia_modules.TFNetwork({"version": 4, "variables": [("a", arr), ("b", np.asfortranarray(arr)), ("s", np.float32(0.5))],
                                         "build_module_src": "raise SystemExit"})  # fmt: skip
    obj = load_pickle_bytes(pickle.dumps((net,), protocol=4), source="x")
    stub = obj[0]
    assert isinstance(stub, TFNetworkStub) and "build_module_src" not in stub.state
    (_, a), (_, b), (_, s) = stub.state["variables"]
    np.testing.assert_array_equal(a.array, arr)
    np.testing.assert_array_equal(b.array, arr)
    assert s == 0.5 and isinstance(s, float)


def test_safe_unpickler_find_class_names_refused_global():
    u = SafeUnpickler(io.BytesIO(b""), source="here")
    with pytest.raises(UnsafePickleError, match="here: refused to load global 'os.system'"):
        u.find_class("os", "system")


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8, torch.bool]
)
def test_legacy_storage_reader_agrees_with_torch(dtype):
    """read_legacy_storage (size-checked, no torch unpickling) == torch.load(weights_only=True)."""
    import warnings

    t = (torch.arange(37) % 5 - 2).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation
        fn, (blob,) = t.storage().__reduce__()  # exactly what a pickled tensor stores
        ref = torch.load(io.BytesIO(blob), weights_only=True)
        ref_flat = torch.tensor(ref.tolist(), dtype=dtype)
    assert fn.__name__ == "_load_from_bytes"
    got = read_legacy_storage(blob).flat
    assert got.dtype == dtype and torch.equal(got, t) and torch.equal(got, ref_flat)
