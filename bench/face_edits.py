"""Face edits with the shipped `faces` direction bank, judged by the face labeler.

    python bench/face_edits.py [--faces 200] [--bank faces] [--out bench/results/face_edits.json] [--figures docs/img]

On generated faces of the embedded ``faces`` model (fresh seeds, never those the bank was fitted
on), one latent per face on an 8x8 grid:

1. Success: the bank's smile edit at its default strength, inside its default region (the mouth),
   on ``--faces`` faces the labeler reads as not smiling (probability < 0.5): the fraction that
   ends above 0.5.
2. Locality, two ways. Pixels: the mean change inside the edit region and in bands of distance
   from it (the zero-padded 64 px model's receptive field spans the whole image, so there is no
   pixel it cannot reach in principle; the decay is what matters). Attributes: how far the labeler's other attribute probabilities move (mean absolute change
   over 12 attributes) under the per-location edit, against a global edit, the same step at every
   cell (the per-location step averaged over the cells, scaled to the strongest cell's length:
   InterFaceGAN style), at the strength that moves the attribute's probability by as much on
   average.
3. Figures: a strip of strengths for every direction of the bank on the same faces; a composed
   pair (two faces on one 8x16 grid, picked by eye from 24 candidates: ``--pair``) where one face
   gets a smile and the other bangs; the
   first SeFa and PCA directions named by the attribute the labeler sees change most.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent
# bench/attributes.py would shadow the attributes package: keep this folder off the path and
# read the shared helpers by file name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
common = SimpleNamespace(**runpy.run_path(str(ROOT / "common.py")))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from attributes.bank import DirectionBank  # noqa: E402
from attributes.direction import Direction  # noqa: E402
from attributes.edits import edit  # noqa: E402
from attributes.face_labeler import AGE_SCALE, CELEBA_ATTRIBUTES, load_face_labeler  # noqa: E402
from attributes.sampling import sample_grids  # noqa: E402
from attributes.unsupervised import pca_directions, sefa_directions  # noqa: E402
from spatial_latent.checkpoints.loading import load_generator  # noqa: E402
from spatial_latent.io.pictures import image_grid, save_picture, to_uint8  # noqa: E402
from spatial_latent.latents.grid import LatentGrid  # noqa: E402
from spatial_latent.latents.masks import box_mask  # noqa: E402
from spatial_latent.render.generator import SpatialGenerator  # noqa: E402

OTHERS = ["Male", "Eyeglasses", "Bangs", "Young", "Blond_Hair", "Black_Hair", "Brown_Hair", "Heavy_Makeup", "Wearing_Hat", "Bald", "Pale_Skin", "Narrow_Eyes"]
SEED = 7_000  # evaluation seeds; the bank was fitted with seed 0


class Scorer:
    """Renders grids in batches and reads every attribute's probability (and age) at once."""

    def __init__(self, G, batch: int = 64) -> None:
        self.sg, self.batch = SpatialGenerator(G), batch
        self.net = load_face_labeler()[0]

    @torch.no_grad()
    def images(self, grid: LatentGrid) -> torch.Tensor:
        return torch.cat([self.sg(grid.replace(grid.data[i : i + self.batch])) for i in range(0, grid.batch, self.batch)])

    @torch.no_grad()
    def probs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(images.float())  # [B, 41]: 40 attribute logits, then age / 50
        p = {a: torch.sigmoid(out[:, i]) for i, a in enumerate(CELEBA_ATTRIBUTES)}
        p["age"] = out[:, len(CELEBA_ATTRIBUTES)] * AGE_SCALE
        return p


def non_smiling_faces(G, scorer: Scorer, n: int, psi: float) -> tuple[LatentGrid, int]:
    """``n`` plain generated faces the labeler reads as not smiling, and how many were drawn."""
    kept, drawn = [], 0
    while sum(k.shape[0] for k in kept) < n:
        g = sample_grids(G, 256, (8, 8), 8, cell_mix=0.0, truncation_psi=psi, seed=SEED, start=drawn)
        drawn += 256
        p = scorer.probs(scorer.images(g))["Smiling"]
        kept.append(g.data[p < 0.5])
        if drawn > 50 * n:
            raise RuntimeError("the model draws too few non-smiling faces")
    return LatentGrid(torch.cat(kept)[:n], space="w", density=8), drawn


