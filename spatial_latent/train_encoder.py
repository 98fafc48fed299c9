"""Train the learned grid encoder (image -> latent grid) on a generator's own samples.

    python -m spatial_latent.train_encoder --network ffhq --out enc.pt --iters 20000 --batch 8

The training itself lives in :mod:`encoders.training`; this command parses, calls it and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from .cli import add_device_arg, add_network_arg, run_cli, with_exit_status
from .errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.train_encoder",
        description="Train an image -> latent-grid encoder on the generator's own samples (plain, "
        "style-mixed, composed and latent-field grids, rendered and regressed). Writes --out, a "
        "checkpoint you can --resume; use it with python -m spatial_latent.encode --encoder.",
    )
    p.epilog = with_exit_status(p.epilog)
    add_network_arg(p)
    p.add_argument("--out", type=Path, required=True, help="encoder file to write (.pt); also the checkpoint")
    p.add_argument("--iters", type=int, default=20000, help="training iterations in total (default: 20000)")
    p.add_argument("--batch", type=int, default=8, help="grids per iteration (default: 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--lr-decay", type=float, default=0.3, help="fraction of the run, at its end, over which the learning rate falls to 1/20 (default: 0.3)")
    p.add_argument("--density", type=int, default=8, metavar="N", help="latent cells per image side of the output grid (default: 8)")
    p.add_argument("--channels", type=int, default=32, help="encoder width at full resolution; doubles per level (default: 32)")
    p.add_argument("--max-channels", type=int, default=256, help="widest encoder layer (default: 256)")
    p.add_argument("--latent-weight", type=float, default=1.0, help="weight of the latent regression loss (default: 1)")
    p.add_argument("--image-weight", type=float, default=1.0, help="weight of the image loss (default: 1)")
    p.add_argument("--loss", choices=["mse", "lpips", "lpips+mse"], default="mse", help="image loss; LPIPS needs its backbone weights (default: mse)")
    p.add_argument("--lpips-net", choices=["vgg", "alex"], default="vgg", help="LPIPS backbone (default: vgg)")
    p.add_argument("--mix", default="0.3,0.2,0.3,0.2", help="sampling weights of plain,mixed,composed,field grids (default: 0.3,0.2,0.3,0.2)")
    p.add_argument("--psi-min", type=float, default=0.7, help="truncation of sampled latents drawn in [PSI, 1] (default: 0.7)")
    p.add_argument("--real-dir", default="", help="aligned real pictures added to each batch (image loss only): a folder, or a .npz from python -m spatial_latent.prepare_faces (its training split)")
    p.add_argument("--real-per-batch", type=int, default=0, help="real pictures per batch (default: 0; 2 when --real-dir is given)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and of every batch (default: 0)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="write --out every N iterations (default: 500)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    add_device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        mix = tuple(float(v) for v in args.mix.split(","))
    except ValueError:
        raise InputError(f"bad --mix {args.mix!r}; use four numbers like 0.3,0.2,0.3,0.2") from None
    from encoders.training import TrainConfig

    real_per_batch = args.real_per_batch or (min(2, args.batch) if args.real_dir else 0)
    cfg = TrainConfig(
        iters=args.iters, batch=args.batch, lr=args.lr, lr_decay=args.lr_decay, density=args.density, base_channels=args.channels,
        max_channels=args.max_channels, latent_weight=args.latent_weight, image_weight=args.image_weight,
        loss=args.loss, lpips_net=args.lpips_net, mix=mix, psi_min=args.psi_min,  # type: ignore[arg-type]
        real_dir=args.real_dir, real_per_batch=real_per_batch, seed=args.seed,
    )
    cfg.validate()
    if args.checkpoint_every < 0:
        raise InputError("--checkpoint-every must be >= 0")
    if args.out.exists() and not args.resume:
        raise InputError(f"{args.out} exists; pass --resume to continue it or choose another --out")
    if args.real_dir and not (Path(args.real_dir).is_dir() or (Path(args.real_dir).suffix.lower() == ".npz" and Path(args.real_dir).is_file())):
        raise InputError(f"--real-dir {args.real_dir} is neither a folder nor an aligned set (.npz from prepare_faces)")

    from tqdm import tqdm

    from encoders.training import TrainConfig, train_encoder

    from .checkpoints.loading import load_generator

    G = load_generator(args.network, device=args.device)
    bar = tqdm(total=cfg.iters, desc="training", unit="it", dynamic_ncols=True)

    def progress(it: int, total: int, losses: dict[str, float]) -> None:
        if bar.n == 0 and it > 1:
            bar.update(it - 1)  # resumed run: show where it started
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()})

    try:
        train_encoder(G, cfg, args.out, resume=args.resume, checkpoint_every=args.checkpoint_every, callback=progress)
    finally:
        bar.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
