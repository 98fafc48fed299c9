"""Cost of per-location modulation: a constant LatentGrid vs the plain synthesis forward.

    python bench/spatial.py [--res 128] [--batch 4] [--device auto] [--out bench/results/spatial.json]

Both are timed in the same run on the same generator (best of N), so the ratio is meaningful on a
noisy machine. Target: ratio <= 1.5. Also checks that both outputs agree (max abs difference).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compare_times, machine, print_table, write_json  # noqa: E402

from spatial_latent.latent_grid import LatentGrid  # noqa: E402
from spatial_latent.loading import random_generator, resolve_device  # noqa: E402
from spatial_latent.spatial import SpatialGenerator  # noqa: E402


def ffhq_like_config(res: int, max_channels: int) -> dict:
    """StyleGAN2 config-f widths (min(32768 / r, 512)) scaled down by max_channels / 512."""
    scale = max_channels / 512
    chans = {}
    r = 4
    while r <= res:
        chans[r] = max(8, int(min(32768 // r, 512) * scale))
        r *= 2
    return dict(z_dim=max_channels, w_dim=max_channels, img_resolution=res, channels=chans, mapping_layers=8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--res", type=int, nargs="+", default=[64, 128])
    p.add_argument("--channels", type=int, default=256, help="widest layer (512 = FFHQ config-f)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="bench/results/spatial.json")
    args = p.parse_args()
    device = resolve_device(args.device)
    rows = []
    with torch.no_grad():
        for res in args.res:
            G = random_generator(ffhq_like_config(res, args.channels)).to(device)
            ws = G.map(torch.randn(args.batch, G.z_dim, device=device))
            grid = LatentGrid.from_w(ws, cells=(1, 1), density=1)
            sg = SpatialGenerator(G)
            t = compare_times({"plain": lambda: G.synthesis(ws), "grid": lambda: sg(grid)}, args.repeats, device=device)
            t_plain, t_grid = t["plain"], t["grid"]
            diff = (sg(grid) - G.synthesis(ws)).abs().max().item()
            rows.append(
                dict(res=res, batch=args.batch, plain_s=t_plain, grid_s=t_grid, ratio=t_grid / t_plain, max_abs_diff=diff)
            )
    print_table(rows, ["res", "batch", "plain_s", "grid_s", "ratio", "max_abs_diff"])
    path = write_json(args.out, {"benchmark": "spatial", "machine": machine(), "channels": args.channels, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