def box_distance(box: list[float], size: int) -> torch.Tensor:
    """``[size, size]`` distance in pixels (Chebyshev) of each pixel centre from the box."""
    x0, y0, x1, y1 = box
    c = torch.arange(size) + 0.5
    dx = (x0 - c).clamp_min(0) + (c - x1).clamp_min(0)
    dy = (y0 - c).clamp_min(0) + (c - y1).clamp_min(0)
    return torch.maximum(dy[:, None], dx[None, :])


BANDS = ((0, 0), (0, 8), (8, 16), (16, 1e9))  # inside, then pixel-distance bands from the region


def success_and_locality(G, scorer: Scorer, faces: LatentGrid, d: Direction, attr: str) -> dict:
    strength = float(d.meta.get("default_strength", 1.0))
    region = d.meta.get("region")
    mask = box_mask(faces.cells, region, cell_size=G.img_resolution / faces.density) if region else None
    before = scorer.images(faces)
    after = scorer.images(edit(faces, d, strength, mask=mask))
    p0, p1 = scorer.probs(before), scorer.probs(after)
    res = {
        "faces": faces.batch,
        "strength": strength,
        "region": region,
        "success": float((p1[attr][p0[attr] < 0.5] > 0.5).float().mean()),  # of the faces without it
        "faces_without": int((p0[attr] < 0.5).sum()),
        "mean_probability_before": float(p0[attr].mean()),
        "mean_probability_after": float(p1[attr].mean()),
        "others_mean_abs_change_per_location": _others_change(p0, p1, attr),
        "mean_abs_pixel_change": float((after - before).abs().mean()),
    }
    if region:
        # A zero-padded render lets a cell reach the whole 64 px image in principle (the receptive
        # field, margin x 16 px + a cell, exceeds it), so measure how the change decays instead.
        reach = SpatialGenerator(G).receptive_margin() * G.img_resolution // 4 + G.img_resolution // faces.density
        dist = box_distance(region, G.img_resolution)
        change = (after - before).abs().mean(dim=(0, 1))  # [H, W]
        res["receptive_reach_px"] = int(reach)
        res["pixel_change_by_distance"] = {
            ("inside" if hi == 0 else f"{lo:g}-{hi:g} px" if hi < 1e9 else f">{lo:g} px"): float(change[(dist <= 0) if hi == 0 else (dist > lo) & (dist <= hi)].mean())
            for lo, hi in BANDS
            if bool(((dist <= 0) if hi == 0 else (dist > lo) & (dist <= hi)).any())
        }
    # Global edit: the per-location step averaged over the cells, the same step everywhere (as
    # long as the strongest cell's step), at the strength that moves the attribute as much on
    # average (bisection on the mean change; the bracket grows until it holds the target).
    target = float((p1[attr] - p0[attr]).mean())
    mean_step = d.vectors.mean(dim=(2, 3), keepdim=True)
    glob = d.replace(vectors=mean_step * d.vectors.flatten(0, 1).norm(dim=0).max() / mean_step.norm(), held_out=None)
    change = lambda s: float((scorer.probs(scorer.images(edit(faces, glob, s)))[attr] - p0[attr]).mean())  # noqa: E731
    lo, hi = 0.0, strength
    while change(hi) < target and hi < 1e3:
        lo, hi = hi, 2 * hi
    for _ in range(8):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if change(mid) < target else (lo, mid)
    pg = scorer.probs(scorer.images(edit(faces, glob, (lo + hi) / 2)))
    res["global_strength_matched"] = (lo + hi) / 2
    res["global_success"] = float((pg[attr][p0[attr] < 0.5] > 0.5).float().mean())
    res["others_mean_abs_change_global"] = _others_change(p0, pg, attr)
    res["others_ratio_per_location_to_global"] = res["others_mean_abs_change_per_location"] / max(res["others_mean_abs_change_global"], 1e-12)
    return res


