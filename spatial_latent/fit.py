"""Fit edit directions for a generator and save them in a direction bank.

    python -m spatial_latent.fit --network ffhq --labeler brightness:left --samples 10000 --out bank.npz
    python -m spatial_latent.fit --network ffhq --labeler scores.csv --name smile --out bank.npz --append
    python -m spatial_latent.fit --network ffhq --sefa 10 --pca 10 --out bank.npz --append

Supervised directions come from samples drawn and labeled here (a built-in labeler or a
``package.module:function``) or from a CSV of scores for image files whose latents lie beside
them (``--export-samples DIR`` writes such images and latents, for labelling by hand or with
another tool). Unsupervised directions: ``--pca K`` (per-location PCA of drawn samples) and
``--sefa K`` (closed form from the generator's weights).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from spatial_latent.cli import add_device_arg, add_network_arg, add_noise_mode_arg, run_cli, with_exit_status
from spatial_latent.errors import InputError

if TYPE_CHECKING:  # imported when needed at run time, so that --help stays light
    from spatial_latent.latents.grid import LatentGrid
    from spatial_latent.networks import Generator


def parse_grid_shape(text: str) -> tuple[int, int]:
    """A grid's shape in cells, ``'4x8'`` (rows x columns) or ``'4'`` (= 4x4) -> ``(h, w)``."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise InputError(f"bad --grid {text!r}; use e.g. 4x8 (rows x columns of cells) or 4 (= 4x4)")
    return parts[0], parts[1]


def parse_layers(text: str) -> list[int]:
    """``'0-3,8'`` -> ``[0, 1, 2, 3, 8]``."""
    out: list[int] = []
    try:
        for part in text.split(","):
            a, _, b = part.strip().partition("-")
            lo, hi = int(a), int(b) if b else int(a)
            if hi < lo or lo < 0:
                raise ValueError
            out.extend(range(lo, hi + 1))
    except ValueError:
        raise InputError(f"bad layer list {text!r}; use e.g. 0-3,8") from None
    return sorted(set(out))


