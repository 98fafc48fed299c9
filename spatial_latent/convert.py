"""Convert any supported StyleGAN2 checkpoint to the native format (safetensors + JSON config).

    python -m spatial_latent.convert network-snapshot.pkl network.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from .cli import add_device_arg, run_cli, with_exit_status
from .errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.convert",
        description="Read a checkpoint in any supported format (NVIDIA .pkl, TensorFlow .pkl, "
        "rosinality or pSp/e4e .pt, native) without running any code from it, and write the "
        "generator in the native .safetensors format, which cannot run code either.",
    )
    p.epilog = with_exit_status(p.epilog)
    p.add_argument("input", metavar="IN", help="checkpoint file or well-known network name")
    p.add_argument("output", metavar="OUT", type=Path, help="output .safetensors file")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.output.suffix != ".safetensors":
        raise InputError(f"output must end in .safetensors, got {args.output}")
    if args.output.exists() and not args.overwrite:
        raise InputError(f"{args.output} exists; pass --overwrite to replace it")

    from .checkpoints.loading import load_generator, save_generator

    G = load_generator(args.input, device=args.device)
    save_generator(G, args.output)
    cfg = G.config
    print(
        f"wrote {args.output}: {cfg.img_resolution}px, {cfg.architecture}, z_dim={cfg.z_dim}, "
        f"w_dim={cfg.w_dim}, num_ws={cfg.num_ws}, c_dim={cfg.c_dim}, from {cfg.source_format}, fingerprint {G.fingerprint()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
