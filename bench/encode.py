"""Inversion quality: W+ vs spatial grid vs learned encoder + optimization, at equal step counts.

    python bench/encode.py [--network PATH] [--steps 500] [--short-steps 100 [130 ...]] [--encoder enc.pt]
                           [--train-iters 1200] [--threads 1] [--device auto] [--out bench/results/encode.json]

Targets are rendered by the generator itself, so a perfect inversion exists for in-sample ones:

* ``composed``: 2, 3 or 4 different latents placed in soft-edged regions of one image (halves,
  thirds, quadrants): out of sample for W and W+, which hold one latent per layer;
* ``plain``: ordinary samples.

Every method inverts the same targets with the same MSE loss and regularizers, each with the
library's default schedule for its start (the projector's from ``w_avg``; the gentler one of
:data:`encoders.optimize.START_DEFAULTS` from the encoder's grid). Reported per method and target
kind: MSE on [0, 1] pixels, PSNR, LPIPS ("n/a" when its backbone weights are not on the machine)
and seconds per image.
Targets of the issue: grid MSE <= 0.7 x W+ MSE on composed targets; encoder + ``--short-steps``
(the first value) no worse than ``--steps`` from the average latent. Without ``--encoder`` one is trained first
(``--train-iters`` iterations, about 15 minutes of one CPU core at the default 1200, saved next to
the JSON) so the run is self-contained.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402

from encoders.learned import load_encoder  # noqa: E402
from encoders.losses import ReconstructionLoss, WStats, lpips_backbone_path  # noqa: E402
from encoders.optimize import OptimizeConfig, image_metrics  # noqa: E402
from encoders.pipeline import encode  # noqa: E402
from encoders.training import TrainConfig, train_encoder  # noqa: E402
from spatial_latent.latents.masks import soft_box  # noqa: E402
from spatial_latent.latents.grid import LatentGrid  # noqa: E402
from spatial_latent.checkpoints.loading import load_generator  # noqa: E402
from spatial_latent.render.generator import SpatialGenerator  # noqa: E402

DEFAULT_NETWORK = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan2" / "nvidia_ada_64" / "network-snapshot.pkl"

# Regions as boxes (x0, y0, x1, y1) in units of half the image, for 2, 3 and 4 latents.
LAYOUTS = {
    2: [(0, 0, 1, 2), (1, 0, 2, 2)],
    3: [(0, 0, 1, 2), (1, 0, 2, 1), (1, 1, 2, 2)],
    4: [(0, 0, 1, 1), (1, 0, 2, 1), (0, 1, 1, 2), (1, 1, 2, 2)],
}


@torch.no_grad()
def make_targets(G, n_composed: int, n_plain: int, density: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """``[n_composed + n_plain, 3, R, R]`` targets in [-1, 1] and their kinds."""
    gen = torch.Generator().manual_seed(seed)
    device = G.device
    sg = SpatialGenerator(G)
    cells = density  # one image: density x density cells
    half = cells // 2
    grids = []
    for i in range(n_composed):
        k = 2 + i % 3
        w = G.mapping(torch.randn([k, G.z_dim], generator=gen).to(device))  # [k, C]
        base = LatentGrid.from_w(w[:1], cells=(cells, cells), density=cells)
        for j, (x0, y0, x1, y1) in enumerate(LAYOUTS[k][1:], start=1):
            mask = soft_box((cells, cells), (x0 * half, y0 * half, x1 * half, y1 * half), feather=1.0, device=device)
            base = base.blend(LatentGrid.from_w(w[j : j + 1], cells=(cells, cells), density=cells), mask)
        grids.append(base.data)
    for _ in range(n_plain):
        w = G.mapping(torch.randn([1, G.z_dim], generator=gen).to(device))
        grids.append(LatentGrid.from_w(w, cells=(cells, cells), density=cells).data)
    data = torch.cat(grids)
    imgs = sg(LatentGrid(data, space="w", density=cells)).clamp(-1, 1)  # what a saved picture holds
    return imgs, ["composed"] * n_composed + ["plain"] * n_plain


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--network", default=str(DEFAULT_NETWORK))
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--short-steps", type=int, nargs="+", default=[100], help="step counts from the encoder's start; the first is the target's")
    p.add_argument("--density", type=int, default=8, help="latent cells per image side")
    p.add_argument("--composed", type=int, default=6)
    p.add_argument("--plain", type=int, default=4)
    p.add_argument("--encoder", default=None)
    p.add_argument("--train-iters", type=int, default=1200)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--dist-reg", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="bench/results/encode.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    G = load_generator(args.network, device=args.device)
    device = G.device
    targets, kinds = make_targets(G, args.composed, args.plain, args.density, args.seed)
    use_lpips = lpips_backbone_path("vgg").is_file()
    loss_fn = ReconstructionLoss("mse", device=device)
    lpips_fn = ReconstructionLoss("lpips", "vgg", device=device) if use_lpips else None
    stats = WStats.from_generator(G)

    train_s = None
    enc_path = args.encoder
    if enc_path is None:
        enc_path = str(Path(args.out).with_suffix(".encoder.pt"))
        Path(enc_path).unlink(missing_ok=True)
        t, cpu = time.perf_counter(), time.process_time()
        tc = TrainConfig(iters=args.train_iters, batch=args.train_batch, density=args.density, base_channels=32, max_channels=128, seed=args.seed)
        train_encoder(G, tc, enc_path, checkpoint_every=0, callback=lambda i, n, l: print(f"\rtrain {i}/{n} {l['loss']:.4f}", end="", flush=True) if i % 50 == 0 else None)
        print()
        train_s = {"wall": time.perf_counter() - t, "cpu": time.process_time() - cpu}
    encoder = load_encoder(enc_path, device=device, G=G)

    def base(space: str, steps: int, **kw: float) -> OptimizeConfig:
        return OptimizeConfig(steps=steps, space=space, density=args.density, loss="mse", dist_reg=args.dist_reg if space == "grid" else 0.0, seed=args.seed, **kw)

    projector = dict(lr_rampup=0.05, lr_rampdown=0.25, noise_lr=1.0)  # the w_avg schedule, for comparison

    methods = [
        ("w+ (avg start)", base("w+", args.steps), None),
        ("grid (avg start)", base("grid", args.steps), None),
        ("encoder only", base("grid", 0), encoder),
        (f"encoder + {args.short_steps[0]} steps, projector schedule", base("grid", args.short_steps[0], **projector), encoder),
        *[(f"encoder + {n} steps", base("grid", n), encoder) for n in args.short_steps],
        (f"encoder + {args.steps} steps", base("grid", args.steps), encoder),
    ]
    rows, results = [], {}
    for name, cfg, enc in methods:
        t = time.perf_counter()
        inv = encode(G, targets, cfg, encoder=enc, loss_fn=loss_fn, stats=stats)
        per_image = (time.perf_counter() - t) / len(kinds)
        metrics = image_metrics(inv.images, targets, lpips_fn)
        results[name] = {"steps": cfg.steps, "space": cfg.space, "seconds_per_image": per_image, "metrics": metrics}
        for kind in ("composed", "plain"):
            ms = [m for m, k in zip(metrics, kinds) if k == kind]
            if not ms:
                continue
            row = {"method": name, "steps": cfg.steps, "targets": kind, "n": len(ms)}
            for key in ("mse", "psnr", "lpips"):
                row[key] = sum(m[key] for m in ms) / len(ms) if key in ms[0] else "n/a"
            row["s/image"] = per_image
            rows.append(row)
        print(f"{name}: done in {per_image:.2f} s/image", flush=True)
    cols = ["method", "steps", "targets", "n", "mse", "psnr", "lpips", "s/image"]
    print_table(rows, cols)

    def mean_mse(method: str, kind: str) -> float:
        return next(r["mse"] for r in rows if r["method"] == method and r["targets"] == kind)

    ratio = mean_mse("grid (avg start)", "composed") / mean_mse("w+ (avg start)", "composed")
    short = f"encoder + {args.short_steps[0]} steps"
    enc_vs = {k: mean_mse(short, k) / mean_mse("grid (avg start)", k) for k, n in (("composed", args.composed), ("plain", args.plain)) if n}
    print(f"grid / W+ MSE on composed targets: {ratio:.3f} (target <= 0.7)")
    for k, v in enc_vs.items():
        print(f"{short} / grid {args.steps} steps from w_avg, MSE on {k}: {v:.3f} (target <= 1)")
    payload = {
        "benchmark": "encode",
        "machine": machine(),
        "network": args.network,
        "generator_fingerprint": G.fingerprint(),
        "density": args.density,
        "lpips": use_lpips,
        "encoder": enc_path,
        "encoder_train_seconds": train_s,
        "encoder_train_iters": args.train_iters if train_s is not None else None,
        "rows": rows,
        "grid_over_wplus_composed_mse": ratio,
        "encoder_short_over_avg_long_mse": enc_vs,
        "per_image": results,
    }
    print(f"wrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
