"""Encode photos into latent grids that reproduce them, ready to edit.

    python -m spatial_latent.encode face.jpg [more.jpg | DIR] --network ffhq --outdir out

For every face (FFHQ-aligned first, unless --no-align) it writes, under --outdir:

    NAME_target.png        the aligned target the generator sees
    NAME_recon.png         the reconstruction
    NAME_compare.png       target | reconstruction side by side
    NAME.latent.safetensors  the LatentGrid: grid, optimized noise maps, generator fingerprint,
                           alignment transform, settings, version (LatentGrid.load reads it)
    NAME_metrics.json      loss curve, final MSE / PSNR (and LPIPS when used), time
    NAME_pasted.png        with --paste-back: the reconstruction put back into the photo

and summary.json for the whole run. Unreadable pictures and pictures without a face are reported
and skipped; the others are processed (exit status 1 when some were skipped). Each face's set is
written into a hidden temporary folder and moved into --outdir with NAME_metrics.json last, so a
killed run never leaves a latent without its pictures (a set without its metrics file is
incomplete; a later run removes the temporary folder). Existing sets are not replaced unless
--overwrite is given, and --outdir is created only when something is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ._version import __version__
from .atomic import write_json
from .cli import add_device_arg, add_network_arg, run_cli, with_exit_status
from .errors import InputError, SpatialLatentError

if TYPE_CHECKING:  # imported lazily at run time, so that --help does no work
    from .networks import Generator

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.encode",
        description="Encode photos into spatial latent grids that reproduce them. Faces are found (dlib "
        "landmarks) and aligned the way the network's training faces were (its stored template, e.g. the "
        "embedded faces model's; FFHQ's for other face models), then inverted: a learned encoder's grid "
        "(--encoder) or the average latent is the start, refined by --steps optimization steps. Writes "
        "the aligned target, the reconstruction, a side-by-side picture, the latent file and metrics "
        "per face, and summary.json.",
        epilog="The default network is the embedded faces model (offline). The default loss, auto, is LPIPS+MSE "
        "when torchvision's VGG/AlexNet weights are in the torch hub cache and MSE otherwise; the first line "
        "printed says which. On a CPU use few --steps (e.g. 100) and a small model.",
    )
    p.epilog = with_exit_status(p.epilog)
    p.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="pictures (JPEG, PNG, WebP, BMP, TIFF, GIF) or folders of them")
    add_network_arg(p, default="faces")
    p.add_argument("--outdir", type=Path, default=Path("out"), help="output folder, created if needed (default: out)")
    p.add_argument("--steps", type=int, default=500, help="optimization steps; 0 = the encoder's grid alone (default: 500)")
    p.add_argument("--encoder", type=Path, default=None, metavar="PATH", help="learned encoder giving the starting grid: a file from python -m spatial_latent.train_encoder, or faces (the one shipped for the faces model); default: start from the average latent")
    p.add_argument("--space", choices=["grid", "w+", "w"], default="grid", help="grid: a grid of latents per layer (most faithful); w+: one latent per layer; w: one latent (default: grid)")
    p.add_argument("--density", type=int, default=8, metavar="N", help="latent cells per image side for --space grid: the grid is N x N cells (default: 8)")
    p.add_argument("--grid-layers", choices=["w+", "w"], default="w+", help="one grid per layer (w+) or one shared by all layers (w) (default: w+)")
    p.add_argument("--loss", choices=["auto", "lpips+mse", "lpips", "mse"], default="auto", help="reconstruction loss; auto: lpips+mse when the LPIPS backbone weights are present, else mse (default: auto)")
    p.add_argument("--lpips-net", choices=["vgg", "alex"], default="vgg", help="LPIPS backbone (default: vgg)")
    p.add_argument("--lr", type=float, default=0.1, help="peak Adam learning rate, in units of W's spread; from an --encoder start it ramps up over 20%% of the steps (5%% from the average latent) and the noise maps get half of it (default: 0.1)")
    p.add_argument("--lr-rampup", type=float, default=None, metavar="F", help="fraction of the steps over which the learning rate ramps up (default: 0.2 from an --encoder start, 0.05 from the average latent; for real photos from --encoder faces, --lr 0.3 --lr-rampup 0.05 halves the gap to 500 steps from the average latent, see docs/BENCHMARKS.md)")
    p.add_argument("--latent-noise", type=float, default=None, metavar="F", help="exploration noise added to the latents at the start, x W's spread, ramped to 0 (default: 0.05 from the average latent, 0 from an --encoder start)")
    p.add_argument("--noise-reg", type=float, default=1e5, help="weight of the noise-map regularizer (default: 1e5)")
    p.add_argument("--dist-reg", type=float, default=1e-3, help="weight of the regularizer pulling grid cells toward the distribution of generated latents (default: 1e-3)")
    p.add_argument("--smooth-reg", type=float, default=0.0, help="weight of the smoothness penalty between neighbouring cells (default: 0)")
    p.add_argument("--no-noise-opt", action="store_true", help="keep the network's stored noise maps instead of optimizing them")
    p.add_argument("--seed", type=int, default=0, help="seed of the optimization's random draws (default: 0)")
    p.add_argument("--batch-size", type=int, default=4, help="faces optimized together (default: 4)")
    p.add_argument("--no-align", action="store_true", help="the pictures are already aligned face crops: only centre-crop and resize")
    p.add_argument("--face", type=int, default=0, metavar="N", help="which face to encode, 0 = the most confident (default: 0)")
    p.add_argument("--all-faces", action="store_true", help="encode every face found (NAME_face0, NAME_face1, ...)")
    p.add_argument("--detector", choices=["dlib", "opencv", "mediapipe"], default="dlib", help="landmark detector: dlib's 68 points (as FFHQ was made), OpenCV's cascades (rougher) or mediapipe (if installed) (default: dlib)")
    p.add_argument("--paste-back", action="store_true", help="also write the reconstruction pasted back into the photo (NAME_pasted.png)")
    p.add_argument("--max-side", type=int, default=4096, help="pictures larger than this are downscaled on reading (default: 4096)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of faces already encoded in --outdir (and its summary.json)")
    add_device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.density <= 256:
        raise InputError(f"--density {args.density}: cells per image side must be in [1, 256]")
    if args.batch_size < 1:
        raise InputError("--batch-size must be >= 1")
    if args.face < 0:
        raise InputError("--face must be >= 0 (0 = the largest face)")
    if args.all_faces and args.face:
        raise InputError("use either --face or --all-faces")
    if args.no_align and (args.all_faces or args.face):
        raise InputError("--face/--all-faces select detected faces; they do not apply with --no-align")
    if args.max_side < 64:
        raise InputError("--max-side must be >= 64")
    if not 0 <= args.seed < 2**63:
        raise InputError("--seed must be a non-negative integer")

    from .io.pictures import list_images

    paths = list_images(args.inputs)  # before the heavy imports: a typo in a path fails at once
    if not paths:
        raise InputError("no pictures to encode")
    if (args.outdir / "summary.json").exists() and not args.overwrite:
        raise InputError(f"{args.outdir / 'summary.json'} exists (an earlier run); pass --overwrite to replace its files or pick another --outdir")

    from encoders.optimize import OptimizeConfig

    loss = args.loss
    if loss == "auto":
        from encoders.losses import lpips_backbone_path

        weights = lpips_backbone_path(args.lpips_net)
        loss = "lpips+mse" if weights.is_file() else "mse"
        why = f"LPIPS backbone found at {weights}" if loss != "mse" else f"no LPIPS backbone at {weights}; place it there for lpips+mse"
        print(f"loss: {loss} ({why})", flush=True)
    cfg = OptimizeConfig(
        steps=args.steps, space=args.space, density=args.density, grid_layers=args.grid_layers, lr=args.lr,
        loss=loss, lpips_net=args.lpips_net, noise_reg=args.noise_reg, dist_reg=args.dist_reg,
        smooth_reg=args.smooth_reg, latent_noise=args.latent_noise, lr_rampup=args.lr_rampup, optimize_noise=not args.no_noise_opt, seed=args.seed,
    )
    cfg.validate()
    cfg = cfg.resolved("given" if args.encoder else "w_avg")  # the schedule that will run, as recorded

    from encoders.learned import load_encoder
    from encoders.losses import ReconstructionLoss, WStats

    from .checkpoints.loading import load_generator

    G = load_generator(args.network, device=args.device)
    device = G.device
    loss_fn = ReconstructionLoss(cfg.loss, cfg.lpips_net, cfg.mse_weight, cfg.lpips_weight, device=device)
    encoder = load_encoder(args.encoder, device=device, G=G) if args.encoder else None
    if cfg.steps == 0 and encoder is None:
        log.warning("--steps 0 without --encoder: the result is the average latent")
    stats = WStats.from_generator(G)
    detector = None
    template = G.align_template if G.align_template is not None else "ffhq"  # how its training faces were framed
    if not args.no_align:
        from .faces.align import FaceDetector

        detector = FaceDetector(args.detector)

    failures: list[dict[str, str]] = []  # --outdir is created by the first write: a lone bad photo leaves none
    results: list[dict[str, Any]] = []
    names: set[str] = set()
    t_start = time.perf_counter()
    pending: list[_Item] = []
    batches = 0
    # Pictures are read as the batches fill up, so a large folder never sits in memory at once.
    for k, path in enumerate(paths):
        try:
            pending.extend(_prepare(path, args, G.img_resolution, detector, names, template))
        except SpatialLatentError as e:
            if len(paths) == 1:
                raise  # a single picture: its own error is the message
            failures.append({"source": str(path), "error": str(e)})
            msg = str(e) if str(e).startswith(str(path)) else f"{path}: {e}"
            print(f"skipped {msg}", file=sys.stderr)
        while len(pending) >= args.batch_size or (pending and k == len(paths) - 1):
            batch, pending = pending[: args.batch_size], pending[args.batch_size :]
            batches += 1
            results.extend(_encode_batch(batch, G, cfg, encoder, loss_fn, stats, args, f"batch {batches}"))
    summary = {
        "toolkit_version": __version__,
        "network": str(args.network),
        "generator_fingerprint": G.fingerprint(),
        "encoder": str(args.encoder) if args.encoder else None,
        "settings": cfg.to_dict(),
        "device": str(device),
        "seconds": time.perf_counter() - t_start,
        "encoded": results,
        "skipped": failures,
    }
    args.outdir.mkdir(parents=True, exist_ok=True)
    write_json(args.outdir / "summary.json", summary)
    if not results:
        raise InputError(f"nothing was encoded ({len(failures)} picture(s) skipped; first: {failures[0]['error'] if failures else '-'})")
    for r in results:
        m = r["metrics"]
        extra = f"  LPIPS {m['lpips']:.4f}" if "lpips" in m else ""
        print(f"{r['name']}: PSNR {m['psnr']:.2f} dB  MSE {m['mse']:.5f}{extra}")
    print(f"wrote {len(results)} encoding(s) to {args.outdir}" + (f"; skipped {len(failures)}" if failures else ""))
    return 1 if failures else 0


@dataclasses.dataclass
class _Item:
    """One face to encode: its output name, the photo uint8 ``[H, W, 3]``, the aligned target
    uint8 ``[R, R, 3]``, the crop transform, the detected face (None with --no-align)."""

    name: str
    path: Path
    photo: Any
    aligned: Any
    transform: Any
    face: Any
    face_index: int | None
    scale: float


def _unique(name: str, names: set[str]) -> str:
    out, k = name, 2
    while out in names:
        out, k = f"{name}_{k}", k + 1
    names.add(out)
    return out


def _prepare(path: Path, args: argparse.Namespace, R: int, detector: Any, names: set[str], template: Any = "ffhq") -> list[_Item]:
    import numpy as np

    from .faces.align import AlignTransform, NoFaceError, face_transform, warp_aligned
    from .io.pictures import read_image

    loaded = read_image(path, max_side=args.max_side)
    photo = loaded.pixels
    h, w = photo.shape[:2]
    if min(h, w) < R // 4:
        log.warning("%s is only %dx%d; the %d px generator will see a blurry upscale", path, w, h, R)
    if args.no_align:
        s = min(h, w)
        if h != w:
            log.warning("%s is not square (%dx%d); using its centre square", path, w, h)
        y0, x0 = (h - s) // 2, (w - s) // 2
        t = AlignTransform(np.array([[s / R, 0, x0], [0, s / R, y0]]), R, (h, w))
        item = _Item(_unique(path.stem, names), path, photo, warp_aligned(photo, t, pad_blur=False), t, None, None, loaded.scale)
        _check_not_written(item.name, args)
        return [item]
    faces = detector.detect(photo)
    if not faces:
        raise NoFaceError("no face found; if it is already an aligned face crop, use --no-align")
    if args.all_faces:
        chosen = list(enumerate(faces))
    elif args.face >= len(faces):
        raise InputError(f"--face {args.face} requested but only {len(faces)} face(s) found (0 = the most confident)")
    else:
        chosen = [(args.face, faces[args.face])]
    items = []
    for k, face in chosen:
        if face.eyes_estimated:
            log.warning("%s face %d: eyes not detected, alignment estimated from the face box", path, k)
        t = face_transform(face, R, (h, w), template)
        name = path.stem + (f"_face{k}" if args.all_faces or args.face else "")
        items.append(_Item(_unique(name, names), path, photo, warp_aligned(photo, t), t, face, k, loaded.scale))
    for it in items:
        _check_not_written(it.name, args)
    return items


def _set_files(name: str, paste_back: bool) -> list[str]:
    """The files of one face's set, in the order they are moved into place (metrics last)."""
    files = [f"{name}.latent.safetensors", f"{name}_target.png", f"{name}_recon.png", f"{name}_compare.png"]
    return files + ([f"{name}_pasted.png"] if paste_back else []) + [f"{name}_metrics.json"]


