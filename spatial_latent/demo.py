"""The main job on the embedded demo model: an extended scene, an encode round trip and an edit.

    python -m spatial_latent.demo --outdir out

Runs offline on the CPU in a few minutes and writes into ``--outdir`` (earlier outputs are replaced):

- ``scene.png``: a seamless extended scene rendered tile by tile from a latent field;
- ``roundtrip/``: the centre window of the scene (one native image) encoded into a latent grid
  and rendered back: ``window_target.png``, ``window_recon.png``, ``window_compare.png`` (side by
  side), ``window.latent.safetensors`` and ``window_metrics.json``;
- ``bank.npz`` + ``edited.png`` / ``edit_strip.png``: a per-location "brightness" direction
  fitted on the model's own samples, applied to the left half of the encoded grid.

The generator is loaded once and every step calls the library (the same functions the
``sample``, ``encode``, ``fit`` and ``edit`` commands call); ``--network`` swaps the model
(``tiny`` for a smoke test).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .cli import add_device_arg, add_network_arg, run_cli, with_exit_status

if TYPE_CHECKING:  # imported when needed at run time, so that --help stays light
    import torch

    from attributes.direction import Direction
    from encoders.optimize import Inversion

    from .latents.grid import LatentGrid
    from .networks import Generator

DENSITY = 4  # latent cells per native image side, for the scene, the round trip and the edit
EDIT_STRENGTH = 2.0
STRIP_STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.demo",
        description="Render an extended scene, encode a window of it back into a latent grid, and edit that "
        "grid locally, with the embedded demo model (offline, CPU friendly).",
    )
    p.epilog = with_exit_status(p.epilog)
    add_network_arg(p, default="demo", required=False)
    p.add_argument("--outdir", type=Path, default=Path("out"), help="output folder; earlier outputs in it are replaced (default: out)")
    p.add_argument("--size", default="2048x512", help="scene size WIDTHxHEIGHT in pixels (default: 2048x512)")
    p.add_argument("--seed", type=int, default=1, help="seed of the scene's latent field (default: 1)")
    p.add_argument("--steps", type=int, default=200, help="optimization steps of the encode round trip (default: 200)")
    p.add_argument("--samples", type=int, default=600, help="generated samples to fit the edit direction on (default: 600)")
    add_device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .sample import parse_size

    height, width = parse_size(args.size)

    from .checkpoints.loading import load_generator, resolve_device

    device = resolve_device(args.device)
    G = load_generator(args.network, device=device)
    out: Path = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    res = G.img_resolution
    t0 = time.perf_counter()

    print(f"[1/3] extended scene {width}x{height} from latent field seed {args.seed}")
    scene = render_scene(G, out / "scene.png", height, width, args.seed, str(args.network))

    print(f"[2/3] encode round trip: a {res}x{res} window of the scene -> latent grid -> image")
    grid, inv = encode_window(G, scene, out / "roundtrip", args.steps, str(args.network))
    print(f"      PSNR {inv.metrics[0]['psnr']:.2f} dB, MSE {inv.metrics[0]['mse']:.5f}")

    print("[3/3] local edit: fit a per-location brightness direction, brighten the left half")
    direction = fit_brightness(G, grid, out / "bank.npz", args.samples, str(args.network))
    edit_left_half(G, grid, direction, out / "edited.png", out / "edit_strip.png")
    print(f"done in {time.perf_counter() - t0:.0f} s: {scene}, {out / 'roundtrip'}/, {out / 'edited.png'}, {out / 'edit_strip.png'}")
    return 0


def render_scene(G: Generator, path: Path, height: int, width: int, seed: int, network: str) -> Path:
    """A seamless ``height x width`` scene from a latent field, rendered tile by tile padding-free
    into ``path`` (as ``python -m spatial_latent.sample`` does); replaces an earlier one."""
    from .latents.field import LatentField
    from .render.generator import SpatialGenerator
    from .render.tiles import TileSampler, check_size, default_tile

    check_size(height, width)
    field = LatentField(G, seed=seed, correlation=2.0, density=DENSITY)
    sampler = TileSampler(SpatialGenerator(G, padding="none"), field, tile=default_tile(G.img_resolution), batch=4, noise_mode="random")
    return sampler.render_to_file(path, height, width, overwrite=True, manifest_extra={"network": network}) or path


def encode_window(G: Generator, scene: Path, outdir: Path, steps: int, network: str) -> tuple[LatentGrid, Inversion]:
    """Encode the centre ``R x R`` window of the picture ``scene`` into a grid ``[1, num_ws, w_dim,
    DENSITY, DENSITY]`` (optimization from the average latent, MSE loss, noise maps optimized and
    kept in the grid); writes the target, the reconstruction, both side by side, the latent file
    and the metrics into ``outdir``."""
    import numpy as np
    import torch
    from PIL import Image

    from encoders.optimize import OptimizeConfig, invert

    from ._version import __version__
    from .atomic import write_json
    from .io.pictures import save_picture, to_uint8

    outdir.mkdir(parents=True, exist_ok=True)
    R = G.img_resolution
    with Image.open(scene) as im:
        pic = np.asarray(im.convert("RGB"))  # uint8 [H, W, 3]
    y0, x0 = (pic.shape[0] - R) // 2, (pic.shape[1] - R) // 2
    window = np.ascontiguousarray(pic[y0 : y0 + R, x0 : x0 + R])
    target = torch.from_numpy(window).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, R, R]; invert moves it to G's device
    cfg = OptimizeConfig(steps=steps, space="grid", density=DENSITY, loss="mse")
    inv = invert(G, target, cfg)
    recon = to_uint8(inv.images)[0]
    grid = inv.grid.replace(inv.grid.data.detach().cpu(), extras={k: v.detach().cpu() for k, v in inv.grid.extras.items()})
    grid.meta.update(source=str(scene), window=[x0, y0, x0 + R, y0 + R], network=network, generator_fingerprint=G.fingerprint(), toolkit_version=__version__)
    grid.save(outdir / "window.latent.safetensors")
    save_picture(window, outdir / "window_target.png")
    save_picture(recon, outdir / "window_recon.png")
    save_picture(np.concatenate([window, recon], axis=1), outdir / "window_compare.png")
    record = {"metrics": inv.metrics[0], "seconds": inv.seconds, "steps": steps, "settings": cfg.to_dict(),
              "loss_curve": [c[0] for c in inv.loss_curve], "recon_curve": [c[0] for c in inv.recon_curve]}
    write_json(outdir / "window_metrics.json", record)
    return grid, inv


def fit_brightness(G: Generator, grid: LatentGrid, path: Path, samples: int, network: str) -> Direction:
    """A per-location direction of the left half's brightness, fitted on ``samples`` generated
    grids of ``grid``'s shape and density, saved as the only direction of the bank ``path``."""
    from attributes.bank import DirectionBank
    from attributes.labelers import get_labeler
    from attributes.supervised import AttributeModel

    direction = AttributeModel().fit_generated(G, get_labeler("brightness:left"), samples, cells=grid.cells, density=grid.density)
    direction.meta.update(generator=G.fingerprint(), labeler="brightness:left", network=network)
    bank = DirectionBank.for_generator(G)
    bank.add(direction)
    bank.save(path)
    return direction


