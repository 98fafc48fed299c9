"""Grow a latent field into an arbitrarily large seamless image, tile by tile.

    python -m spatial_latent.sample --network demo --size 16384x4096 --seed 1 --out scene.png
    python -m spatial_latent.sample --network demo --size 65536x16384 --out scene.dzi  # zoomable
    torchrun --nproc_per_node 4 -m spatial_latent.sample ... --out scene.tif   # several GPUs/processes
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Sequence

from .cli import add_device_arg, add_network_arg, add_noise_mode_arg, join_dash_values, run_cli, with_exit_status
from .errors import InputError


def parse_size(text: str) -> tuple[int, int]:
    """``'16384x4096'`` (width x height) -> ``(height, width)``."""
    m = re.fullmatch(r"\s*(-?\d+)\s*[xX]\s*(-?\d+)\s*", text)
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
        "Finished tiles are kept beside the output (OUT.parts/) so an interrupted run can --resume; "
        "the output appears only when complete. Under torchrun each process renders a share of the tiles.",
        epilog="Output kinds, chosen by the suffix of --out: "
        ".png/.jpg/.jpeg/.webp: one picture, assembled in memory (up to 1 Gpx; JPEG up to 65535 px a side); "
        ".tif/.tiff: tiled BigTIFF, streamed tile by tile (any size); "
        ".dzi: a Deep Zoom pyramid, streamed row by row (any size): for --out scene.dzi, the descriptor scene.dzi, "
        "tiles scene_files/<level>/<col>_<row>.jpg (levels down to 1x1 px) and scene.html, a self-contained viewer (drag to pan, wheel to zoom; "
        "open it in a browser, no server or internet needed). A missing output folder is created.",
    )
    p.epilog = with_exit_status(p.epilog)
    add_network_arg(p)
    p.add_argument("--size", required=True, metavar="WxH", help="output size in pixels, width x height (e.g. 16384x4096)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent field and the noise (default: 0)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="output file; its suffix picks the kind: .png/.jpg/.webp (in memory), .tif (tiled BigTIFF), .dzi (Deep Zoom pyramid + HTML viewer); see below")
    p.add_argument("--tile", type=int, default=None, help="render tile side in pixels, a multiple of R/4 for an R-pixel generator; larger tiles waste less work on margins (default: max(2R, 256))")
    p.add_argument("--batch", type=int, default=4, help="tiles per forward pass; adjacent tiles of a row are rendered as one window (default: 4)")
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI", help="truncation psi of the field's latents (default: 1)")
    p.add_argument("--correlation", type=float, default=2.0, metavar="CELLS", help="spatial correlation length of the latent field, in cells; 0 = independent cells (default: 2)")
    p.add_argument("--density", type=int, default=4, metavar="N", help="latent cells per native image side (default: 4)")
    p.add_argument("--global-mix", type=float, default=0.0, help="pull every cell toward one global latent by this fraction, for a consistent palette (default: 0)")
    add_noise_mode_arg(p, "random", "per-pixel noise: the network's stored maps tiled, seeded by position, or off")
    p.add_argument("--class", dest="class_idx", type=int, default=None, help="class index for conditional networks")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 of a .jpg output and of .dzi tiles in jpg (default: 90)")
    p.add_argument("--dzi-tile-size", type=int, default=254, metavar="PX", help=".dzi only: pyramid tile side without overlap (default: 254, i.e. 256 px tiles with --dzi-overlap 1)")
    p.add_argument("--dzi-overlap", type=int, default=1, metavar="PX", help=".dzi only: pixels each pyramid tile repeats from its neighbours (default: 1)")
    p.add_argument("--dzi-format", choices=["jpg", "png"], default="jpg", help=".dzi only: pyramid tile format, jpg (small) or png (lossless) (default: jpg)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its finished tiles (the settings must match)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (for scene.dzi also scene_files/ and scene.html) and any unfinished run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(join_dash_values(argv, ("--size",)))  # '--size -5x512': one error line
    height, width = parse_size(args.size)

    import torch

    from .latents.field import LatentField
    from .checkpoints.loading import load_generator, resolve_device
    from .render.generator import SpatialGenerator
    from .io.deepzoom import DeepZoomOptions
    from .render.tiles import TileSampler, check_size, default_tile

    check_size(height, width)
    rank0 = int(os.environ.get("RANK", 0)) == 0
    if rank0:  # every check on the output before any work, and before a progress bar is drawn
        _check_and_make_folder(args.out, height, width, args.overwrite, args.resume)
    deepzoom = DeepZoomOptions(tile_size=args.dzi_tile_size, overlap=args.dzi_overlap, format=args.dzi_format, quality=args.quality)
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
        tile = args.tile or default_tile(G.img_resolution)
        field = LatentField(G, seed=args.seed, correlation=args.correlation, truncation_psi=args.trunc, density=args.density, global_mix=args.global_mix, class_idx=args.class_idx)
        sampler = TileSampler(SpatialGenerator(G, padding="none"), field, tile=tile, batch=args.batch, noise_mode=args.noise_mode)
        bar = None

        def progress(done: int, total: int, mps: float) -> None:
            nonlocal bar
            if bar is None and rank == 0 and not args.no_progress:  # drawn at the first finished batch, after every check
                from tqdm import tqdm

                n = len(sampler.positions(height, width))
                bar = tqdm(total=-(-n // world), unit="tile", desc="tiles" + (f" (rank 0 of {world})" if world > 1 else ""))
            if bar is not None:
                bar.n = done
                bar.set_postfix_str(f"{mps:.2f} Mpx/s")
                bar.refresh()

        path = sampler.render_to_file(
            args.out, height, width, resume=args.resume, overwrite=args.overwrite, manifest_extra={"network": str(args.network), "generator_fingerprint": G.fingerprint(), "class": args.class_idx},
            on_progress=progress, rank=rank, world_size=world, barrier=barrier, deepzoom=deepzoom, quality=args.quality,
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


def _check_and_make_folder(out: Path, height: int, width: int, overwrite: bool, resume: bool) -> None:
    """:func:`~spatial_latent.io.tile_store.check_output`, creating a missing output folder (as
    encode and generate do) and removing it again when a check fails."""
    from .io.tile_store import check_output

    parent = out.parent if str(out.parent) else Path(".")
    created = []
    for folder in (parent, *parent.parents):  # the folders this run creates, deepest first
        if folder.exists():
            break
        created.append(folder)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output folder {parent} ({e.strerror or e})") from None
    try:
        check_output(out, height, width, overwrite, resume)
    except BaseException:
        for folder in created:
            folder.rmdir()
        raise


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
