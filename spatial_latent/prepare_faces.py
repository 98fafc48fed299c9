"""Align a folder of face photos to one template and cache them as one array.

    python -m spatial_latent.prepare_faces ../shared/datasets/faces --out faces64.npz --size 64

The cache feeds ``python -m spatial_latent.train --mode whole --data faces64.npz`` and the face
labeler. See :mod:`spatial_latent.faces.dataset`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from .cli import run_cli, with_exit_status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spatial_latent.prepare_faces", description="Detect dlib landmarks in every photo under a folder, align each face to a template and write one .npz cache (images, names, a fixed validation split).")
    p.epilog = with_exit_status(p.epilog)
    p.add_argument("folder", type=Path, help="folder of face photos (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--size", type=int, default=64, help="aligned size in pixels (default 64)")
    p.add_argument("--template", default="faces", help="alignment template: faces (default) or ffhq")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--limit", type=int, default=None, help="only the first N photos (for a quick look)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from .errors import InputError
    from .faces.dataset import prepare_aligned

    if args.out.exists() and not args.overwrite:
        raise InputError(f"{args.out} exists; pass --overwrite to replace it")
    if not 8 <= args.size <= 1024:
        raise InputError(f"--size must be in 8..1024, got {args.size}")
    t0 = time.perf_counter()
    faces = prepare_aligned(args.folder, args.size, args.template, args.workers, args.limit,
                            progress=lambda it, n: tqdm(it, total=n, unit="photo", desc="align"))
    faces.save(args.out)
    dt = time.perf_counter() - t0
    n = len(faces.names)
    print(f"{args.out}: {n} faces ({int(faces.validation.sum())} validation), {faces.skipped} photos without a face, "
          f"{dt:.0f} s ({(n + faces.skipped) / dt:.0f} photos/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
