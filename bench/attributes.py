"""Attribute model: fitting time at scale, and locality / strength of a fitted edit.

    python bench/attributes.py [--samples 10000] [--density 8] [--device auto] [--out bench/results/attributes.json]

1. Timing: draw ``--samples`` grids of ``--density`` x ``--density`` cells (one image each) from the
   built-in 'tiny' generator (w_dim 64, 32 px), render and label them, then fit per-location
   directions: independent per cell (brightness score maps -> one logistic / ridge fit per cell)
   and joint (brightness of the left half -> one logistic fit on the whole flattened grid).
2. Evidence (the numbers the test asserts): a brightness direction fitted per cell on a tiny
   generator with unsaturated output, applied at strength 3 inside a box of cells and rendered
   padding-free. Reports the brightness gain inside the box (in standard deviations of that
   brightness over samples) and the largest pixel change outside the box dilated by the
   receptive field, plus how far the change actually reaches.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent
# This script's name would shadow the attributes package: take its folder off the path and
# load the helpers it needs by file name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


common = _load("bench_common", ROOT / "common.py")
machine, print_table, write_json = common.machine, common.print_table, common.write_json

import torch  # noqa: E402

from attributes.edits import edit  # noqa: E402
from attributes.labelers import MapLabeler, RegionLabeler, pixel_stat  # noqa: E402
from attributes.supervised import AttributeModel  # noqa: E402
from attributes.sampling import sample_grids, sample_labeled  # noqa: E402
from spatial_latent.checkpoints.loading import load_generator, random_generator, resolve_device  # noqa: E402
from spatial_latent.latents.masks import box_mask  # noqa: E402
from spatial_latent.render.generator import SpatialGenerator  # noqa: E402


class Both:
    """Label once, keep per-image scores (left-half brightness) and per-pixel maps."""

    def __init__(self) -> None:
        self.maps, self.left = MapLabeler("brightness"), RegionLabeler("brightness", (0, 0, 0.5, 1))
        self.scores: list[torch.Tensor] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.scores.append(self.left(images).cpu())
        return self.maps(images)


def timing(args: argparse.Namespace, device: torch.device) -> list[dict]:
    G = load_generator("tiny", device=device)
    cells = (args.density, args.density)
    lab = Both()
    t0 = time.perf_counter()
    grids, maps = sample_labeled(G, lab, args.samples, cells, density=args.density, cell_mix=0.5, batch_size=args.batch, progress=True)
    t_sample = time.perf_counter() - t0
    left = torch.cat(lab.scores)
    rows = [dict(step="draw + render + label", method="-", locations="-", samples=args.samples, cells=cells[0] * cells[1], fits="-", seconds=t_sample, held_out="-")]
    runs = [("logistic", "independent", maps), ("ridge", "independent", maps), ("logistic", "joint", left)]
    for method, locations, labels in runs:
        t0 = time.perf_counter()
        d = AttributeModel(method=method, locations=locations).fit(grids, labels, name="brightness", progress=True)
        secs = time.perf_counter() - t0
        fits = cells[0] * cells[1] if locations == "independent" else 1
        rows.append(dict(step="fit", method=method, locations=locations, samples=args.samples, cells=cells[0] * cells[1], fits=fits, seconds=secs, held_out=f"{d.metric} {float(d.held_out.nanmean()):.3f}"))
    return rows


def measurable_generator(device: torch.device):
    """The tests' tiny 'skip' generator with toRGB scaled by 0.1 (unsaturated brightness)."""
    support = _load("tests_support", ROOT.parent / "tests" / "support.py")
    G = random_generator(support.TINY_CONFIGS["skip"], seed=0)
    for name, m in G.named_modules():
        if name.endswith("torgb"):
            m.weight.data *= 0.1
            m.bias.data.zero_()
    return G.to(device)


@torch.no_grad()
def evidence(device: torch.device, samples: int = 300, strength: float = 3.0) -> dict:
    G = measurable_generator(device)
    cells, density = (4, 12), 4
    grids, maps = sample_labeled(G, MapLabeler("brightness"), samples, cells, density, cell_mix=1.0, padding="none", batch_size=100)
    d = AttributeModel(method="logistic").fit(grids, maps, name="brightness")
    sg = SpatialGenerator(G, padding="none")
    test = sample_grids(G, 16, cells, density, cell_mix=1.0, seed=99).to(device)
    box = (0, 0, 2, 4)
    before = sg(test)
    after = sg(edit(test, d, strength, box_mask(cells, box)))
    cell_px = G.img_resolution // density
    inside = box[2] * cell_px
    b0, b1 = pixel_stat(before, "brightness"), pixel_stat(after, "brightness")
    gain = float((b1 - b0)[:, :, :inside].mean())
    spread = float(b0[:, :, :inside].mean(dim=(1, 2)).std())
    dilation = sg.receptive_margin() * G.img_resolution // 4 + cell_px
    change = (after - before).abs().amax(dim=(0, 1, 2))  # per image column
    reach = int((change > 1e-6).nonzero().max()) + 1 - inside
    return dict(
        canvas=f"{before.shape[-2]}x{before.shape[-1]} px, {cells[0]}x{cells[1]} cells of {cell_px} px",
        mask=f"cell columns 0-{box[2] - 1} (image columns 0-{inside - 1})",
        strength=strength,
        held_out_accuracy=float(d.held_out.mean()),
        brightness_gain_inside=gain,
        brightness_std_over_samples=spread,
        gain_in_std=gain / spread,
        dilation_px=dilation,
        max_abs_pixel_change_outside_dilated=float(change[inside + dilation :].max()),
        measured_reach_px=reach,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--density", type=int, default=8, help="latent cells per image side (one image per sample)")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="bench/results/attributes.json")
    args = p.parse_args()
    device = resolve_device(args.device)
    rows = timing(args, device)
    print_table(rows, ["step", "method", "locations", "samples", "cells", "fits", "seconds", "held_out"])
    ev = evidence(device)
    print()
    for k, v in ev.items():
        print(f"{k:40s} {v}")
    path = write_json(args.out, {"benchmark": "attributes", "machine": machine(), "timing": rows, "evidence": ev})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
