"""The main job, offline: a real face encoded, given a third eye, six faces composed, a scene grown.

    python -m spatial_latent.demo --outdir out

Runs on the CPU in a few minutes with the embedded models (``faces`` for faces, ``demo`` for the
scene) and writes into ``--outdir`` (earlier outputs are replaced):

- ``astronaut/``: the astronaut's photo (public domain, shipped in the package) aligned the way
  the ``faces`` model's training photos were, encoded into a 16x16 latent grid and rendered back
  (``target.png``, ``recon.png``, ``astronaut.latent.safetensors``, ``metrics.json``), the
  reconstruction pasted back into the photo (``pasted.png``; ``paste_back.png``: photo | pasted),
  and the cells over one eye copied onto the forehead and settled there by 150 optimization
  steps (``three_eyes.png``: reconstruction | plain copy | settled;
  ``three_eyes.latent.safetensors``);
- ``six_faces.png``: six generated faces composed on one 2x3 latent grid, blended at the seams;
- ``scene.png``: a seamless extended scene rendered tile by tile from a latent field (``demo``);
- ``gallery.png``: all of it on one sheet.

Each generator is loaded once and every step calls the library (the functions the ``encode``
and ``sample`` commands call).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .cli import add_device_arg, run_cli, with_exit_status
from .faces import ASTRONAUT  # a path; the faces package imports nothing heavy

if TYPE_CHECKING:  # imported when needed at run time, so that --help stays light
    import numpy as np
    import torch

    from .latents.grid import LatentGrid
    from .networks import Generator

SCENE_DENSITY = 4  # latent cells per native image side of the scene
FACE_DENSITY = 16  # cells per side of the encoded face grid (4 px cells on a 64 px face: an eye is two cells)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.demo",
        description="Encode a real face (the astronaut) into a latent grid, give it a third eye, paste it back, "
        "compose six faces on one grid and grow a seamless scene, with the embedded models (offline, CPU friendly).",
    )
    p.epilog = with_exit_status(p.epilog)
    p.add_argument("--face-network", default="faces", help="face generator (default: faces, embedded); e.g. ffhq when downloaded")
    p.add_argument("--scene-network", default="demo", help="padding-free scene generator (default: demo, embedded)")
    p.add_argument("--photo", type=Path, default=ASTRONAUT, help="face photo to encode (default: the astronaut, public domain)")
    p.add_argument("--outdir", type=Path, default=Path("out"), help="output folder; earlier outputs in it are replaced (default: out)")
    p.add_argument("--size", default="2048x512", help="scene size WIDTHxHEIGHT in pixels (default: 2048x512)")
    p.add_argument("--seed", type=int, default=1, help="seed of the scene's latent field and of the six faces (default: 1)")
    p.add_argument("--steps", type=int, default=300, help="optimization steps of the face encoding (default: 300)")
    p.add_argument("--settle-steps", type=int, default=150, help="steps that settle the copied eye on the forehead (default: 150; 0 = the plain copy)")
    add_device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .sample import parse_size

    height, width = parse_size(args.size)

    from .checkpoints.loading import load_generator, resolve_device

    device = resolve_device(args.device)
    out: Path = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    G = load_generator(args.face_network, device=device)
    print(f"[1/4] encode {args.photo.name} into a {FACE_DENSITY}x{FACE_DENSITY} grid with {args.face_network} ({args.steps} steps)")
    photo, grid, panels = encode_photo(G, args.photo, out / "astronaut", args.steps, args.face_network)
    print(f"      PSNR {panels['psnr']:.2f} dB")
    print(f"[2/4] three eyes: the cells over one eye copied onto the forehead, then settled ({args.settle_steps} steps)")
    panels["three_eyes"] = three_eyes(G, grid, out / "astronaut" / "three_eyes.png", args.settle_steps)
    print("[3/4] six faces composed on one 2x3 latent grid")
    six = six_faces(G, args.seed, out / "six_faces.png")
    print(f"[4/4] extended scene {width}x{height} from latent field seed {args.seed} ({args.scene_network})")
    S = load_generator(args.scene_network, device=device)
    scene = render_scene(S, out / "scene.png", height, width, args.seed, str(args.scene_network))
    gallery = write_gallery(photo, panels, six, scene, out / "gallery.png")
    print(f"done in {time.perf_counter() - t0:.0f} s: {gallery}, {out / 'astronaut'}/, {out / 'six_faces.png'}, {scene}")
    return 0


def render_scene(G: Generator, path: Path, height: int, width: int, seed: int, network: str) -> Path:
    """A seamless ``height x width`` scene from a latent field, rendered tile by tile padding-free
    into ``path`` (as ``python -m spatial_latent.sample`` does); replaces an earlier one."""
    from .latents.field import LatentField
    from .render.generator import SpatialGenerator
    from .render.tiles import TileSampler, check_size, default_tile

    check_size(height, width)
    field = LatentField(G, seed=seed, correlation=2.0, density=SCENE_DENSITY)
    sampler = TileSampler(SpatialGenerator(G, padding="none"), field, tile=default_tile(G.img_resolution), batch=4, noise_mode="random")
    return sampler.render_to_file(path, height, width, overwrite=True, manifest_extra={"network": network}) or path


def encode_photo(G: Generator, photo_path: Path, outdir: Path, steps: int, network: str) -> tuple[np.ndarray, LatentGrid, dict]:
    """Align the best face of ``photo_path`` with G's template, encode it into a grid ``[1, num_ws,
    w_dim, 8, 8]`` (MSE: runs offline), render it back and paste it into the photo. Writes the
    pictures, the latent file and the metrics into ``outdir``; returns the photo, the grid and
    the pictures (uint8 ``[H, W, 3]``) by name."""
    import numpy as np

    from encoders.optimize import OptimizeConfig, invert

    from .atomic import write_json
    from .faces.align import FaceDetector, align_face, paste_back
    from .io.pictures import read_image, save_picture, to_uint8

    outdir.mkdir(parents=True, exist_ok=True)
    photo = read_image(photo_path).pixels
    R = G.img_resolution
    face, transform, found = align_face(photo, R, detector=FaceDetector(), name=photo_path.name, template=G.align_template or "ffhq")
    import torch

    target = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, R, R]
    cfg = OptimizeConfig(steps=steps, space="grid", density=FACE_DENSITY, loss="mse")
    inv = invert(G, target, cfg)
    recon = to_uint8(inv.images)[0]
    grid = inv.grid.replace(inv.grid.data.detach().cpu(), extras={k: v.detach().cpu() for k, v in inv.grid.extras.items()})
    grid.meta.update(source=photo_path.name, network=network, generator_fingerprint=G.fingerprint(), align=transform.to_dict())
    grid.save(outdir / "astronaut.latent.safetensors")
    pasted = paste_back(photo, recon, transform)
    for name, pic in (("target", face), ("recon", recon), ("pasted", pasted)):
        save_picture(pic, outdir / f"{name}.png")
    save_picture(np.concatenate([photo, pasted], axis=1), outdir / "paste_back.png")  # photo | pasted back
    write_json(outdir / "metrics.json", {"metrics": inv.metrics[0], "seconds": inv.seconds, "steps": steps, "settings": cfg.to_dict(), "face": found.to_dict()})
    return photo, grid, {"target": face, "recon": recon, "pasted": pasted, "psnr": float(inv.metrics[0]["psnr"])}


def eye_to_forehead(G: Generator, density: int) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """For G's alignment template: the box of cells ``(x0, y0, x1, y1)`` over the image-left eye
    and the cell ``(row, col)`` on the forehead, midway between the eyes, where it goes."""
    from .faces.align import template_landmarks

    marks = template_landmarks(G.align_template or "ffhq")
    k = max(1, density // 8)  # an eye is about an eighth of the aligned square wide
    ex, ey = marks["eye_left"]
    x0, y0 = round(ex * density - k / 2), round(ey * density - k / 2)
    return (x0, y0, x0 + k, y0 + k), (max(0, y0 - k - 1), round(density / 2 - k / 2))


def three_eyes(G: Generator, grid: LatentGrid, path: Path, settle_steps: int = 150) -> np.ndarray:
    """The encoded face with the cells over one eye copied onto its forehead and settled there
    (:func:`encoders.settle.copy_and_settle`), beside the reconstruction and the plain copy,
    each rendered with its noise maps; writes the three-eyed latent beside ``path`` and returns
    the three-eyed picture."""
    import torch

    from encoders.settle import copy_and_settle

    from .io.pictures import image_grid, save_picture, to_uint8
    from .latents.compose import copy_cells
    from .render.generator import SpatialGenerator

    src, dst = eye_to_forehead(G, grid.density)
    copied = copy_cells(grid, src, dst, feather=1.0)
    settled, _ = copy_and_settle(G, grid, src, dst, steps=settle_steps)
    settled.save(path.with_suffix(".latent.safetensors"))
    sg = SpatialGenerator(G, padding="zero")

    def render(g: LatentGrid) -> torch.Tensor:
        maps = [m.to(sg.device) for m in g.noise_maps() or []] or None
        return sg(g.to(sg.device), "const", noise=maps)

    with torch.no_grad():
        pics = to_uint8(torch.cat([render(grid), render(copied), render(settled)]))
    save_picture(image_grid(pics, cols=3), path)
    return pics[2]


def six_faces(G: Generator, seed: int, path: Path) -> np.ndarray:
    """Six faces (truncation 0.7) on one 2x3 latent grid, zero padding; returns uint8 ``[2R, 3R, 3]``."""
    import torch

    from .io.pictures import save_picture, to_uint8
    from .latents.compose import compose_faces
    from .render.generator import SpatialGenerator

    z = torch.randn(6, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(G.device)
    with torch.no_grad():
        grid = compose_faces(G.map(z, truncation_psi=0.7), grid_shape=(2, 3), density=4)
        pic = to_uint8(SpatialGenerator(G, padding="zero")(grid, "const"))[0]
    save_picture(pic, path)
    return pic


def write_gallery(photo: np.ndarray, panels: dict, six: np.ndarray, scene: Path, path: Path) -> Path:
    """One sheet: photo, aligned face, reconstruction, three eyes, pasted back (top row, each
    256 px), six composed faces and the scene below."""
    import numpy as np
    from PIL import Image

    from .io.pictures import save_picture

    side = 256

    def fit(pic: np.ndarray, w: int, h: int) -> np.ndarray:
        """``pic`` scaled to fit ``w x h`` (aspect kept; pixels shown as blocks when enlarged), centred on white."""
        ph, pw = pic.shape[:2]
        scale = min(w / pw, h / ph)
        size = (max(1, round(pw * scale)), max(1, round(ph * scale)))
        im = Image.fromarray(pic).resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)
        canvas = Image.new("RGB", (w, h), (255, 255, 255))
        canvas.paste(im, ((w - size[0]) // 2, (h - size[1]) // 2))
        return np.asarray(canvas)

    top = np.concatenate([fit(p, side, side) for p in (photo, panels["target"], panels["recon"], panels["three_eyes"], panels["pasted"])], axis=1)
    width = top.shape[1]
    with Image.open(scene) as im:
        sc = np.asarray(im.convert("RGB"))
    rows = [top, fit(six, width, 2 * side), fit(sc, width, round(width * sc.shape[0] / sc.shape[1]))]
    gap = np.full((8, width, 3), 255, np.uint8)
    sheet = np.concatenate([rows[0], gap, rows[1], gap, rows[2]], axis=0)
    return save_picture(sheet, path)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
