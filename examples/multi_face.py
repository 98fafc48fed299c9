"""Several faces in one picture: N latents composed on one latent grid, blended without seams.

    python examples/multi_face.py --seeds 0-5 --rows 2        # six generated faces, 2x3
    python examples/multi_face.py --photos a.jpg b.jpg --positions 0,0 2,5   # two encoded photos, placed

Each face's latent ``[num_ws, w_dim]`` covers a ``density x density`` block of cells (one face's
worth of pixels). ``compose_faces`` feathers the blocks into each other and into a background
latent, so no style edge shows, and the grid is rendered with the network's own zero padding,
which is what keeps every block face-shaped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from encoders import OptimizeConfig, encode
from spatial_latent import SpatialGenerator, compose_faces, load_generator, resolve_device, save_picture, to_uint8
from spatial_latent.cli import parse_seeds, run_cli

from faces import load_photo  # examples/faces.py, beside this file


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Compose several faces into one seamless picture.")
    p.add_argument("--network", default="faces", help="checkpoint file or network name (default: faces, embedded; e.g. ffhq when downloaded)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--seeds", default="0-5", help="generated faces, e.g. 0-5 or 1,7,9 (default: 0-5)")
    p.add_argument("--photos", nargs="+", default=[], metavar="IMAGE", help="encode these face photos instead")
    p.add_argument("--aligned", action="store_true", help="the photos are already FFHQ-aligned crops")
    p.add_argument("--steps", type=int, default=300, help="encoding steps per photo (default: 300)")
    p.add_argument("--loss", default="lpips+mse", choices=["lpips+mse", "mse"], help="encoding loss; mse needs no download")
    p.add_argument("--rows", type=int, default=None, help="faces in rows of a grid (default: as square as possible)")
    p.add_argument("--positions", nargs="+", default=None, metavar="ROW,COL", help="top-left cell of each face instead of a grid")
    p.add_argument("--density", type=int, default=4, help="cells per face side (default: 4)")
    p.add_argument("--feather", type=float, default=1.0, help="seam width in cells (default: 1)")
    p.add_argument("--trunc", type=float, default=0.7, help="truncation psi of generated faces (default: 0.7)")
    p.add_argument("--outdir", type=Path, default=Path("out/multi_face"))
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    G = load_generator(args.network, device=device)
    if args.photos:  # one W+ latent per photo: [N, num_ws, w_dim]
        targets = torch.cat([load_photo(f, G.img_resolution, args.aligned) for f in args.photos]).to(device)
        latents = encode(G, targets, OptimizeConfig(steps=args.steps, space="w+", loss=args.loss)).grid.data[..., 0, 0]
    else:  # seeds as in python -m spatial_latent.generate
        z = np.stack([np.random.RandomState(s).randn(G.z_dim) for s in parse_seeds(args.seeds)])
        latents = G.map(torch.from_numpy(z).float().to(device), truncation_psi=args.trunc)
    n = latents.shape[0]
    positions = [tuple(int(v) for v in pos.split(",")) for pos in args.positions] if args.positions else None
    shape = (args.rows, -(-n // args.rows)) if args.rows else None
    grid = compose_faces(latents.detach(), positions, grid_shape=shape, density=args.density, feather=args.feather)

    with torch.no_grad():
        img = SpatialGenerator(G, padding="zero")(grid)  # [1, 3, H, W]
    args.outdir.mkdir(parents=True, exist_ok=True)
    picture = save_picture(to_uint8(img)[0], args.outdir / "multi_face.png")
    latent = grid.save(args.outdir / "multi_face.latent.safetensors")
    print(f"wrote {picture} ({img.shape[3]}x{img.shape[2]}, {n} faces) and {latent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
