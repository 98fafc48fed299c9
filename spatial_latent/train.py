"""Train or fine-tune a StyleGAN2: padding-free on random crops, or on whole aligned faces.

    python -m spatial_latent.train --data builtin:textures --out run/ --steps 5000
    python -m spatial_latent.train --mode whole --data faces64.npz --preset faces --out run/
    python -m spatial_latent.train --data photos/ --out run/ --init ffhq.pkl --crop 64
    python -m spatial_latent.train --data builtin:textures --out run/ --resume-from run/checkpoint.pt

Writes into ``--out``: ``checkpoint.pt`` (resumable, every ``--checkpoint-every`` steps and at
the end), ``generator.safetensors`` (the EMA generator in the native format, usable as
``--network`` by every tool), ``samples_<step>.png`` (fixed-seed crops and one wide render),
``metrics.jsonl`` (losses, SWD at 1x and 4x the crop size) and ``run.json`` (settings).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Sequence

from typing import TYPE_CHECKING

from .atomic import write_json
from .cli import add_device_arg, run_cli, with_exit_status
from .errors import InputError

if TYPE_CHECKING:  # imported when needed, so that --help stays light
    from .networks import Generator

log = logging.getLogger(__name__)

PRESETS = {
    # The embedded demo model: 32 px class, small enough to train on a CPU in about an hour.
    # The embedded faces model: 64 px, zero padding, trained whole-image on aligned photos; 0.9 M
    # parameters, sized for a few CPU hours (about 0.6 s per batch of 16 on 2 cores).
    "faces": dict(z_dim=128, w_dim=128, img_resolution=64, channels={4: 128, 8: 128, 16: 96, 32: 48, 64: 24}, mapping_layers=2),
    "demo": dict(z_dim=128, w_dim=128, img_resolution=32, channels={4: 64, 8: 64, 16: 32, 32: 32}, mapping_layers=4),
    # 16 px, for tests and smoke runs of training (smaller than the built-in 'tiny' network, a
    # 32 px generator that load_generator("tiny") builds untrained).
    "smoke": dict(z_dim=32, w_dim=32, img_resolution=16, channels={4: 32, 8: 32, 16: 16}, mapping_layers=2),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.train",
        description="Train (or fine-tune) a padding-free spatial StyleGAN2 on random crops, with spatially "
        "correlated latent grids, so that it renders consistent images of any size.",
    )
    p.epilog = with_exit_status(p.epilog)
    p.add_argument("--data", required=True, help="folder of images, or builtin:NAME[,NAME] (hubble_deep_field, grass, gravel, brick, coffee, astronaut, china, flower; textures = grass,gravel,brick); for --mode whole an aligned set .npz from python -m spatial_latent.prepare_faces")
    p.add_argument("--mode", choices=["crops", "whole"], default="crops", help="crops: padding-free on random crops (scenes, default); whole: whole aligned images with zero padding (faces)")
    p.add_argument("--augment", default=None, help="DiffAugment policy: any of color,translation,cutout ('' for none; default: all three in whole mode, none in crops mode)")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, samples, metrics, generator.safetensors)")
    p.add_argument("--init", help="start from this generator (any supported checkpoint or name); default: a fresh one (--preset)")
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="architecture of a fresh generator (default: demo)")
    p.add_argument("--resume-from", type=Path, help="continue a run from its checkpoint.pt (settings come from the checkpoint)")
    p.add_argument("--steps", type=int, default=5000, help="total training steps (a resumed run continues up to this)")
    p.add_argument("--batch", type=int, default=8, help="images per step (default 8)")
    p.add_argument("--crop", type=int, default=32, help="training crop size in pixels, a power of two (default 32; whole mode: the images' size)")
    p.add_argument("--data-scale", type=float, default=1.0, help="resize the training images by this factor first (default 1)")
    p.add_argument("--lr", type=float, default=0.002, help="Adam learning rate for G and D (default 0.002)")
    p.add_argument("--r1-gamma", type=float, default=None, help="R1 regularization weight (default 0.0002 * size^2 / batch, the stylegan2-ada heuristic; given with --resume-from it replaces the run's)")
    p.add_argument("--density", type=int, default=4, metavar="N", help="latent cells per native image side (default 4)")
    p.add_argument("--correlation", type=float, default=2.0, help="correlation length of the latent field, in cells (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--sample-every", type=int, default=500, help="write a sample PNG and SWD every N steps (0: only at the end)")
    p.add_argument("--checkpoint-every", type=int, default=250, help="write checkpoint.pt every N steps (default 250)")
    p.add_argument("--swd-images", type=int, default=64, help="crops per SWD estimate (default 64)")
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    p.add_argument("--no-noise", action="store_true", help="whole mode: no noise inputs (strengths held at 0); also switches a resumed run's noise off")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    add_device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np
    import torch

    from .networks import Generator
    from tqdm import tqdm

    from .training.data import CropSampler, ImageSetSampler, load_images
    from .faces.dataset import AlignedFaces
    from .checkpoints.loading import load_generator, random_generator, resolve_device
    from .training.trainer import Trainer, TrainConfig, generator_config_from, read_training_checkpoint, swd_by_scale, swd_whole, train_config_from

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    out: Path = args.out
    state = None
    if args.resume_from is not None:
        state = read_training_checkpoint(args.resume_from)
        cfg = train_config_from(state)
        cfg.steps = args.steps
        if args.no_noise:
            cfg.noise = False
        if args.r1_gamma is not None:
            cfg.r1_gamma = args.r1_gamma
        G = Generator(generator_config_from(state))  # weights and w_avg come from the checkpoint
        run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
        data, data_scale = run.get("data", args.data), run.get("data_scale", args.data_scale)
    else:
        augment_policy = args.augment if args.augment is not None else ("color,translation,cutout" if args.mode == "whole" else "")
        cfg = TrainConfig(
            mode=args.mode, augment=augment_policy, noise=not args.no_noise, crop=args.crop, batch=args.batch, steps=args.steps, lr_g=args.lr, lr_d=args.lr,
            r1_gamma=args.r1_gamma if args.r1_gamma is not None else -1.0,
            density=args.density, correlation=args.correlation, seed=args.seed, amp=not args.no_amp,
        )
        cfg.validate()
        if args.init:
            G = load_generator(args.init).float()
            G.config.num_fp16_res = 0
        else:
            torch.manual_seed(cfg.seed)
            G = random_generator(PRESETS[args.preset], seed=cfg.seed)
        data, data_scale = args.data, args.data_scale
        if (out / "checkpoint.pt").exists():
            raise InputError(f"{out} already holds a run; continue it with --resume-from {out / 'checkpoint.pt'} or pick another --out")
    if G.img_resolution % cfg.density:
        raise InputError(f"--density {cfg.density} must divide the generator resolution {G.img_resolution}")
    validation, align_template = None, None
    if cfg.mode == "whole":
        faces = AlignedFaces.load(data)
        train_idx, val_idx = faces.split(False), faces.split(True)
        sampler = ImageSetSampler(faces.images[train_idx])
        validation = ImageSetSampler(faces.images[val_idx]).tensors(np.arange(len(val_idx))) if len(val_idx) >= 16 else None
        cfg.crop = sampler.size
        align_template = faces.template.to_dict()
        names = [f"{len(train_idx)} aligned photos ({faces.template.name} template), {len(val_idx)} held out"]
        images = list(range(len(train_idx)))
    else:
        images, names = load_images(data, scale=data_scale)
        sampler = CropSampler(images, cfg.crop)
    if cfg.r1_gamma < 0:  # the stylegan2-ada heuristic, once the real image size is known
        cfg.r1_gamma = 0.0002 * cfg.crop**2 / cfg.batch
    out.mkdir(parents=True, exist_ok=True)

    trainer = Trainer(G, sampler, cfg, device)
    if state is not None:
        trainer.load_state(state)
        print(f"resumed {args.resume_from} at step {trainer.step_index}")
    run_info = {"data": data, "data_scale": data_scale, "images": names, "train_config": dataclasses.asdict(cfg),
                "generator": {"img_resolution": G.img_resolution, "channels": G.config.channels},
                "device": str(device), "init": args.init, "align_template": align_template}
    write_json(out / "run.json", run_info)
    print(f"training on {len(images)} image(s) ({', '.join(names[:6])}) on {device}; writing to {out}")

    t_start = time.perf_counter()

    def report(tr: Trainer) -> None:
        _write_samples(tr, out)
        if cfg.mode == "whole":
            rec = {"step": tr.step_index, "kimg": tr.step_index * cfg.batch / 1000, "seconds": time.perf_counter() - t_start}
            if validation is not None:
                rec["swd_val"] = swd_whole(tr, validation[: args.swd_images])
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            tqdm.write(f"step {tr.step_index}: " + ", ".join(f"{k} {v:.1f}" for k, v in rec.items() if k != "step"))
            return
        swd = swd_by_scale(tr, count=args.swd_images, scales=(1, 4))
        swd1, swd4 = swd[1], swd[4]
        rec = {"step": tr.step_index, "swd_1x": swd1, "swd_4x": swd4, "seconds": time.perf_counter() - t_start}
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        tqdm.write(f"step {tr.step_index}: SWD 1x {swd1:.1f}, 4x {swd4:.1f}")

    def checkpoint(tr: Trainer) -> None:
        tr.save(out / "checkpoint.pt")

    try:
        with tqdm(total=cfg.steps, initial=trainer.step_index, unit="step", desc="train") as bar:
            while trainer.step_index < cfg.steps:
                stats = trainer.step()
                bar.update(1)
                bar.set_postfix(d=f"{stats['loss_d']:.3f}", g=f"{stats['loss_g']:.3f}", refresh=False)
                k = trainer.step_index
                if args.checkpoint_every > 0 and k % args.checkpoint_every == 0:
                    checkpoint(trainer)
                if args.sample_every > 0 and k % args.sample_every == 0:
                    report(trainer)
    except KeyboardInterrupt:
        checkpoint(trainer)
        print(f"interrupted at step {trainer.step_index}; continue with --resume-from {out / 'checkpoint.pt'}")
        return 130
    checkpoint(trainer)
    if args.sample_every <= 0 or trainer.step_index % args.sample_every:
        report(trainer)
    export_generator(trainer, out / "generator.safetensors", run_info)
    print(f"done: {out / 'generator.safetensors'} (step {trainer.step_index}, {time.perf_counter() - t_start:.0f} s)")
    return 0


def export_generator(trainer, path: Path, run_info: dict) -> Path:
    """The EMA generator in the native format, with the training settings in its metadata."""
    from .checkpoints.native import write_native

    G = trainer.G_ema
    meta = {"fingerprint": G.fingerprint(), "training": json.dumps({"steps": trainer.step_index, **run_info})}
    if run_info.get("align_template"):
        meta["align_template"] = json.dumps(run_info["align_template"], sort_keys=True)
    return write_native(path, G.config, {k: v.detach().cpu() for k, v in G.state_dict().items()}, meta)


def _write_samples(trainer, out: Path) -> None:
    from .io.pictures import image_grid, save_picture, to_uint8

    crop = trainer.cfg.crop
    if trainer.cfg.mode == "whole":
        save_picture(image_grid(to_uint8(trainer.samples(64, (crop, crop))), cols=8), out / f"samples_{trainer.step_index:06d}.png")
        return
    crops = to_uint8(trainer.samples(16, (crop, crop)))
    wide = to_uint8(trainer.samples(1, (crop * 2, crop * 8)))[0]
    grid = image_grid(crops, cols=8)
    import numpy as np

    canvas = np.zeros((grid.shape[0] + wide.shape[0] + 4, max(grid.shape[1], wide.shape[1]), 3), dtype=np.uint8)
    canvas[: grid.shape[0], : grid.shape[1]] = grid
    canvas[grid.shape[0] + 4 :, : wide.shape[1]] = wide
    save_picture(canvas, out / f"samples_{trainer.step_index:06d}.png")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
