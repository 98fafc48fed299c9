"""CPU checks of the CUDA-extension plumbing: lazy build, one warning, no retry, clean fallback."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from spatial_latent.ops import bias_act, bias_act_reference, make_filter, upfirdn2d, upfirdn2d_reference
from spatial_latent.ops import activation as bias_act_mod  # the modules defining the two ops
from spatial_latent.ops import fir as upfirdn2d_mod
from spatial_latent.ops.cuda_build import ENV_DISABLE, ExtensionLoader

REPO = Path(__file__).resolve().parents[2]


class FakeCuda(torch.Tensor):
    """A CPU tensor that claims to live on CUDA, so the dispatchers take their kernel branch."""

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True


class BuildFails:
    """Stand-in for ``ExtensionLoader.build`` that counts calls and raises like a broken nvcc."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self):
        self.calls += 1
        raise RuntimeError("Error building extension: nvcc fatal : Unsupported gpu architecture 'compute_999'")


@pytest.fixture
def failing_loaders(monkeypatch):
    """Fresh loaders in both op modules whose build raises; returns the two call counters."""
    monkeypatch.delenv(ENV_DISABLE, raising=False)
    counters = {}
    for mod, name in ((upfirdn2d_mod, "upfirdn2d"), (bias_act_mod, "bias_act")):
        loader = ExtensionLoader(f"test_{name}", [f"{name}.cpp", f"{name}.cu"])
        counters[name] = BuildFails()
        monkeypatch.setattr(loader, "build", counters[name])
        monkeypatch.setattr(mod, "_loader", loader)
    return counters


def _runtime_warnings(record) -> list[warnings.WarningMessage]:
    return [w for w in record if issubclass(w.category, RuntimeWarning)]


def test_loader_warns_once_and_never_retries(monkeypatch, caplog):
    monkeypatch.delenv(ENV_DISABLE, raising=False)
    loader = ExtensionLoader("test_ext", ["upfirdn2d.cpp", "upfirdn2d.cu"])
    build = BuildFails()
    monkeypatch.setattr(loader, "build", build)
    assert not loader.attempted
    with caplog.at_level(logging.WARNING, logger="spatial_latent.ops.cuda_build"):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")  # a second warning must not hide behind the filter
            assert loader.get() is None
            assert loader.get() is None
            assert loader.get() is None
    assert build.calls == 1
    ws = _runtime_warnings(record)
    assert len(ws) == 1
    text = str(ws[0].message)
    assert "Unsupported gpu architecture" in text and "reference" in text and "test_ext" in text
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert "Unsupported gpu architecture" in (loader.failure_reason or "")


