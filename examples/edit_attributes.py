"""Edit one region of a face: encode it, take a direction from a bank, apply it inside a box.

    python examples/edit_attributes.py --photo me.jpg --bank bank.npz --attr smile --region 64,150,192,230
    python examples/edit_attributes.py --seed 3     # generated face, direction fitted here

The face (a photo, or a generated face) is encoded into a grid of ``density x density`` latents.
Without --bank a per-cell direction is fitted first from generated samples labelled by
--labeler (default ``brightness-map``: measured from the pixels, no download) and saved as
``bank.npz``. The edit adds ``strength x direction`` only to the cells inside --region (output
pixels; cells partly inside get their covered fraction). Writes the face before | after and a
strip of strengths.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from attributes import AttributeModel, DirectionBank, get_labeler, strength_series
from attributes.edits import edit
from spatial_latent import SpatialGenerator, box_mask, image_grid, load_generator, resolve_device, save_picture, to_uint8
from spatial_latent.cli import run_cli

from faces import add_face_args, encode_face  # examples/faces.py, beside this file


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Apply a masked attribute edit to an encoded face.")
    p.add_argument("--network", default="faces", help="checkpoint file or network name (default: faces, embedded; e.g. ffhq when downloaded)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    add_face_args(p)  # --photo, --aligned, --seed, --steps, --loss (see faces.py)
    p.add_argument("--density", type=int, default=8, help="grid cells per image side (default: 8)")
    p.add_argument("--bank", type=Path, default=None, help="direction bank (.npz from python -m spatial_latent.fit); default: fit one here")
    p.add_argument("--labeler", default="brightness-map", help="what to fit without --bank (default: brightness-map)")
    p.add_argument("--samples", type=int, default=2000, help="generated samples for the fit (default: 2000)")
    p.add_argument("--attr", default=None, help="direction name in the bank (default: the fitted one)")
    p.add_argument("--strength", type=float, default=2.0, help="edit strength, in standard deviations (default: 2)")
    p.add_argument("--region", default=None, metavar="X0,Y0,X1,Y1", help="box in output pixels, end-exclusive (default: the mouth area)")
    p.add_argument("--strip", type=float, nargs="+", default=[-3, -2, -1, 0, 1, 2, 3], help="strengths of the strip")
    p.add_argument("--outdir", type=Path, default=Path("out/edit_attributes"))
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    G = load_generator(args.network, device=device)
    R = G.img_resolution
    grid = encode_face(G, args, density=args.density)  # [1, num_ws, w_dim, density, density]

    args.outdir.mkdir(parents=True, exist_ok=True)
    if args.bank:
        bank = DirectionBank.load(args.bank)
    else:  # one direction per cell, fitted on grids of the same cells and density as the face's
        direction = AttributeModel().fit_generated(G, get_labeler(args.labeler), args.samples, cells=grid.cells, density=grid.density, progress=True)
        bank = DirectionBank.for_generator(G)
        bank.add(direction)
        print(f"wrote {bank.save(args.outdir / 'bank.npz')} ({direction.summary()})")
    direction = bank[args.attr or bank.names[0]]

    region = [float(v) for v in args.region.split(",")] if args.region else [0.25 * R, 0.6 * R, 0.75 * R, 0.9 * R]
    mask = box_mask(grid.cells, region, cell_size=R / grid.density)  # [density, density], 1 inside the box x0, y0, x1, y1
    edited = edit(grid, direction, args.strength, mask)
    strip = strength_series(grid, direction, args.strip, mask)  # [len(strip), num_ws, w_dim, density, density]

    sg = SpatialGenerator(G, padding="zero")
    with torch.no_grad():
        before_after = to_uint8(torch.cat([sg(grid), sg(edited)]))
        strip_pictures = to_uint8(sg(strip))
    pair = save_picture(image_grid(before_after, cols=2), args.outdir / "edited.png")
    row = save_picture(image_grid(strip_pictures, cols=len(args.strip)), args.outdir / "strip.png")
    latent = edited.save(args.outdir / "edited.latent.safetensors")
    print(f"wrote {pair} (before | {direction.name} x {args.strength:g} in {region}), {row} and {latent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
