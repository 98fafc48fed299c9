"""Fixtures for the checkpoint-reader tests (spatial_latent.checkpoints.readers)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "stylegan2"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``<repo>/../shared/fixtures/stylegan2``; tests needing it are skipped when it is absent."""
    if not (FIXTURES / "nvidia_ada_64" / "meta.json").is_file():
        pytest.skip(f"StyleGAN2 checkpoint fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture
def fake_nvidia_modules(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Register throw-away ``torch_utils.persistence`` / ``dnnlib`` modules so that the stdlib
    pickler can write pickles naming the same globals as real NVIDIA files.

    Returns a namespace with ``Persistent(class_name, state, module_src)`` (pickles as a
    ``_reconstruct_persistent_obj`` REDUCE), ``EasyDict``, ``TFNetwork(state)`` and
    ``state(params, buffers, modules, **attrs)`` (a module state dict, see :func:`module_state`).
    Nothing here is ever imported by the code under test.
    """

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
        raise AssertionError("the real persistence loader must never be called")

    class EasyDict(dict):
        pass

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    class Persistent:
        def __init__(self, class_name, state, module_src="# placeholder\n"):
            self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

        def __reduce__(self):
            return (_reconstruct_persistent_obj, (self.meta,))

    mods = {}
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "dnnlib.tflib", "dnnlib.tflib.network"):
        mods[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, mods[name])
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    mods["dnnlib.util"].EasyDict = EasyDict
    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mods["dnnlib.tflib.network"].Network = Network
    return types.SimpleNamespace(Persistent=Persistent, EasyDict=EasyDict, TFNetwork=Network, state=module_state)


def module_state(params=None, buffers=None, modules=None, **attrs):
    """A minimal ``nn.Module.__dict__``-like state as NVIDIA persistence pickles it."""
    state = {
        "training": False,
        "_parameters": dict(params or {}),
        "_buffers": dict(buffers or {}),
        "_non_persistent_buffers_set": set(),
        "_modules": dict(modules or {}),
    }
    state.update(attrs)
    return state