def edit_left_half(G: Generator, grid: LatentGrid, direction: Direction, picture: Path, strip: Path) -> torch.Tensor:
    """Add ``EDIT_STRENGTH x direction`` to the cells of the left half of ``grid`` and render it
    with the grid's saved noise maps (strength 0 is the reconstruction), zero padding; writes
    ``picture`` and a ``strip`` of ``STRIP_STRENGTHS``. Returns the edited picture ``[1, 3, R, R]``."""
    import torch

    from attributes.edits import edit, strength_series

    from .io.pictures import image_grid, save_picture, to_uint8
    from .latents.masks import box_mask
    from .render.generator import SpatialGenerator

    sg = SpatialGenerator(G, padding="zero")
    grid = grid.to(sg.device)
    H, W = sg.canvas_size(grid)
    mask = box_mask(grid.cells, (0, 0, W // 2, H), cell_size=G.img_resolution / grid.density)  # box x0, y0, x1, y1 in pixels
    maps = [m.to(sg.device) for m in grid.noise_maps() or []] or None
    with torch.no_grad():
        edited = sg(edit(grid, direction, EDIT_STRENGTH, mask), "const", noise=maps)
        series = sg(strength_series(grid, direction, STRIP_STRENGTHS, mask), "const", noise=maps)  # [1, 1, h, w] maps serve every strength
    save_picture(image_grid(to_uint8(edited)), picture)
    save_picture(image_grid(to_uint8(series), cols=len(STRIP_STRENGTHS)), strip)
    return edited


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
