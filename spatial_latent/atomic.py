"""Atomic file writes: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


_TEMP_NAME = re.compile(r"\..+\.tmp-(\d+)(?:\.[A-Za-z0-9]+)?")
_scanned: set[str] = set()  # folders already cleaned by this process


def clean_stale_temps(path: str | os.PathLike, *, again: bool = False) -> list[Path]:
    """Remove the temporary files and folders that killed runs left beside ``path``.

    Temporaries are named ``.STEM.tmp-PID.SUFFIX`` (:func:`atomic_write`) or ``.NAME.tmp-PID``
    (folders written whole, e.g. Deep Zoom pyramids); those in ``path``'s folder whose process
    ``PID`` is no longer running are removed, each with a warning in the log. A folder is
    scanned once per process (``again`` scans it anyway), so writing many tiles stays cheap.
    Returns what was removed.
    """
    folder = Path(path).parent
    key = os.path.abspath(folder)
    if key in _scanned and not again:
        return []
    _scanned.add(key)
    removed: list[Path] = []
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp-" in p.name]
    except OSError:
        return removed
    for p in candidates:
        m = _TEMP_NAME.fullmatch(p.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError as exc:
            log.warning("could not remove %s, left by a killed run (process %s): %s", p, m.group(1), exc)
            continue
        log.warning("removed %s, left by a killed run (process %s)", p, m.group(1))
        removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same folder, same suffix); on success it is
    renamed to ``path`` (atomic on one file system), on any failure it is removed.

    Temporaries of earlier runs over the same ``path`` that were killed (their process is gone)
    are removed first (:func:`clean_stale_temps`), with a log line."""
    path = Path(path)
    clean_stale_temps(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if tmp.is_file():
            # Some writers (safetensors) create private 0600 files; give the result the
            # permissions a plain open() would have.
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, atomically (values JSON cannot hold become strings)."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))
    return Path(path)
