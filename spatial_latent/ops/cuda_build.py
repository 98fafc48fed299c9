"""On-demand builds of the optional CUDA kernels, with a clean fallback to the reference ops.

Each op module holds one :class:`ExtensionLoader` and asks :func:`select_kernel` on every call
which path to take (the tensor's device and dtype, the op's own conditions, ``impl``). Nothing is
compiled at import: the first CUDA tensor that reaches an op calls :meth:`ExtensionLoader.get`, which builds the extension
with ninja through :func:`torch.utils.cpp_extension.load` (into torch's default extension
cache, so later processes only re-link when the sources changed). Any failure — no nvcc, a
compiler error, an import error — is reported once (a ``RuntimeWarning`` plus a log record)
and the process keeps using the reference implementation without trying again.

Set ``SPATIAL_LATENT_NO_CUDA_OPS=1`` to disable the kernels; it is read on every call, so it can
also be toggled at run time (the benchmark does this).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

logger = logging.getLogger(__name__)

ENV_DISABLE = "SPATIAL_LATENT_NO_CUDA_OPS"
SOURCE_DIR = Path(__file__).resolve().parent / "cuda"
DEFAULT_CUDA_CFLAGS: tuple[str, ...] = ("--use_fast_math", "-O3")
DEFAULT_CFLAGS: tuple[str, ...] = ("-O3",)
IMPLS: tuple[str, ...] = ("auto", "ref", "cuda")
KERNEL_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.float32, torch.float64)


def cuda_ops_disabled() -> bool:
    """True when ``SPATIAL_LATENT_NO_CUDA_OPS`` is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(ENV_DISABLE, "").strip().lower() in ("1", "true", "yes", "on")


class ExtensionLoader:
    """Builds one CUDA extension on first use and remembers the outcome for the process.

    ``get()`` returns the compiled module, or ``None`` when the kernels are disabled or the build
    failed; ``failure_reason`` then says why (for error messages of ``impl='cuda'``).
    """

    def __init__(self, name: str, sources: list[str], extra_cuda_cflags: list[str] | None = None) -> None:
        """``name``: extension (and cache folder) name; ``sources``: file names in ``ops/cuda/``."""
        self.name = name
        self.sources = [str(SOURCE_DIR / s) for s in sources]
        self.extra_cuda_cflags = list(DEFAULT_CUDA_CFLAGS if extra_cuda_cflags is None else extra_cuda_cflags)
        self._module: ModuleType | None = None
        self._failure: str | None = None
        self._attempts = 0
        self._lock = threading.Lock()

    @property
    def attempted(self) -> bool:
        """Whether a build has been tried in this process (successful or not)."""
        return self._attempts > 0

    @property
    def failure_reason(self) -> str | None:
        """Why ``get()`` returns ``None`` (disabled by the environment, or the build error)."""
        if cuda_ops_disabled():
            return f"disabled by {ENV_DISABLE}=1"
        return self._failure

    def get(self) -> ModuleType | None:
        """The compiled extension, building it on the first call; ``None`` if unavailable."""
        if cuda_ops_disabled():
            return None
        if self._module is not None or self._failure is not None:
            return self._module
        with self._lock:  # two threads reaching the first CUDA call must not build twice
            if self._module is None and self._failure is None:
                self._attempts += 1
                try:
                    self._module = self.build()
                except Exception as exc:  # noqa: BLE001 - any failure means: use the reference
                    self._failure = f"{type(exc).__name__}: {_first_line(exc)}"
                    msg = (
                        f"spatial_latent: could not build/load the CUDA extension {self.name!r} "
                        f"({self._failure}); the reference PyTorch implementation will be used. "
                        f"Set {ENV_DISABLE}=1 to skip the build."
                    )
                    logger.warning(msg)
                    logger.debug("full build error for %s", self.name, exc_info=exc)
                    warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return self._module

    def build(self) -> ModuleType:
        """Compile (or re-use from torch's extension cache) and import the extension. Raises on failure."""
        from torch.utils import cpp_extension  # imported lazily: it is slow and needs setuptools

        if cpp_extension.CUDA_HOME is None:
            raise RuntimeError("CUDA toolkit not found (set CUDA_HOME or put nvcc on PATH)")
        missing = [s for s in self.sources if not os.path.isfile(s)]
        if missing:
            raise FileNotFoundError(f"missing kernel sources {missing}")
        logger.info("building CUDA extension %s (first use; cached afterwards)", self.name)
        return cpp_extension.load(
            name=self.name,
            sources=self.sources,
            extra_cflags=list(DEFAULT_CFLAGS),
            extra_cuda_cflags=self.extra_cuda_cflags,
            extra_ldflags=_cudart_ldflags(cpp_extension.CUDA_HOME),
            verbose=logger.isEnabledFor(logging.DEBUG),
        )


