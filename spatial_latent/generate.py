"""Render images from a StyleGAN2 checkpoint, one PNG per seed plus a contact sheet.

    python -m spatial_latent.generate --network ffhq --seeds 0-7 --trunc 0.7 --outdir out
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from .cli import add_device_arg, add_network_arg, add_noise_mode_arg, parse_seeds, run_cli, with_exit_status
from .errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.generate",
        description="Render one PNG per seed (z drawn with numpy's RandomState(seed), as NVIDIA's "
        "tools do) plus grid.png, so you can see that a checkpoint loads and works.",
        epilog=with_exit_status("Existing pictures are not replaced unless --overwrite is given."),
    )
    add_network_arg(p, required=False)
    p.add_argument("--seeds", default="0-7", help="seeds, e.g. 0-7 or 1,5,9 (default: 0-7)")
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI", help="truncation psi toward the average W; 1 = none, 0.7 is a common choice (default: 1)")
    p.add_argument("--class", dest="class_idx", type=int, default=None, help="class index for conditional networks")
    add_noise_mode_arg(p, "const", "per-layer noise: the network's stored maps, fresh random, or off")
    p.add_argument("--outdir", type=Path, default=Path("out"), help="output folder, created if needed (default: out)")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (default: 8)")
    p.add_argument("--overwrite", action="store_true", help="replace pictures that already exist in --outdir")
    add_device_arg(p)
    p.add_argument("--list-networks", action="store_true", help="list the network names (built-in, embedded and downloadable) and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_networks:
        from .checkpoints.hub import list_networks
        from .checkpoints.loading import builtin_networks

        for name, description in builtin_networks():
            print(f"{name:18s} built-in  {description}")
        for net in list_networks():
            print(f"{net.name:18s} {net.resolution:5d}px  {net.description}")
        return 0
    if args.network is None:
        parser.error("--network is required")
    seeds = parse_seeds(args.seeds)
    if args.batch < 1:
        raise InputError("--batch must be >= 1")
    if not args.overwrite:
        existing = [p for p in (*(args.outdir / f"seed{s:04d}.png" for s in seeds), args.outdir / "grid.png") if p.exists()]
        if existing:
            raise InputError(f"{existing[0]} exists ({len(existing)} of the outputs do); pass --overwrite to replace them or pick another --outdir")

    import numpy as np
    import torch
    from tqdm import tqdm

    from .io.pictures import image_grid, save_picture, to_uint8
    from .checkpoints.loading import load_generator

    G = load_generator(args.network, device=args.device)
    device = G.device
    c = None
    if G.c_dim > 0:
        if args.class_idx is None or not 0 <= args.class_idx < G.c_dim:
            raise InputError(f"this network is conditional: pass --class in [0, {G.c_dim - 1}]")
        c = torch.zeros([1, G.c_dim], device=device)
        c[0, args.class_idx] = 1
    elif args.class_idx is not None:
        raise InputError("--class given, but this network is not conditional")

    args.outdir.mkdir(parents=True, exist_ok=True)
    pictures = []
    with torch.no_grad():
        for i in tqdm(range(0, len(seeds), args.batch), desc="generating", unit="batch"):
            chunk = seeds[i : i + args.batch]
            z = np.stack([np.random.RandomState(s).randn(G.z_dim) for s in chunk])
            z = torch.from_numpy(z).float().to(device)
            cc = c.repeat(len(chunk), 1) if c is not None else None
            img = G(z, cc, truncation_psi=args.trunc, noise_mode=args.noise_mode)
            for s, pic in zip(chunk, to_uint8(img)):
                save_picture(pic, args.outdir / f"seed{s:04d}.png")
                pictures.append(pic)
    save_picture(image_grid(np.stack(pictures)), args.outdir / "grid.png")
    print(f"wrote {len(seeds)} images and grid.png to {args.outdir} (network {args.network}, weights fingerprint {G.fingerprint()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
