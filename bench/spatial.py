"""Cost of per-location modulation: SpatialGenerator against the plain synthesis forward.

    python bench/spatial.py [--res 64 128] [--batch 4] [--threads 1] [--device auto] [--out bench/results/spatial.json]

Three cases per resolution, each against ``G.synthesis`` on the same number of pixels:

* ``const``: a one-cell grid per image (the W+ latents themselves; outputs must agree);
* ``8x8``: 8x8 cells per image at density 8, every cell different (what encoders produce);
* ``2x3 faces``: six latents composed on one 2x3 canvas at density 4, against six plain images.

Times are the best of ``--repeats``, measured in alternation in one process, as CPU time of the
process (robust on a shared machine) and as wall time. Target: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402

from spatial_latent.latents.compose import compose_faces  # noqa: E402
from spatial_latent.latents.grid import LatentGrid  # noqa: E402
from spatial_latent.checkpoints.loading import random_generator, resolve_device  # noqa: E402
from spatial_latent.render.generator import SpatialGenerator  # noqa: E402


def ffhq_like_config(res: int, max_channels: int) -> dict:
    """StyleGAN2 config-f widths (min(32768 / r, 512)) scaled down by max_channels / 512."""
    scale = max_channels / 512
    chans = {}
    r = 4
    while r <= res:
        chans[r] = max(8, int(min(32768 // r, 512) * scale))
        r *= 2
    return dict(z_dim=max_channels, w_dim=max_channels, img_resolution=res, channels=chans, mapping_layers=8)


def best_times(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, tuple[float, float]]:
    """Best (CPU seconds, wall seconds) of each function over ``repeats`` alternating rounds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        fn()
    sync()
    best = {k: (float("inf"), float("inf")) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            sync()
            c, w = time.process_time() - c, time.perf_counter() - w
            best[k] = (min(best[k][0], c), min(best[k][1], w))
    return best


def cases(G: Any, batch: int, device: torch.device) -> list[tuple[str, torch.Tensor, LatentGrid]]:
    """(name, ws for the plain forward [N, num_ws, C], grid with the same pixel count)."""
    gen = torch.Generator().manual_seed(0)
    ws = G.map(torch.randn(batch, G.z_dim, generator=gen).to(device))
    spread = ws.std()
    cells = LatentGrid.from_w(ws, cells=(8, 8), density=8)
    cells = cells.replace(cells.data + 0.3 * spread * torch.randn(cells.data.shape, generator=gen).to(device))
    six = G.map(torch.randn(6, G.z_dim, generator=gen).to(device), truncation_psi=0.7)
    return [
        ("const", ws, LatentGrid.from_w(ws, cells=(1, 1), density=1)),
        ("8x8", ws, cells),
        ("2x3 faces", six, compose_faces(six, grid_shape=(2, 3), density=4)),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--res", type=int, nargs="+", default=[64, 128])
    p.add_argument("--channels", type=int, default=256, help="widest layer (512 = FFHQ config-f)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier on a shared machine)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="bench/results/spatial.json")
    args = p.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    rows = []
    with torch.no_grad():
        for res in args.res:
            G = random_generator(ffhq_like_config(res, args.channels)).to(device)
            sg = SpatialGenerator(G)
            for name, ws, grid in cases(G, args.batch, device):
                t = best_times({"plain": lambda: G.synthesis(ws), "grid": lambda: sg(grid)}, args.repeats, device)
                diff = (sg(grid) - G.synthesis(ws)).abs().max().item() if name == "const" else None
                rows.append(
                    dict(
                        res=res,
                        case=name,
                        images=ws.shape[0],
                        plain_cpu_s=t["plain"][0],
                        grid_cpu_s=t["grid"][0],
                        ratio_cpu=t["grid"][0] / t["plain"][0],
                        ratio_wall=t["grid"][1] / t["plain"][1],
                        max_abs_diff=diff if diff is not None else "-",
                    )
                )
                print_table(rows[-1:], list(rows[-1]))
    print()
    print_table(rows, ["res", "case", "images", "plain_cpu_s", "grid_cpu_s", "ratio_cpu", "ratio_wall", "max_abs_diff"])
    info = dict(machine(), torch_threads=torch.get_num_threads())
    path = write_json(args.out, {"benchmark": "spatial", "machine": info, "channels": args.channels, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
