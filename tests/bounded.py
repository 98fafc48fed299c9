"""Run pieces of code in a child process with capped memory, and measure what each used.

Tests of hostile files use it: the child imports what it needs once, then caps its address space
at what it already has plus ``cap_mb`` (``RLIMIT_AS``), so a reader that tries to allocate
gigabytes fails with ``MemoryError`` instead of swapping the machine. Each case then runs with
its peak resident memory reset (``/proc/self/clear_refs``), and reports how far that peak rose
above the resident memory before it (MB) and how long it took (s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PRELUDE = """
import json, re, resource, time
def _status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
_cap = _status("VmSize") + {cap_mb} * 2**20
resource.setrlimit(resource.RLIMIT_AS, (_cap, _cap))
def _run(name, fn):
    open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
    rss0 = _status("VmRSS")
    out = {{"type": None, "error": None, "mro": []}}
    t0 = time.perf_counter()
    try:
        fn()
    except BaseException as e:
        out.update(type=type(e).__name__, error=str(e), mro=[c.__name__ for c in type(e).__mro__])
    out["seconds"] = time.perf_counter() - t0
    out["peak_growth_mb"] = (_status("VmHWM") - rss0) / 2**20
    print("@@RESULT@@" + json.dumps([name, out]), flush=True)
"""


def run_cases(cases: dict[str, str], *, setup: str = "", cap_mb: int = 512, timeout: float = 600) -> dict[str, dict]:
    """Run each body of ``cases`` (``name -> code``) in one fresh interpreter after ``setup``.

    Returns ``name -> {"type", "error", "mro", "seconds", "peak_growth_mb"}``: the exception the
    body raised (``type`` None when none), the seconds it took and how many MB the peak resident
    memory rose above the level before it. Every case runs under an address-space cap of the
    memory in use after ``setup`` plus ``cap_mb``.
    """
    parts = [textwrap.dedent(setup), _PRELUDE.format(cap_mb=cap_mb)]
    for i, (name, body) in enumerate(cases.items()):
        parts.append(f"def _case{i}():\n" + textwrap.indent(textwrap.dedent(body), "    ") + f"\n_run({name!r}, _case{i})\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", "\n".join(parts)], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            name, out = json.loads(line[len("@@RESULT@@") :])
            results[name] = out
    missing = [n for n in cases if n not in results]
    if missing:
        raise AssertionError(f"the child process died before {missing} (status {proc.returncode}): {proc.stderr[-3000:]}")
    return results