def check_impl(op: str, impl: str) -> None:
    """Raise ``ValueError`` unless ``impl`` is ``'auto'``, ``'ref'`` or ``'cuda'``."""
    if impl not in IMPLS:
        raise ValueError(f"{op}: impl must be 'auto', 'ref' or 'cuda', got {impl!r}")


def select_kernel(
    op: str,
    loader: ExtensionLoader,
    x: torch.Tensor,
    impl: str,
    op_problem: Callable[[], str | None] | None = None,
) -> ModuleType | None:
    """The compiled extension if this call of ``op`` should use it, else ``None`` (use the reference).

    ``x`` is the op's main input (any shape); the kernel needs it on a CUDA device in
    float16/32/64. ``op_problem`` adds the op's own checks: it returns why the kernel cannot take
    these arguments, or ``None``. With ``impl='auto'`` any problem means the reference path; with
    ``impl='cuda'`` it is raised as a one-line ``RuntimeError``; ``impl='ref'`` never builds.
    """
    check_impl(op, impl)
    if impl == "ref":
        return None
    if not x.is_cuda:
        problem = f"x is on {x.device}, not on a CUDA device"
    elif x.dtype not in KERNEL_DTYPES:
        problem = f"dtype {x.dtype} is not supported by the kernel (float16/32/64 are)"
    else:
        problem = op_problem() if op_problem is not None else None
    if problem is None:
        # Only a CUDA tensor reaches this line: that is when the (one-time) build is attempted.
        mod = loader.get()
        if mod is not None:
            return mod
        problem = f"the CUDA extension is unavailable ({loader.failure_reason})"
    if impl == "cuda":
        raise RuntimeError(f"{op}(impl='cuda'): {problem}; use impl='auto' or impl='ref'")
    return None


def _cudart_ldflags(cuda_home: str) -> list[str]:
    """An extra ``-L`` for libcudart when torch's guess of CUDA_HOME has none.

    Without ``CUDA_HOME`` torch derives it from ``which nvcc``; a wrapper script such as
    ``/usr/local/bin/nvcc`` then yields ``/usr/local``, and linking ``-lcudart`` fails.
    """
    if any(os.path.isfile(os.path.join(cuda_home, d, "libcudart.so")) for d in ("lib64", "lib")):
        return []
    for d in ("/usr/local/cuda/lib64", "/usr/local/cuda/lib"):
        if os.path.isfile(os.path.join(d, "libcudart.so")):
            return [f"-L{d}"]
    return []


def _first_line(exc: BaseException) -> str:
    """A one-line summary of an exception (compiler logs can be thousands of lines)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return "no message"
    # Build errors bury the useful line ("error: ...", "cannot find -lcudart") in ninja's output;
    # skip the echoed compiler commands, which are long and may contain "-Werror".
    for ln in lines[1:]:
        if not ln.startswith(("[", "FAILED:")) and re.search(r"error|fatal|cannot find|undefined", ln, re.IGNORECASE):
            return f"{lines[0][:120]} ... {ln[:300]}"
    return lines[0][:500]