def _check_not_written(name: str, args: argparse.Namespace) -> None:
    if args.overwrite:
        return
    existing = [args.outdir / f for f in _set_files(name, True) if (args.outdir / f).exists()]
    if existing:
        raise InputError(f"{existing[0]} exists; pass --overwrite to replace it")


def _publish(tmp: Path, outdir: Path, name: str, paste_back: bool) -> None:
    """Move a finished set from its temporary folder into ``outdir``, the metrics file last."""
    import os
    import shutil

    for f in _set_files(name, paste_back):
        os.replace(tmp / f, outdir / f)
    shutil.rmtree(tmp, ignore_errors=True)


def _encode_batch(batch: list[_Item], G: Generator, cfg: Any, encoder: Any, loss_fn: Any, stats: Any, args: argparse.Namespace, label: str) -> list[dict[str, Any]]:
    import os

    import numpy as np
    import torch
    from tqdm import tqdm

    from encoders.pipeline import encode

    from .faces.align import paste_back
    from .io.pictures import save_picture, to_uint8

    device = G.device
    targets = torch.from_numpy(np.stack([it.aligned for it in batch])).permute(0, 3, 1, 2).to(device, torch.float32) / 127.5 - 1
    bar = tqdm(total=cfg.steps, desc=label, unit="step", dynamic_ncols=True, disable=cfg.steps == 0)

    def progress(step: int, steps: int, losses: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(recon=f"{losses['recon']:.4f}", total=f"{losses['loss']:.4g}")

    try:
        inv = encode(G, targets, cfg, encoder=encoder, loss_fn=loss_fn, stats=stats, callback=progress)
    finally:
        bar.close()
    recon = to_uint8(inv.images)
    results = []
    args.outdir.mkdir(parents=True, exist_ok=True)
    for i, it in enumerate(batch):
        out = args.outdir / f".{it.name}.tmp-{os.getpid()}"  # the whole set, then moved into place
        out.mkdir(exist_ok=True)
        grid = inv.grid.replace(
            inv.grid.data[i : i + 1].detach().cpu(),
            extras={k: v[i : i + 1].detach().cpu() for k, v in inv.grid.extras.items()},
        )
        info = {
            "source": str(it.path),
            "name": it.name,
            "face_index": it.face_index,
            "face": it.face.to_dict() if it.face is not None else None,
            "aligned": not args.no_align,
            "alignment": it.transform.to_dict(),
            "read_scale": it.scale,
            "network": str(args.network),
            "encoder": str(args.encoder) if args.encoder else None,
            "toolkit_version": __version__,
        }
        grid.meta.update(info)
        grid.save(out / f"{it.name}.latent.safetensors")
        save_picture(it.aligned, out / f"{it.name}_target.png")
        save_picture(recon[i], out / f"{it.name}_recon.png")
        save_picture(np.concatenate([it.aligned, recon[i]], axis=1), out / f"{it.name}_compare.png")
        if args.paste_back:
            save_picture(paste_back(it.photo, recon[i], it.transform), out / f"{it.name}_pasted.png")
        record = dict(info, metrics=inv.metrics[i], seconds=inv.seconds / len(batch), steps=cfg.steps, settings=cfg.to_dict())
        write_json(out / f"{it.name}_metrics.json", dict(record, loss_curve=[c[i] for c in inv.loss_curve], recon_curve=[c[i] for c in inv.recon_curve]))
        _publish(out, args.outdir, it.name, args.paste_back)
        results.append(record)
    return results


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
