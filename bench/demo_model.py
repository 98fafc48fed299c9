"""Evidence for a trained spatial generator: SWD at 1x and 4x the training crop size, samples, one large image.

    python bench/demo_model.py --network demo --data builtin:gravel,grass,hubble_deep_field --data-scale 0.5

Prints a table, writes bench/results/demo_model.json, and (with --figures) docs/img/demo_crops_1x.png
(renders at the crop size), docs/img/demo_crops_4x.png (renders at 4x) and docs/img/demo_scene.jpg
(a large render, tiled).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402

from spatial_latent.training.data import CropSampler, load_images  # noqa: E402
from spatial_latent.latents.field import LatentField  # noqa: E402
from spatial_latent.io.pictures import image_grid, save_picture, to_uint8  # noqa: E402
from spatial_latent.checkpoints.loading import load_generator  # noqa: E402
from spatial_latent.metrics import scale_consistency, sliced_wasserstein  # noqa: E402
from spatial_latent.latents.window import Window  # noqa: E402
from spatial_latent.render.generator import SpatialGenerator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@torch.no_grad()
def field_renders(sg: SpatialGenerator, count: int, side: int, seed: int) -> torch.Tensor:
    """``[count, 3, side, side]`` padding-free renders, render ``i`` from its own latent field (seed + i)."""
    out = []
    for i in range(count):
        field = LatentField(sg.G, seed=seed + i, correlation=2.0, density=4)
        cells = sg.cells_needed(Window(0, 0, side, side), 4)
        grid = field.grid(cells.size, origin=(cells.y0, cells.x0))
        sy, sx = -cells.y0 * sg.img_resolution // 4, -cells.x0 * sg.img_resolution // 4
        out.append(sg(grid, noise_mode="random", noise_seed=seed + i, window=Window(sx, sy, sx + side, sy + side)))
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="demo")
    p.add_argument("--data", default="builtin:gravel,grass,hubble_deep_field")
    p.add_argument("--data-scale", type=float, default=0.5)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--count", type=int, default=256, help="crops per SWD set")
    p.add_argument("--figures", action="store_true", help="write docs/img/demo_crops_1x.png, demo_crops_4x.png and demo_scene.jpg")
    p.add_argument("--scene", default="1536x512", help="WIDTHxHEIGHT of the large image")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "demo_model.json"), help="JSON results")
    args = p.parse_args()

    G = load_generator(args.network)
    sg = SpatialGenerator(G, padding="none")
    images, names = load_images(args.data, scale=args.data_scale)
    real = CropSampler(images, args.crop).sample(args.count, torch.Generator().manual_seed(1))
    real_b = CropSampler(images, args.crop).sample(args.count, torch.Generator().manual_seed(2))
    rows: list[dict] = []
    results: dict[str, float] = {}
    floor = sliced_wasserstein(real, real_b)["mean"]
    rows.append({"set": "real vs real (noise floor)", "SWD": floor})
    results["swd_real_vs_real"] = floor
    renders: dict[int, torch.Tensor] = {}

    def render(scale: int, count: int) -> torch.Tensor:
        renders[scale] = field_renders(sg, count, args.crop * scale, seed=100)
        return renders[scale]

    for scale in (1, 4):
        t = time.perf_counter()
        # At most 4 crops per 4x render, so both scales draw on many independent fields.
        swd = scale_consistency(render, real, scales=(scale,), seed=100, per_image=4)[scale]
        results[f"swd_{scale}x"] = swd
        rows.append({"set": f"generated at {scale}x the crop size", "SWD": swd, "seconds": time.perf_counter() - t})
    if args.figures:
        save_picture(image_grid(to_uint8(renders[1][:32]), cols=16), ROOT / "docs" / "img" / "demo_crops_1x.png")
        save_picture(image_grid(to_uint8(renders[4][:4]), cols=4), ROOT / "docs" / "img" / "demo_crops_4x.png")
    results["ratio_4x_over_1x"] = results["swd_4x"] / results["swd_1x"]
    rows.append({"set": "ratio 4x / 1x (target <= 1.5)", "SWD": results["ratio_4x_over_1x"]})
    print_table(rows, ["set", "SWD", "seconds"])
    if args.figures:
        w, h = (int(v) for v in args.scene.lower().split("x"))
        from spatial_latent.render.tiles import TileSampler

        field = LatentField(G, seed=7, correlation=2.0, density=4)
        out = ROOT / "docs" / "img" / "demo_scene.jpg"
        TileSampler(sg, field).render_to_file(out, h, w, overwrite=True)
        print(f"wrote {out}")
    write_json(args.out, {"machine": machine(), "network": str(args.network), "data": args.data, "images": names,
                              "crop": args.crop, "count": args.count, **results})


if __name__ == "__main__":
    main()