def _far_ratio(res: dict) -> float | None:
    """Mean pixel change more than 16 px from the region over the change inside it."""
    bands = res.get("pixel_change_by_distance") or {}
    return bands[">16 px"] / bands["inside"] if ">16 px" in bands and bands.get("inside") else None


def _others_change(p0: dict, p1: dict, attr: str) -> float:
    names = [a for a in OTHERS if a != attr]
    return float(np.mean([float((p1[a] - p0[a]).abs().mean()) for a in names]))


def label(pic: np.ndarray, text: str, height: int = 14) -> np.ndarray:
    """``pic`` with a white strip of text above it."""
    from PIL import Image, ImageDraw

    out = Image.new("RGB", (pic.shape[1], pic.shape[0] + height), "white")
    out.paste(Image.fromarray(pic), (0, height))
    ImageDraw.Draw(out).text((3, 1), text, fill="black")
    return np.asarray(out)


def strips(G, scorer: Scorer, bank: DirectionBank, faces: LatentGrid, path: Path) -> None:
    """Per direction: 4 faces x strengths (-1, -0.5, 0, 0.5, 1, 1.5) x the default strength."""
    blocks = []
    for d in bank:
        s = float(d.meta.get("default_strength", 1.0))
        region = d.meta.get("region")
        mask = box_mask(faces.cells, region, cell_size=G.img_resolution / faces.density) if region else None
        mults = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
        rows = [scorer.images(edit(faces, d, m * s, mask=mask)) for m in mults]
        x = torch.stack(rows, 1).flatten(0, 1)
        pic = image_grid(to_uint8(F.interpolate(x, scale_factor=2, mode="nearest")), cols=len(mults))
        where = "region " + ",".join(f"{v:g}" for v in region) if region else "whole face"
        blocks.append(label(pic, f"{d.name}: strength {', '.join(f'{m * s:g}' for m in mults)} ({where})"))
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 6), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks]
    save_picture(np.concatenate(blocks, 0), path)


def composed_pair(G, scorer: Scorer, bank: DirectionBank, path: Path, picks: tuple[int, int]) -> dict:
    """Two faces (``picks`` of 24 drawn at truncation 0.6) on one 8x16 grid; the left one
    smiles, the right one gets bangs."""
    a = sample_grids(G, 24, (8, 8), 8, cell_mix=0.0, truncation_psi=0.6, seed=SEED + 3)
    pair = LatentGrid(torch.cat([a.data[picks[0] : picks[0] + 1], a.data[picks[1] : picks[1] + 1]], dim=-1), space="w", density=8)  # [1, 1, C, 8, 16]
    edits = []
    for name, col in (("smile", 0), ("bangs", 8)):
        d = bank[name]
        region = d.meta.get("region")
        m = box_mask((8, 8), region, cell_size=G.img_resolution / 8) if region else torch.ones(8, 8)
        full = torch.zeros(8, 16)
        full[:, col : col + 8] = m
        edits.append((d.placed((8, 16), (0, col)), float(d.meta.get("default_strength", 1.0)), full))
    out = pair
    for d, s, m in edits:
        out = edit(out, d, s, mask=m)
    before, after = scorer.images(pair), scorer.images(out)
    pic = image_grid(to_uint8(F.interpolate(torch.cat([before, after]), scale_factor=3, mode="nearest")), cols=1)
    save_picture(label(pic, "composed pair; below: left face smile, right face bangs"), path)
    halves = lambda x: (x[..., :64], x[..., 64:])  # noqa: E731
    (bl, br), (al, ar) = halves(before), halves(after)
    return {
        "left_smile_before": float(scorer.probs(bl)["Smiling"][0]), "left_smile_after": float(scorer.probs(al)["Smiling"][0]),
        "right_bangs_before": float(scorer.probs(br)["Bangs"][0]), "right_bangs_after": float(scorer.probs(ar)["Bangs"][0]),
        "right_smile_change": float(scorer.probs(ar)["Smiling"][0] - scorer.probs(br)["Smiling"][0]),
    }


