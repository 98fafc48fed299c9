"""The package front door: the TYPE_CHECKING imports and the lazy table name the same things."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import spatial_latent

INIT = Path(spatial_latent.__file__)


def type_checking_imports() -> dict[str, str]:
    """``name -> module`` (relative, without the leading dot) of the ``if TYPE_CHECKING:`` branch."""
    tree = ast.parse(INIT.read_text())
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1, ast.dump(imp)
                out.update({a.name: imp.module for a in imp.names})
    return out


def test_type_checkers_see_every_lazy_name_from_the_same_module() -> None:
    assert type_checking_imports() == spatial_latent._LAZY


@pytest.mark.parametrize("name", sorted(spatial_latent._LAZY))
def test_lazy_names_come_from_their_modules(name: str) -> None:
    module = importlib.import_module(f"spatial_latent.{spatial_latent._LAZY[name]}")
    assert getattr(spatial_latent, name) is getattr(module, name)
