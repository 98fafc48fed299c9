"""A face with a third eye: copy the latent cells over one eye onto the forehead.

    python examples/three_eyes.py --seed 3        # a generated face
    python examples/three_eyes.py --photo me.jpg                 # your photo (FFHQ-aligned first)

A face drawn from one latent has the same latent in every cell: its eyes come from the network's
sense of position, not from the cells. So the face is first *encoded* into a grid of
``density x density`` latents (a few hundred optimization steps); in that grid the cells over an
eye hold what draws the eye, and ``copy_cells`` pastes them elsewhere, feathered over a cell. The network draws eyes where eyes
belong, so the plain copy is faint; ``copy_and_settle`` then refines the copied grid for
--settle-steps steps towards the picture the copy should give (the eye's pixels pasted there),
and the grid draws the third eye by itself.
The default places are where FFHQ alignment puts the eye and the forehead; --src (a box of cells,
``x0,y0,x1,y1``, end-exclusive) and --dst (the cell ``row,col`` its top-left cell goes to) move them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from encoders.settle import copy_and_settle
from spatial_latent import SpatialGenerator, copy_cells, image_grid, load_generator, resolve_device, save_picture, to_uint8
from spatial_latent.cli import run_cli

from faces import add_face_args, encode_face  # examples/faces.py, beside this file

from spatial_latent.faces import ASTRONAUT


def default_boxes(d: int, template: object = "ffhq") -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """For a one-face grid of density ``d`` (``d x d`` cells): the box of cells ``(x0, y0, x1, y1)``
    (end-exclusive) over the image-left eye, and the cell ``(row, col)`` on the forehead where its
    top-left cell goes. Where the eyes are comes from the network's alignment template (FFHQ puts
    them at 47.5% of the height and 37.5% / 62.5% of the width; ``faces`` at 36% and 32% / 68%).
    """
    from spatial_latent.faces.align import template_landmarks

    ex, ey = template_landmarks(template or "ffhq")["eye_left"]
    k = max(1, d // 8)
    x, y = round(ex * d - k / 2), round(ey * d - k / 2)
    return (x, y, x + k, y + k), (max(0, y - k - 1), round(d / 2 - k / 2))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Give a face a third eye by copying latent cells.")
    p.add_argument("--network", default="faces", help="checkpoint file or network name (default: faces, embedded; e.g. ffhq when downloaded)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    add_face_args(p)  # --photo, --aligned, --seed, --steps, --loss (see faces.py)
    p.set_defaults(photo=str(ASTRONAUT))  # a real photo by default: the astronaut (public domain, in the package)
    p.add_argument("--density", type=int, default=16, help="grid cells per image side (default: 16)")
    p.add_argument("--src", default=None, metavar="X0,Y0,X1,Y1", help="box of cells to copy, end-exclusive (default: over an eye)")
    p.add_argument("--dst", default=None, metavar="ROW,COL", help="cell the box's top-left cell goes to (default: the forehead)")
    p.add_argument("--feather", type=float, default=1.0, help="blend width in cells (default: 1)")
    p.add_argument("--settle-steps", type=int, default=150, help="optimization steps that settle the copied cells (default: 150; 0 = the plain copy)")
    p.add_argument("--outdir", type=Path, default=Path("out/three_eyes"))
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    G = load_generator(args.network, device=device)
    grid = encode_face(G, args, density=args.density)  # [1, num_ws, w_dim, density, density]

    src, dst = default_boxes(grid.density, G.align_template)
    src = tuple(int(v) for v in args.src.split(",")) if args.src else src
    dst = tuple(int(v) for v in args.dst.split(",")) if args.dst else dst
    copied = copy_cells(grid, src, dst, feather=args.feather)
    edited, _ = copy_and_settle(G, grid, src, dst, steps=args.settle_steps, feather=args.feather)

    sg = SpatialGenerator(G, padding="zero")

    def render(g):  # with the grid's own noise maps, when it holds them
        maps = [m.to(sg.device) for m in g.noise_maps() or []] or None
        return sg(g.to(sg.device), "const", noise=maps)

    with torch.no_grad():
        pictures = to_uint8(torch.cat([render(grid), render(copied), render(edited)]))  # [3, R, R, 3]
    args.outdir.mkdir(parents=True, exist_ok=True)
    picture = save_picture(image_grid(pictures, cols=3), args.outdir / "three_eyes.png")
    latent = edited.save(args.outdir / "three_eyes.latent.safetensors")
    print(f"wrote {picture} (encoded | cells {src} copied to {dst} | settled for {args.settle_steps} steps) and {latent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