def named_unsupervised(G, scorer: Scorer, k: int, n_faces: int = 128, strength: float = 3.0) -> list[dict]:
    """The first ``k`` SeFa and PCA directions, each named by the attribute whose probability
    (or age, in years / 10) moves most between strength -s and +s on ``n_faces`` faces."""
    faces = sample_grids(G, n_faces, (8, 8), 8, cell_mix=0.0, truncation_psi=0.7, seed=SEED + 2)
    pool = sample_grids(G, 1000, (1, 1), 1, cell_mix=0.0, seed=SEED + 3)
    dirs = [("sefa", d) for d in sefa_directions(G, k)] + [("pca", d) for d in pca_directions(pool, k, per_location=False)]
    rows = []
    for kind, d in dirs:
        lo, hi = scorer.probs(scorer.images(edit(faces, d, -strength))), scorer.probs(scorer.images(edit(faces, d, strength)))
        change = {a: float((hi[a] - lo[a]).mean()) / (10.0 if a == "age" else 1.0) for a in hi}
        top = sorted(change, key=lambda a: -abs(change[a]))[:3]
        rows.append({"direction": d.name, "kind": kind, "named": ("+" if change[top[0]] > 0 else "-") + top[0],
                     "top3": ", ".join(f"{a} {change[a]:+.2f}" for a in top)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=200, help="non-smiling generated faces for the success rate (default: 200)")
    ap.add_argument("--bank", default="faces", help="direction bank (default: faces, the shipped one)")
    ap.add_argument("--psi", type=float, default=1.0, help="truncation of the evaluated faces (default: 1, the model's own distribution)")
    ap.add_argument("--unsupervised", type=int, default=4, help="SeFa and PCA directions to name (default: 4 each)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/face_edits.json"))
    ap.add_argument("--figures", type=Path, default=None, help="folder for the strip and pair PNGs (default: none)")
    ap.add_argument("--pair", default="8,13", help="which two of the 24 candidate faces form the composed pair (default: 8,13)")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    G = load_generator("faces")
    bank = DirectionBank.load(args.bank)
    bank.check_generator(G.fingerprint())
    scorer = Scorer(G)
    faces, drawn = non_smiling_faces(G, scorer, args.faces, args.psi)
    results = {"smile": success_and_locality(G, scorer, faces, bank["smile"], "Smiling")}
    results["smile"]["drawn_to_find_non_smiling"] = drawn
    rows = [dict(attribute="smile", **{k: results["smile"][k] for k in ("faces", "strength", "success", "others_mean_abs_change_per_location", "others_mean_abs_change_global", "others_ratio_per_location_to_global")}, far_vs_inside=_far_ratio(results["smile"]))]
    for name, attr in (("eyeglasses", "Eyeglasses"), ("bangs", "Bangs")):
        if name in bank:
            sub = sample_grids(G, args.faces, (8, 8), 8, cell_mix=0.0, truncation_psi=args.psi, seed=SEED + 10)
            results[name] = success_and_locality(G, scorer, sub, bank[name], attr)
            rows.append(dict(attribute=name, **{k: results[name][k] for k in rows[0] if k not in ("attribute", "far_vs_inside")}, far_vs_inside=_far_ratio(results[name])))
    common.print_table(rows, list(rows[0]))
    if args.unsupervised:
        results["unsupervised"] = named_unsupervised(G, scorer, args.unsupervised)
        common.print_table(results["unsupervised"], ["direction", "kind", "named", "top3"])
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        show = sample_grids(G, 4, (8, 8), 8, cell_mix=0.0, truncation_psi=0.7, seed=SEED + 4)
        strips(G, scorer, bank, show, args.figures / "faces_edit_strips.png")
        results["composed_pair"] = composed_pair(G, scorer, bank, args.figures / "faces_edit_pair.png", tuple(int(v) for v in args.pair.split(",")))
        print(f"wrote {args.figures / 'faces_edit_strips.png'} and {args.figures / 'faces_edit_pair.png'}")
    results["seconds"] = round(time.perf_counter() - t0, 1)
    common.write_json(args.out, {"machine": common.machine(), "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