def parse_groups(text: str) -> list[tuple[int, int]]:
    """``'0-3,4-7'`` (inclusive ranges) -> ``[(0, 4), (4, 8)]`` (``[start, stop)``)."""
    groups = []
    for part in text.split(","):
        layers = parse_layers(part)
        groups.append((layers[0], layers[-1] + 1))
    return groups


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.fit",
        description="Fit edit directions (one per latent-grid location) for a generator and save them, "
        "named, in a direction bank (.npz without pickles) for python -m spatial_latent.edit.",
        epilog="Labelers: brightness, red, green, blue, saturation, contrast (optionally :left, :right, "
        ":top, :bottom, :center or :x0,y0,x1,y1 as fractions of the image), NAME-map for per-location "
        "score maps, package.module:function (your callable: images [B,3,H,W] in [-1,1] -> [B] scores "
        "or [B,h,w] maps), or a CSV file with columns file,score (the latent of each file is the "
        ".safetensors beside it).",
    )
    p.epilog = with_exit_status(p.epilog)
    add_network_arg(p)
    p.add_argument("--out", type=Path, required=True, help="direction bank to write (.npz)")
    p.add_argument("--append", action="store_true", help="add to the bank at --out instead of replacing it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out bank (and --export-samples files)")
    p.add_argument("--labeler", metavar="NAME|CSV|MODULE:FN", help="what to fit (see below); leave out for only --pca/--sefa/--export-samples")
    p.add_argument("--column", help="score column of a CSV with several")
    p.add_argument("--name", help="attribute name in the bank (default: the labeler's)")
    g = p.add_argument_group("samples drawn from the generator")
    g.add_argument("--samples", type=int, default=2000, help="number of grids to draw (default: 2000)")
    g.add_argument("--density", type=int, default=8, metavar="N", help="latent cells per native image side; match the grids you will edit (default: 8, the encode tool's default)")
    g.add_argument("--grid", type=parse_grid_shape, default=None, metavar="HxW", help="shape of each sample's grid in cells, rows x columns, e.g. 4x8 (default: NxN for --density N, so one sample is one image)")
    g.add_argument("--cell-mix", type=float, default=0.5, help="0 = every cell the same latent, 1 = independent cells (default: 0.5)")
    g.add_argument("--trunc", type=float, default=1.0, metavar="PSI", help="truncation psi of the drawn latents (default: 1)")
    g.add_argument("--padding", choices=["zero", "none"], default="zero", help="how samples are rendered (default: zero, as the network was trained)")
    add_noise_mode_arg(g, "const", "per-layer noise of the drawn samples: the network's stored maps, seeded random, or off")
    g.add_argument("--batch", type=int, default=64, help="grids per forward pass (default: 64)")
    g.add_argument("--seed", type=int, default=0, help="seed of the samples and of the held-out split (default: 0)")
    g.add_argument("--export-samples", type=Path, metavar="DIR", help="also write each sample as DIR/sampleNNNNNN.png + .safetensors, and DIR/scores.csv to fill in")
    f = p.add_argument_group("fitting")
    f.add_argument("--method", choices=["logistic", "svm", "ridge", "gradient"], default="logistic", help="linear model, or gradient: the labeler's own latent gradient averaged over the samples (a differentiable labeler: face:NAME, the pixel statistics; per location by construction, large where the attribute lives) (default: logistic)")
    f.add_argument("--locations", choices=["auto", "joint", "independent", "shared"], default="auto", help="one model on the whole grid (joint), one per cell (independent), one step for all cells (shared); auto: joint for per-image scores, independent for score maps")
    f.add_argument("--select", type=float, default=0.2, metavar="RATIO", help="classifiers keep this fraction of highest and of lowest scores (default: 0.2; 0.5 = median split)")
    f.add_argument("--val", type=float, default=0.3, help="held-out fraction for the reported accuracy (default: 0.3)")
    f.add_argument("--regularization", type=float, default=1.0, help="C of logistic/svm, alpha of ridge (default: 1)")
    f.add_argument("--layer-groups", type=parse_groups, metavar="A-B,C-D", help="fit these ws-row ranges separately (w+ latents from a CSV only)")
    f.add_argument("--region", type=_box, metavar="x0,y0,x1,y1", help="record this box (output pixels) as the direction's default edit region: python -m spatial_latent.edit uses it when given no region")
    f.add_argument("--default-strength", type=float, metavar="S", help="record the strength python -m spatial_latent.edit uses by default for this direction (default: 1)")
    f.add_argument("--condition-on", metavar="NAME,...", help="project out these directions (already in the bank; with --append)")
    u = p.add_argument_group("unsupervised")
    u.add_argument("--pca", type=int, default=0, metavar="K", help="add K per-location PCA directions of the drawn samples (pca0..)")
    u.add_argument("--sefa", type=int, default=0, metavar="K", help="add K SeFa directions from the generator's weights (sefa0..)")
    u.add_argument("--sefa-layers", type=parse_layers, metavar="A-B,...", help="ws rows SeFa looks at (default: all); the directions then edit only those")
    add_device_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--list-labelers", action="store_true", help="list the built-in labelers and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_labelers:
        from attributes.labelers import list_labelers

        for name, text in list_labelers().items():
            print(f"{name:18s} {text}")
        return 0
    _check_args(args)

    import torch

    from spatial_latent.checkpoints.loading import load_generator

    from attributes.bank import DirectionBank
    from attributes.supervised import AttributeModel

    bank = None
    if args.append:
        if not args.out.is_file():
            raise InputError(f"--append: no bank at {args.out}")
        bank = DirectionBank.load(args.out)  # read first: a bad bank fails before any work
    G = load_generator(args.network, device=args.device)
    fp = G.fingerprint()
    if bank is None:
        bank = DirectionBank.for_generator(G)
    bank.check_generator(fp)
    conditions = [bank[n.strip()] for n in args.condition_on.split(",")] if args.condition_on else []
    progress = not args.quiet
    added = []

    grids = labels = None
    is_csv = args.labeler is not None and args.labeler.lower().endswith(".csv")
    if (args.labeler and args.method != "gradient") or args.pca or args.export_samples:
        model = AttributeModel(
            method="logistic" if args.method == "gradient" else args.method,
            locations=args.locations,
            layer_groups=args.layer_groups,
            select_ratio=args.select,
            val_fraction=args.val,
            regularization=args.regularization,
            seed=args.seed,
        )
        if is_csv:
            from attributes.direction import grid_fingerprint
            from attributes.labelers import load_csv_dataset

            grids, labels, _ = load_csv_dataset(args.labeler, args.column)
            csv_fp = grid_fingerprint(grids.meta)
            if csv_fp and csv_fp != fp:
                raise InputError(f"the CSV's latents were made with generator {csv_fp}, not this one ({fp})")
            grids.check_for(G.num_ws, G.w_dim)
            name = args.name or Path(args.labeler).stem
        else:
            grids, labels, name = _draw(G, args, progress)
        if args.labeler and args.method != "gradient":
            d = model.fit(grids, labels, name=name, condition_on=conditions, progress=progress)
            d.meta.update(generator=fp, labeler=args.labeler, network=str(args.network))
            added.append(d)
    if args.labeler and args.method == "gradient":
        added.insert(0, _fit_gradient(G, args, conditions, progress))
    if args.labeler:  # the supervised direction comes first
        if args.region is not None:
            added[0].meta["region"] = list(args.region)
        if args.default_strength is not None:
            added[0].meta["default_strength"] = args.default_strength
    if args.pca:
        from attributes.unsupervised import pca_directions

        for d in pca_directions(grids, args.pca, per_location=args.locations != "shared"):
            d.meta.update(generator=fp, network=str(args.network))
            added.append(d)
    if args.sefa:
        from attributes.unsupervised import sefa_directions

        with torch.no_grad():
            added.extend(sefa_directions(G, args.sefa, layers=args.sefa_layers))
    for d in added:
        bank.add(d, replace=args.append)
    if args.export_samples:
        print(f"exported {args.samples} samples (PNG + latent) and scores.csv to {args.export_samples}")
    if added:
        bank.save(args.out)
        for d in added:
            print(d.summary())
        print(f"wrote {len(bank)} directions to {args.out}")
    return 0


