"""Lazy package exports: a name is imported from its submodule on first access.

Packages use it so that ``import spatial_latent`` and ``python -m <package>.<cli> --help`` do no
work (torch-heavy submodules, kernels and downloads stay untouched until a name is used)::

    __getattr__, __dir__ = lazy_exports(__name__, {"Generator": "networks"})
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Callable


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    ``table`` maps an exported name to the module that defines it: a submodule relative to
    ``package`` (``"latents.grid"``), or an absolute module name when its first part is not a
    subpackage of ``package`` (``"spatial_latent.latents.masks"`` in another package's table).
    The first access imports the module and caches the value in the package's namespace, so
    later accesses are plain attribute lookups.
    """

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = table[name]
        relative = importlib.util.find_spec(f"{package}.{module.partition('.')[0]}") is not None
        value = getattr(importlib.import_module(f".{module}" if relative else module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
