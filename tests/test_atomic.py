"""Atomic writes leave no litter: temporaries of killed runs are removed at the next write to the
same folder, with a log line (issue 15)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from spatial_latent.atomic import atomic_write, clean_stale_temps

REPO = Path(__file__).resolve().parents[1]


def _killed_writer(target: Path) -> int:
    """Start a process that is writing ``target`` through atomic_write, kill it, return its pid."""
    code = (
        "import sys, time\nfrom spatial_latent.atomic import atomic_write\n"
        f"with atomic_write({str(target)!r}) as t:\n"
        "    t.write_bytes(b'half' * 1000)\n    print('ready', flush=True)\n    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.pid


def test_killed_run_temp_is_removed_at_next_write(tmp_path, caplog):
    target = tmp_path / "x.safetensors"
    pid = _killed_writer(target)
    stale = tmp_path / f".x.tmp-{pid}.safetensors"
    assert stale.is_file() and not target.exists()  # what a killed run leaves
    alive = tmp_path / f".y.tmp-{os.getppid()}.tif"  # a running process's temporary: kept
    alive.write_bytes(b"busy")
    dead_dir = tmp_path / f".scene.dzi.tmp-{pid}"  # a Deep Zoom folder of the killed run
    (dead_dir / "scene_files").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="spatial_latent.atomic"):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, target.name])
    assert f"removed {stale}, left by a killed run (process {pid})" in caplog.text
    assert f"removed {dead_dir}, left by a killed run (process {pid})" in caplog.text


def test_clean_scans_a_folder_once_per_process(tmp_path):
    assert clean_stale_temps(tmp_path / "a.png") == []
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a.tmp-{int(p.stdout)}.png"
    stale.write_bytes(b"x")
    assert clean_stale_temps(tmp_path / "a.png") == []  # already scanned: writing many tiles stays cheap
    assert clean_stale_temps(tmp_path / "a.png", again=True) == [stale] and not stale.exists()
