"""A panorama, or a gigapixel scene, grown from an unbounded latent field tile by tile.

    python examples/extended_scene.py --network demo --size 4096x1024            # a PNG panorama
    python examples/extended_scene.py --network demo --size 65536x16384          # 1 Gpx: Deep Zoom

``LatentField`` gives the latent of every cell from ``(seed, position)`` alone, and the
padding-free generator renders each tile with exactly the margin it needs, so the stitched image
has no seams and memory does not grow with the image. Images above --zoom-above megapixels are
written as a Deep Zoom image: ``scene.dzi``, its tile pyramid ``scene_files/`` and
``scene.html``, a viewer to open in a browser (pan and zoom, no server needed); smaller ones as
``scene.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from spatial_latent import LatentField, SpatialGenerator, TileSampler, load_generator, resolve_device
from spatial_latent.cli import run_cli
from spatial_latent.sample import parse_size
from spatial_latent.render.tiles import default_tile


def render(sampler: TileSampler, out: Path, height: int, width: int) -> Path:
    """Render a ``height x width`` canvas into ``out`` (.png, .tif or .dzi) with a progress bar."""
    with tqdm(total=len(sampler.positions(height, width)), unit="tile", desc=out.name) as bar:
        return sampler.render_to_file(out, height, width, overwrite=True, on_progress=lambda done, total, mps: bar.update(done - bar.n))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Grow a seamless scene of any size from a latent field.")
    p.add_argument("--network", default="demo", help="checkpoint file or name (default: demo, the built-in texture model)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--size", default="2048x512", metavar="WxH", help="output size in pixels (default: 2048x512)")
    p.add_argument("--seed", type=int, default=0, help="seed of the field and the noise (default: 0)")
    p.add_argument("--correlation", type=float, default=2.0, help="correlation length of the field, in cells (default: 2)")
    p.add_argument("--density", type=int, default=4, help="latent cells per native image side (default: 4)")
    p.add_argument("--tile", type=int, default=None, help="render tile side, a multiple of R/4 (default: max(2R, 256))")
    p.add_argument("--batch", type=int, default=4, help="tiles per forward pass (default: 4)")
    p.add_argument("--zoom-above", type=float, default=64.0, metavar="MPX", help="write Deep Zoom above this many megapixels (default: 64)")
    p.add_argument("--outdir", type=Path, default=Path("out/extended_scene"))
    args = p.parse_args(argv)

    height, width = parse_size(args.size)
    G = load_generator(args.network, device=resolve_device(args.device))
    field = LatentField(G, seed=args.seed, correlation=args.correlation, density=args.density)
    sg = SpatialGenerator(G, padding="none")  # padding-free: tiles stitch exactly
    sampler = TileSampler(sg, field, tile=args.tile or default_tile(G.img_resolution), batch=args.batch)

    args.outdir.mkdir(parents=True, exist_ok=True)
    large = height * width > args.zoom_above * 1e6
    path = render(sampler, args.outdir / ("scene.dzi" if large else "scene.png"), height, width)
    print(f"wrote {path} ({width}x{height})")
    if path.suffix == ".dzi":
        print(f"open {path.with_suffix('.html')} in a browser to pan and zoom")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
