"""pytest configuration: makes ``tests/support.py`` importable from every test folder (the suite
runs with ``--import-mode=importlib``, which leaves ``sys.path`` alone) and registers markers."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
