"""The main job on the embedded demo model: an extended scene, an encode round trip and an edit.

    python -m spatial_latent.demo --outdir out

Runs offline on the CPU in a few minutes and writes into ``--outdir``:

- ``scene.png``: a seamless extended scene rendered tile by tile from a latent field;
- ``roundtrip/``: a window of the scene encoded into a latent grid and rendered back
  (target, reconstruction, side-by-side, latent file, metrics);
- ``bank.npz`` + ``edited.png`` / ``edit_strip.png``: a per-location "brightness" direction
  fitted on the model's own samples, applied to the left half of the encoded grid.

Each step is the same command a user would type (``sample``, ``encode``, ``spatial_latent.fit``,
``edit``); ``--network`` swaps the model (``tiny`` for a smoke test).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from .cli import add_device_arg, add_network_arg, run_cli, with_exit_status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.demo",
        description="Render an extended scene, encode a window of it back into a latent grid, and edit that "
        "grid locally, with the embedded demo model (offline, CPU friendly).",
    )
    p.epilog = with_exit_status(p.epilog)
    add_network_arg(p, default="demo", required=False)
    p.add_argument("--outdir", type=Path, default=Path("out"), help="output folder (default: out)")
    p.add_argument("--size", default="2048x512", help="scene size WIDTHxHEIGHT in pixels (default: 2048x512)")
    p.add_argument("--seed", type=int, default=1, help="seed of the scene's latent field (default: 1)")
    p.add_argument("--steps", type=int, default=200, help="optimization steps of the encode round trip (default: 200)")
    p.add_argument("--samples", type=int, default=600, help="generated samples to fit the edit direction on (default: 600)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run")
    add_device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np
    from PIL import Image

    from spatial_latent import fit
    from . import edit, encode, sample
    from .checkpoints.loading import load_generator

    out: Path = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    net, dev = ["--network", str(args.network)], ["--device", args.device]
    res = load_generator(args.network).img_resolution
    t0 = time.perf_counter()

    print(f"[1/3] extended scene {args.size} from latent field seed {args.seed}")
    scene = out / "scene.png"
    flags = ["--overwrite"] if args.overwrite or scene.exists() else []
    if sample.main(net + dev + ["--size", args.size, "--seed", str(args.seed), "--out", str(scene)] + flags) != 0:
        return 1

    print(f"[2/3] encode round trip: a {res}x{res} window of the scene -> latent grid -> image")
    rt = out / "roundtrip"
    rt.mkdir(exist_ok=True)
    pic = np.asarray(Image.open(scene).convert("RGB"))
    y0, x0 = (pic.shape[0] - res) // 2, (pic.shape[1] - res) // 2
    target = rt / "window.png"
    Image.fromarray(pic[y0 : y0 + res, x0 : x0 + res]).save(target)
    if encode.main([str(target)] + net + dev + ["--no-align", "--loss", "mse", "--steps", str(args.steps),
                                                "--grid", "4x4", "--outdir", str(rt)]) != 0:
        return 1
    latent = next(rt.glob("*.safetensors"))

    print("[3/3] local edit: fit a per-location brightness direction, brighten the left half")
    bank = out / "bank.npz"
    if fit.main(net + dev + ["--out", str(bank), "--labeler", "brightness:left", "--samples", str(args.samples),
                             "--cells", "4x4", "--density", "4",
                             "--quiet"]) != 0:
        return 1
    if edit.main([str(latent)] + net + dev + ["--bank", str(bank), "--attr", "brightness", "--strength", "2",
                                              "--region", f"0,0,{res // 2},{res}", "--out", str(out / "edited.png"),
                                              "--strip", str(out / "edit_strip.png")]) != 0:
        return 1
    print(f"done in {time.perf_counter() - t0:.0f} s: {scene}, {rt}/, {out / 'edited.png'}, {out / 'edit_strip.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
