"""Edit one region of a face: encode it, take a direction from a bank, apply it inside a box.

    python examples/edit_attributes.py                       # the astronaut smiles more (faces bank)
    python examples/edit_attributes.py --photo "" --seed 3   # a generated face
    python examples/edit_attributes.py --photo me.jpg --attr eyeglasses
    python examples/edit_attributes.py --network ffhq.pkl --bank bank.npz --attr smile --region 64,150,192,230

The face (a photo, or a generated face) is encoded into a grid of ``density x density`` latents.
The direction comes from --bank, by default the bank shipped for the network (``faces``: smile,
eyeglasses, bangs, age, gender, fitted per location from the face labeler). For a network
without one, a per-location direction is fitted here first from the gradient of --labeler
(default ``face:Smiling``) on generated samples and saved as ``bank.npz``. The edit adds
``strength x direction`` only to the cells inside --region (output pixels; cells partly inside
get their covered fraction); strength and region default to those the bank records for the
direction (the mouth for smile). Writes the face before | after and a strip of strengths.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from attributes import DirectionBank, get_labeler, strength_series
from attributes.bank import EMBEDDED_BANKS
from attributes.edits import edit
from attributes.gradient import fit_gradient
from spatial_latent import SpatialGenerator, box_mask, image_grid, load_generator, resolve_device, save_picture, to_uint8
from spatial_latent.cli import run_cli

from faces import add_face_args, encode_face  # examples/faces.py, beside this file

from spatial_latent.faces import ASTRONAUT


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Apply a masked attribute edit to an encoded face.")
    p.add_argument("--network", default="faces", help="checkpoint file or network name (default: faces, embedded; e.g. ffhq when downloaded)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    add_face_args(p)  # --photo, --aligned, --seed, --steps, --loss (see faces.py)
    p.set_defaults(photo=str(ASTRONAUT))  # a real photo by default: the astronaut (public domain, in the package)
    p.add_argument("--density", type=int, default=8, help="grid cells per image side (default: 8)")
    p.add_argument("--bank", type=Path, default=None, help="direction bank (.npz from python -m spatial_latent.fit); default: the one shipped for --network (faces), else fit one here")
    p.add_argument("--labeler", default="face:Smiling", help="what to fit for a network without a bank (default: face:Smiling)")
    p.add_argument("--samples", type=int, default=512, help="generated samples for that fit (default: 512)")
    p.add_argument("--attr", default=None, help="direction name in the bank (default: smile, else the bank's first)")
    p.add_argument("--strength", type=float, default=None, help="edit strength, in standard deviations of the fitted data (default: the bank's recorded strength for --attr, else 2)")
    p.add_argument("--region", default=None, metavar="X0,Y0,X1,Y1", help="box in output pixels, end-exclusive (default: the bank's recorded region for --attr, else the mouth area)")
    p.add_argument("--strip", type=float, nargs="+", default=None, help="strengths of the strip (default: -1, -0.5, 0, 0.5, 1, 1.5 x --strength)")
    p.add_argument("--outdir", type=Path, default=Path("out/edit_attributes"))
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    G = load_generator(args.network, device=device)
    R = G.img_resolution
    grid = encode_face(G, args, density=args.density)  # [1, num_ws, w_dim, density, density]

    args.outdir.mkdir(parents=True, exist_ok=True)
    if args.bank or args.network in EMBEDDED_BANKS:
        bank = DirectionBank.load(args.bank or args.network)
    else:  # one direction per cell, from the labeler's gradient on grids of the face's cells and density
        direction = fit_gradient(G, get_labeler(args.labeler), args.samples, cells=grid.cells, density=grid.density, progress=True)
        bank = DirectionBank.for_generator(G)
        bank.add(direction)
        print(f"wrote {bank.save(args.outdir / 'bank.npz')} ({direction.summary()})")
    direction = bank[args.attr or ("smile" if "smile" in bank else bank.names[0])]

    strength = args.strength if args.strength is not None else float(direction.meta.get("default_strength", 2.0))
    recorded = direction.meta.get("region")
    region = [float(v) for v in args.region.split(",")] if args.region else recorded or [0.25 * R, 0.6 * R, 0.75 * R, 0.9 * R]
    mask = box_mask(grid.cells, region, cell_size=R / grid.density)  # [density, density], 1 inside the box x0, y0, x1, y1
    edited = edit(grid, direction, strength, mask)
    strengths = args.strip or [m * strength for m in (-1, -0.5, 0, 0.5, 1, 1.5)]
    strip = strength_series(grid, direction, strengths, mask)  # [len(strip), num_ws, w_dim, density, density]

    sg = SpatialGenerator(G, padding="zero")
    with torch.no_grad():
        before_after = to_uint8(torch.cat([sg(grid), sg(edited)]))
        strip_pictures = to_uint8(sg(strip))
    pair = save_picture(image_grid(before_after, cols=2), args.outdir / "edited.png")
    row = save_picture(image_grid(strip_pictures, cols=len(strengths)), args.outdir / "strip.png")
    latent = edited.save(args.outdir / "edited.latent.safetensors")
    print(f"wrote {pair} (before | {direction.name} x {strength:g} in {region}), {row} and {latent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