def _check_args(args: argparse.Namespace) -> None:
    if not (args.labeler or args.pca or args.sefa or args.export_samples):
        raise InputError("nothing to do: give --labeler, --pca, --sefa or --export-samples")
    if args.out.exists() and not (args.append or args.overwrite):
        raise InputError(f"{args.out} exists; pass --append to add to it or --overwrite to replace it")
    if args.export_samples and (args.export_samples / "scores.csv").exists() and not args.overwrite:
        raise InputError(f"{args.export_samples / 'scores.csv'} exists (samples of an earlier run); pass --overwrite to replace them")
    if args.samples < 1 or args.batch < 1:
        raise InputError("--samples and --batch must be >= 1")
    if args.density < 1:
        raise InputError("--density must be >= 1")
    if args.pca < 0 or args.sefa < 0:
        raise InputError("--pca and --sefa take a positive count")
    if args.condition_on and not args.append:
        raise InputError("--condition-on names directions of an existing bank: add --append")
    if args.layer_groups and not (args.labeler or "").lower().endswith(".csv"):
        raise InputError("--layer-groups needs w+ latents (from a CSV); drawn samples are 'w' grids")
    if args.method == "gradient":
        if not args.labeler or args.labeler.lower().endswith(".csv"):
            raise InputError("--method gradient needs a differentiable built-in labeler (e.g. face:Smiling), not a CSV of scores")
        if args.layer_groups:
            raise InputError("--method gradient fits 'w' directions; --layer-groups does not apply")
    if args.default_strength is not None and not math.isfinite(args.default_strength):
        raise InputError(f"--default-strength must be a finite number, got {args.default_strength}")
    if (args.region is not None or args.default_strength is not None) and not args.labeler:
        raise InputError("--region and --default-strength describe a fitted direction: give --labeler")
    if args.sefa_layers is not None and not args.sefa:
        raise InputError("--sefa-layers given without --sefa")


