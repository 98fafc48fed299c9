"""Tiled rendering: throughput against one-shot, and peak memory against output size.

    python bench/tiling.py [--sizes 128 256] [--tile 64] [--batch 4] [--out bench/results/tiling.json]

Throughput (megapixels per second) of a one-shot padding-free render, tiled with batch 1 and
tiled with batches, measured in alternation in one run on one generator. Peak memory: process
RSS (CPU) or peak CUDA memory of a tiled render to a .tif, per output size, each in a fresh
subprocess. Target: tiled-batched >= 0.8x one-shot throughput; flat memory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compare_times, machine, print_table, write_json  # noqa: E402

from spatial_latent.field import LatentField  # noqa: E402
from spatial_latent.loading import random_generator, resolve_device  # noqa: E402
from spatial_latent.spatial import SpatialGenerator, Window  # noqa: E402
from spatial_latent.tiling import TileSampler  # noqa: E402

CONFIG = dict(z_dim=64, w_dim=64, img_resolution=64, channels={4: 64, 8: 64, 16: 64, 32: 32, 64: 16}, mapping_layers=2)

PEAK = """
import resource, sys, torch
from spatial_latent.loading import random_generator
from spatial_latent.field import LatentField
from spatial_latent.spatial import SpatialGenerator
from spatial_latent.tiling import TileSampler
cfg, side, tile, batch, out, dev = eval(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
G = random_generator(cfg).to(dev)
TileSampler(SpatialGenerator(G, padding="none"), LatentField(G, seed=1), tile=tile, batch=batch).render_to_file(out, side, side)
peak = torch.cuda.max_memory_allocated() if dev == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--memory-sizes", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="bench/results/tiling.json")
    args = p.parse_args()
    dev = resolve_device(args.device)
    G = random_generator(CONFIG).to(dev)
    ts = TileSampler(SpatialGenerator(G, padding="none"), LatentField(G, seed=1), tile=args.tile, batch=args.batch)

    def tiled(side: int, batch: int) -> None:
        pos = ts.positions(side, side)
        for i in range(0, len(pos), batch):
            ts.render_tiles(pos[i : i + batch])

    rows = []
    with torch.no_grad():
        for side in args.sizes:
            t = compare_times(
                {
                    "one_shot": lambda: ts.render_window(Window(0, side, 0, side)),
                    "tiled_b1": lambda: tiled(side, 1),
                    "tiled_batched": lambda: tiled(side, args.batch),
                },
                args.repeats,
                device=dev,
            )
            mp = side * side / 1e6
            row = {"size": f"{side}x{side}", **{f"{k}_mpx_s": mp / v for k, v in t.items()}}
            row["batched_vs_one_shot"] = t["one_shot"] / t["tiled_batched"]
            rows.append(row)
    print_table(rows, ["size", "one_shot_mpx_s", "tiled_b1_mpx_s", "tiled_batched_mpx_s", "batched_vs_one_shot"])

    mem = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.memory_sizes:
            r = subprocess.run(
                [sys.executable, "-c", PEAK, repr(CONFIG), str(side), str(args.tile), str(args.batch), f"{tmp}/s{side}.tif", dev.type],
                capture_output=True, text=True, check=True,
            )
            mem.append({"size": f"{side}x{side}", "peak_mib": int(r.stdout.split()[-1]) / 2**20})
    for m in mem:
        m["vs_smallest"] = m["peak_mib"] / mem[0]["peak_mib"]
    print_table(mem, ["size", "peak_mib", "vs_smallest"])
    path = write_json(args.out, {"benchmark": "tiling", "machine": machine(), "config": CONFIG, "tile": args.tile, "batch": args.batch, "throughput": rows, "memory": mem})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
