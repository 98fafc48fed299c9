"""Regenerate the pictures of docs/SPACES.md (docs/img/spatial_*.png).

    python bench/figures_spatial.py [--network PATH] [--outdir docs/img]

The default network is the 64 px NVIDIA fixture generator from ../shared/fixtures/stylegan2 (the
real checkpoint format, but untrained: it draws textures, not faces); any checkpoint works, e.g.
``--network ffhq`` on a machine that has it. Deterministic (fixed seeds); a few seconds on a CPU.

* ``spatial_2x3.png``: six latents composed on a 2x3 canvas (``compose_faces``, density 4), next to
  the six standalone images: each block of the canvas reproduces its own image.
* ``spatial_const.png``: one latent on a 2x2-image canvas with four ways of extending the 4x4
  constant input over the larger canvas; the first (periodic tiling) is what SpatialGenerator does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spatial_latent.latents.compose import compose_faces
from spatial_latent.io.pictures import image_grid, save_picture, to_uint8
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.checkpoints.loading import load_generator
from spatial_latent.latents.window import Window
from spatial_latent.render.engine import Render
from spatial_latent.render.generator import SpatialGenerator
from spatial_latent.render.plan import LatentPatch

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan2" / "nvidia_ada_64" / "network-snapshot.pkl"
GAP = 6  # white pixels between panels


def enlarge(pic: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour ``k``x enlargement of uint8 ``[H, W, C]`` (small models are tiny on screen)."""
    return pic.repeat(k, axis=0).repeat(k, axis=1)


def side_by_side(pics: list[np.ndarray]) -> np.ndarray:
    """Panels of equal height left to right, separated by white gaps."""
    h = max(p.shape[0] for p in pics)
    parts = []
    for i, p in enumerate(pics):
        if i:
            parts.append(np.full((h, GAP, 3), 255, np.uint8))
        pad = np.full((h - p.shape[0], p.shape[1], 3), 255, np.uint8)
        parts.append(np.concatenate([p, pad]))
    return np.concatenate(parts, axis=1)


class _ConstRender(Render):
    """A render whose 4x4 input is extended over the canvas by another rule (for the figure)."""

    rule = "periodic"

    def const(self, block, win: Window) -> torch.Tensor:  # type: ignore[no-untyped-def]
        if self.rule == "periodic":
            return super().const(block, win)
        c = block.const.to(torch.float32)[None]  # [1, C, 4, 4]
        h, w = win.size
        if self.rule == "mirrored":
            tile = torch.cat([c, c.flip(3)], dim=3)
            tile = torch.cat([tile, tile.flip(2)], dim=2)  # 8x8 period, mirrored at every edge
            x = tile.repeat(1, 1, h // 8 + 1, w // 8 + 1)[..., :h, :w]
        elif self.rule == "stretched":
            x = F.interpolate(c, size=(h, w), mode="bilinear", align_corners=False)
        else:  # "mean": the constant's average everywhere, no spatial structure
            x = c.mean(dim=(2, 3), keepdim=True).expand(-1, -1, h, w)
        return x.expand(self.B, -1, -1, -1).contiguous()


def render_rule(sg: SpatialGenerator, grid: LatentGrid, rule: str) -> torch.Tensor:
    H, W = sg.canvas_size(grid)
    patch = LatentPatch(grid.layer_data(sg.num_ws).to(torch.float32))
    r = _ConstRender(sg.G, [patch], grid.density, padding=sg.padding, resample=sg.resample, noise_mode="const")
    r.rule = rule
    return r.same_size((H, W))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--network", default=str(FIXTURE), help="generator checkpoint or name (default: the 64 px NVIDIA fixture)")
    p.add_argument("--outdir", type=Path, default=Path("docs/img"))
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--psi", type=float, default=0.7)
    args = p.parse_args()
    torch.set_num_threads(1)
    G = load_generator(args.network)
    R = G.img_resolution
    k = max(1, 128 // R)  # show every image at least 128 px wide
    sg = SpatialGenerator(G)
    gen = torch.Generator().manual_seed(args.seed)
    c = torch.eye(G.c_dim)[torch.arange(6) % G.c_dim] if G.c_dim else None
    with torch.no_grad():
        ws = G.map(torch.randn(6, G.z_dim, generator=gen), c, truncation_psi=args.psi)
        canvas = to_uint8(sg(compose_faces(ws, grid_shape=(2, 3), density=4, feather=1.0)))[0]
        singles = image_grid(to_uint8(G.synthesis(ws)), cols=3)
        fig = side_by_side([enlarge(canvas, k), enlarge(singles, k)])
        args.outdir.mkdir(parents=True, exist_ok=True)
        out1 = save_picture(fig, args.outdir / "spatial_2x3.png")

        one = LatentGrid.from_w(ws[:1], cells=(8, 8), density=4)  # one latent, a 2x2-image canvas
        rules = ["periodic", "mirrored", "stretched", "mean"]
        panels = [enlarge(to_uint8(render_rule(sg, one, rule))[0], max(1, k // 2)) for rule in rules]
        out2 = save_picture(side_by_side(panels), args.outdir / "spatial_const.png")
    for path in (out1, out2):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    sys.exit(main())