def test_env_var_disables_without_building(monkeypatch):
    loader = ExtensionLoader("test_ext", ["upfirdn2d.cpp", "upfirdn2d.cu"])
    build = BuildFails()
    monkeypatch.setattr(loader, "build", build)
    monkeypatch.setenv(ENV_DISABLE, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loader.get() is None
    assert build.calls == 0 and not loader.attempted
    assert ENV_DISABLE in (loader.failure_reason or "")


def test_failed_build_falls_back_to_reference(failing_loaders):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    f = make_filter()
    fake = x.as_subclass(FakeCuda)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            y = upfirdn2d(fake, f, up=2, padding=(2, 1, 2, 1), gain=4)
            torch.testing.assert_close(y.as_subclass(torch.Tensor), upfirdn2d_reference(x, f, up=2, padding=(2, 1, 2, 1), gain=4), rtol=0, atol=0)
            b = torch.randn(3)
            z = bias_act(fake, b, act="lrelu", clamp=0.5)
            torch.testing.assert_close(z.as_subclass(torch.Tensor), bias_act_reference(x, b, act="lrelu", clamp=0.5), rtol=0, atol=0)
    assert failing_loaders["upfirdn2d"].calls == 1
    assert failing_loaders["bias_act"].calls == 1
    assert len(_runtime_warnings(record)) == 2  # one per extension, not one per call

    with pytest.raises(RuntimeError, match=r"impl='cuda'.*unavailable.*Unsupported gpu architecture"):
        upfirdn2d(fake, f, up=2, padding=(2, 1, 2, 1), impl="cuda")
    with pytest.raises(RuntimeError, match=r"impl='cuda'.*unavailable.*Unsupported gpu architecture"):
        bias_act(fake, b, act="lrelu", impl="cuda")
    assert failing_loaders["upfirdn2d"].calls == 1 and failing_loaders["bias_act"].calls == 1


def test_cpu_tensors_never_build(failing_loaders):
    x = torch.randn(1, 2, 6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        upfirdn2d(x, make_filter(), down=2, padding=1)
        bias_act(x, torch.zeros(2), act="relu")
    assert failing_loaders["upfirdn2d"].calls == 0 and failing_loaders["bias_act"].calls == 0
    with pytest.raises(RuntimeError, match=r"impl='cuda'.*not on a CUDA device"):
        upfirdn2d(x, make_filter(), impl="cuda")
    with pytest.raises(RuntimeError, match=r"impl='cuda'.*not on a CUDA device"):
        bias_act(x, impl="cuda")
    assert failing_loaders["upfirdn2d"].calls == 0 and failing_loaders["bias_act"].calls == 0


def test_impl_ref_never_builds(failing_loaders):
    fake = torch.randn(1, 2, 6, 6).as_subclass(FakeCuda)
    upfirdn2d(fake, make_filter(), down=2, padding=1, impl="ref")
    bias_act(fake, act="tanh", impl="ref")
    assert failing_loaders["upfirdn2d"].calls == 0 and failing_loaders["bias_act"].calls == 0


def test_op_specific_problems_skip_the_build(failing_loaders):
    """Arguments the kernel cannot take fall back (auto) or raise (cuda) before any build."""
    fake = torch.randn(1, 2, 6, 6).as_subclass(FakeCuda)
    wide = torch.ones(70, 70)  # 4900 taps: more than the kernel keeps in shared memory
    y = upfirdn2d(fake, wide, padding=40)
    assert tuple(y.shape) == (1, 2, 17, 17)
    with pytest.raises(RuntimeError, match=r"upfirdn2d\(impl='cuda'\): filter of shape \(70, 70\)"):
        upfirdn2d(fake, wide, padding=40, impl="cuda")
    with pytest.raises(RuntimeError, match=r"bias_act\(impl='cuda'\): bias of shape \(3,\)"):
        bias_act(fake, torch.zeros(3), impl="cuda")
    assert failing_loaders["upfirdn2d"].calls == 0 and failing_loaders["bias_act"].calls == 0
    with pytest.raises(ValueError, match="bias_act: impl must be"):
        bias_act(fake, impl="fast")


def test_op_modules_are_not_shadowed_by_functions():
    """``spatial_latent.ops.<module>`` is the module; the op functions keep their own names."""
    import spatial_latent.ops as ops

    assert ops.fir is upfirdn2d_mod and ops.activation is bias_act_mod
    assert ops.upfirdn2d is upfirdn2d_mod.upfirdn2d and ops.bias_act is bias_act_mod.bias_act
    assert ops.conv.conv2d_resample is ops.conv2d_resample and callable(ops.modconv.modulated_conv2d)


@pytest.mark.slow
def test_import_does_not_build():
    """A fresh interpreter imports every op (and runs CPU ops) without touching the compiler."""
    script = textwrap.dedent(
        """
        import torch
        import torch.utils.cpp_extension as ce
        def boom(*a, **k):
            raise AssertionError("cpp_extension.load called")
        ce.load = boom
        import spatial_latent.ops as ops
        u, b = ops.fir, ops.activation
        x = torch.randn(1, 2, 8, 8)
        ops.upsample2d(x, ops.make_filter())
        ops.bias_act(x, torch.zeros(2), act="lrelu")
        assert not u._loader.attempted and not b._loader.attempted
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**_clean_env(), "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("ok")


def _clean_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop(ENV_DISABLE, None)
    return env
