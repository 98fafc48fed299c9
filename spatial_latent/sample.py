"""Grow a latent field into an arbitrarily large seamless image, tile by tile.

    python -m spatial_latent.sample --network demo --size 16384x4096 --seed 1 --out scene.png
    torchrun --nproc_per_node 4 -m spatial_latent.sample ... --out scene.tif   # several GPUs/processes
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Sequence

from .cli import add_device_arg, add_network_arg, run_cli
from .errors import InputError


def parse_size(text: str) -> tuple[int, int]:
    """``'16384x4096'`` (width x height) -> ``(height, width)``."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise InputError(f"bad --size {text!r}; use WIDTHxHEIGHT, e.g. 16384x4096")
    width, height = int(m.group(1)), int(m.group(2))
    if width < 1 or height < 1:
        raise InputError(f"--size must be positive, got {text!r}")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.sample",
        description="Render a seamless image of any size from a spatially correlated latent field, "
        "tile by tile with a padding-free generator: memory stays flat as the image grows. "
        "Finished tiles are kept beside the output so an interrupted run can --resume.",
    )
    add_network_arg(p)
    p.add_argument("--size", required=True, metavar="WxH", help="output size in pixels, width x height (e.g. 16384x4096)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent field and the noise (default: 0)")
    p.add_argument("--out", type=Path, required=True, help="output file: .png/.jpg (assembled in memory) or .tif (tiled BigTIFF, any size)")
    p.add_argument("--tile", type=int, default=None, help="tile side in pixels, a multiple of R/4 (default: 2x the generator resolution)")
    p.add_argument("--batch", type=int, default=4, help="tiles per forward pass (default: 4)")
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI", help="truncation psi of the field's latents (default: 1)")
    p.add_argument("--correlation", type=float, default=2.0, metavar="CELLS", help="spatial correlation length of the latent field, in cells; 0 = independent cells (default: 2)")
    p.add_argument("--density", type=int, default=4, help="latent cells per generator-resolution span (default: 4)")
    p.add_argument("--global-mix", type=float, default=0.0, help="pull every cell toward one global latent by this fraction, for a consistent palette (default: 0)")
    p.add_argument("--noise-mode", choices=["random", "const", "none"], default="random", help="per-pixel noise: seeded by position, the network's stored maps tiled, or off (default: random)")
    p.add_argument("--class", dest="class_idx", type=int, default=None, help="class index for conditional networks")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its finished tiles")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (and any unfinished run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    height, width = parse_size(args.size)

    import torch

    from .field import LatentField
    from .loading import load_generator, resolve_device
    from .spatial import SpatialGenerator
    from .tiling import TileSampler, check_size

    check_size(height, width)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    barrier = None
    device = resolve_device(args.device)
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        barrier = dist.barrier
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    try:
        G = load_generator(args.network, device=device)
        tile = args.tile or 2 * G.img_resolution
        field = LatentField(G, seed=args.seed, correlation=args.correlation, truncation_psi=args.trunc, density=args.density, global_mix=args.global_mix, class_idx=args.class_idx)
        sampler = TileSampler(SpatialGenerator(G, padding="none"), field, tile=tile, batch=args.batch, noise_mode=args.noise_mode)
        bar = None
        if rank == 0 and not args.no_progress:
            from tqdm import tqdm

            n = len(sampler.positions(height, width))
            bar = tqdm(total=-(-n // world), unit="tile", desc="tiles" + (f" (rank 0 of {world})" if world > 1 else ""))

        def progress(done: int, total: int, mps: float) -> None:
            if bar is not None:
                bar.n = done
                bar.set_postfix_str(f"{mps:.2f} Mpx/s")
                bar.refresh()

        path = sampler.render_to_file(
            args.out, height, width, resume=args.resume, overwrite=args.overwrite, manifest_extra={"network": str(args.network), "class": args.class_idx},
            on_progress=progress, rank=rank, world_size=world, barrier=barrier,
        )
        if bar is not None:
            bar.close()
        if path is not None:
            print(f"wrote {path} ({width}x{height})")
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
