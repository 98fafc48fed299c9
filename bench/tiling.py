"""Tiled rendering: throughput against one-shot, and peak memory against output size.

    python bench/tiling.py [--sizes 256 512] [--tiles 64 128 256] [--batch 4] [--out bench/results/tiling.json]

Throughput (megapixels per second) of a one-shot padding-free render, tiled with batch 1 and
tiled with batches, measured in alternation in one run on one generator, per canvas size and
tile size. Peak memory: process RSS (CPU) or peak CUDA memory of a whole tiled render to a file
(.tif and .dzi outputs), per output size, each in a fresh subprocess. Target: tiled-batched
>= 0.8x one-shot throughput; flat memory. Results are written to the JSON after each table, so
a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compare_times, machine, print_table, write_json  # noqa: E402

from spatial_latent.latents.field import LatentField  # noqa: E402
from spatial_latent.checkpoints.loading import random_generator, resolve_device  # noqa: E402
from spatial_latent.latents.window import Window  # noqa: E402
from spatial_latent.render.generator import SpatialGenerator  # noqa: E402
from spatial_latent.render.tiles import TileSampler  # noqa: E402

CONFIG = dict(z_dim=64, w_dim=64, img_resolution=64, channels={4: 64, 8: 64, 16: 64, 32: 32, 64: 16}, mapping_layers=2)

PEAK = """
import re, resource, sys, torch
from spatial_latent.checkpoints.loading import random_generator
from spatial_latent.latents.field import LatentField
from spatial_latent.render.generator import SpatialGenerator
from spatial_latent.render.tiles import TileSampler
cfg, side, tile, batch, out, dev = eval(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
G = random_generator(cfg).to(dev)
ts = TileSampler(SpatialGenerator(G, padding="none"), LatentField(G, seed=1), tile=tile, batch=batch)

def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

try:  # Linux: reset the RSS high-water mark, so that start-up peaks (imports) do not mask the render
    open("/proc/self/clear_refs", "w").write("5")
    base = status("VmRSS")
except OSError:
    base = None
ts.render_to_file(out, side, side)
assert __import__("os").path.exists(out)
if dev == "cuda":
    print(torch.cuda.max_memory_allocated(), 0)
elif base is not None:
    print(status("VmHWM"), status("VmHWM") - base)
else:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, -1)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="canvas sides for the throughput table")
    p.add_argument("--tiles", type=int, nargs="+", default=[64, 128, 256], help="tile sides for the throughput table")
    p.add_argument("--memory-sizes", type=int, nargs="+", default=[256, 1024], help="canvas sides for the memory table")
    p.add_argument("--memory-tile", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads here and in the memory subprocesses")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="bench/results/tiling.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    G = random_generator(CONFIG).to(dev)
    payload = {"benchmark": "tiling", "machine": machine(), "config": CONFIG, "batch": args.batch, "throughput": [], "memory": []}

    rows = payload["throughput"]
    with torch.no_grad():
        for side in args.sizes:
            for tile in args.tiles:
                if tile > side:
                    continue
                ts = TileSampler(SpatialGenerator(G, padding="none"), LatentField(G, seed=1), tile=tile, batch=args.batch)

                def tiled(batch: int, ts: TileSampler = ts, side: int = side) -> None:
                    pos = ts.positions(side, side)
                    for i in range(0, len(pos), batch):
                        ts.render_tiles(pos[i : i + batch])

                t = compare_times(
                    {
                        "one_shot": lambda ts=ts, side=side: ts.render_window(Window(0, 0, side, side)),
                        "tiled_b1": lambda: tiled(1),
                        "tiled_batched": lambda: tiled(args.batch),
                    },
                    args.repeats,
                    device=dev,
                )
                mp = side * side / 1e6
                row = {"size": f"{side}x{side}", "tile": tile, **{f"{k}_mpx_s": mp / v for k, v in t.items()}}
                row["batched_vs_one_shot"] = t["one_shot"] / t["tiled_batched"]
                rows.append(row)
                print_table(rows[-1:], ["size", "tile", "one_shot_mpx_s", "tiled_b1_mpx_s", "tiled_batched_mpx_s", "batched_vs_one_shot"])
    print()
    print_table(rows, ["size", "tile", "one_shot_mpx_s", "tiled_b1_mpx_s", "tiled_batched_mpx_s", "batched_vs_one_shot"])
    write_json(args.out, payload)

    mem = payload["memory"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("tif", "dzi"):
            for side in args.memory_sizes:
                cmd = [sys.executable, "-c", PEAK, repr(CONFIG), str(side), str(args.memory_tile), str(args.batch), f"{tmp}/s{side}.{kind}", dev.type]
                r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
                if r.returncode != 0:  # keep going: a table with the failure beats no table
                    mem.append({"output": kind, "size": f"{side}x{side}", "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"})
                    print(f"memory run {kind} {side} failed: {mem[-1]['error']}", file=sys.stderr)
                    continue
                peak, growth = (int(v) for v in r.stdout.split()[-2:])
                mem.append({"output": kind, "size": f"{side}x{side}", "peak_mib": peak / 2**20, "render_growth_mib": growth / 2**20 if growth >= 0 else None})
                print(f"{kind} {side}x{side}: peak {mem[-1]['peak_mib']:.1f} MiB", flush=True)
    for m in mem:
        first = next((x for x in mem if x["output"] == m["output"] and "peak_mib" in x), None)
        if "peak_mib" in m and first is not None:
            m["vs_smallest"] = m["peak_mib"] / first["peak_mib"]
    print_table(mem, ["output", "size", "peak_mib", "render_growth_mib", "vs_smallest"] + (["error"] if any("error" in m for m in mem) else []))
    path = write_json(args.out, payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