def _fit_gradient(G: Generator, args: argparse.Namespace, conditions: list[Any], progress: bool) -> Any:
    """``--method gradient``: average the labeler's latent gradient over drawn grids."""
    from attributes.direction import conditional
    from attributes.gradient import fit_gradient
    from attributes.labelers import get_labeler

    labeler = get_labeler(args.labeler)
    d = fit_gradient(
        G, labeler, args.samples, cells=args.grid or (args.density, args.density), density=args.density, cell_mix=args.cell_mix,
        truncation_psi=args.trunc, seed=args.seed, batch_size=args.batch, val_fraction=args.val,
        locations="shared" if args.locations == "shared" else "per-cell", padding=args.padding, noise_mode=args.noise_mode,
        name=args.name, progress=progress,
    )
    d.meta.update(labeler=args.labeler, network=str(args.network))
    return conditional(d, conditions) if conditions else d


def _box(text: str) -> tuple[float, float, float, float]:
    from .latents.masks import check_box  # the rule a bank's recorded region is read back with

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad box {text!r}: use x0,y0,x1,y1 (output pixels)") from None
    try:
        return check_box(values)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad box {text!r}: {e}") from None


def _draw(G: Generator, args: argparse.Namespace, progress: bool) -> tuple[LatentGrid, Any, str]:
    """Draw and label samples (or only draw, for PCA / export): grids ``[N, 1, C, h, w]`` at
    ``--density`` with the ``--grid`` shape, their labels (None without a labeler) and a name."""
    from attributes.labelers import get_labeler
    from attributes.sampling import sample_labeled

    if args.labeler:
        labeler = get_labeler(args.labeler)
    else:
        labeler = _no_label
    export = _Exporter(args.export_samples, G.fingerprint()) if args.export_samples else None
    grids, labels = sample_labeled(
        G,
        labeler,
        args.samples,
        cells=args.grid or (args.density, args.density),
        density=args.density,
        cell_mix=args.cell_mix,
        truncation_psi=args.trunc,
        seed=args.seed,
        batch_size=args.batch,
        padding=args.padding,
        noise_mode=args.noise_mode,
        progress=progress,
        on_batch=export,
    )
    if export is not None:
        export.finish()
    name = args.name or getattr(labeler, "name", "attribute")
    return grids, labels if args.labeler else None, name


def _no_label(images: Any) -> Any:
    import torch

    return torch.zeros(images.shape[0])


class _Exporter:
    """Writes each drawn sample as a PNG with its latent beside it, plus a CSV to fill in."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.fingerprint, self.names = folder, fingerprint, []

    def __call__(self, start: int, grids: Any, images: Any) -> None:
        from spatial_latent.io.pictures import save_picture, to_uint8

        for k, pic in enumerate(to_uint8(images)):
            stem = f"sample{start + k:06d}"
            save_picture(pic, self.folder / f"{stem}.png")
            one = grids.replace(grids.data[k : k + 1].cpu(), meta={"generator_fingerprint": self.fingerprint, "sample": start + k})
            one.save(self.folder / f"{stem}.safetensors")
            self.names.append(f"{stem}.png")

    def finish(self) -> None:
        from spatial_latent.atomic import atomic_write

        with atomic_write(self.folder / "scores.csv") as tmp:
            tmp.write_text("file,score\n" + "".join(f"{n},\n" for n in self.names))


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
