"""Apply named directions from a direction bank to a latent grid, where you choose, and render it.

    python -m spatial_latent.edit out/face.latent.safetensors --attr smile --out smiling.png
    python -m spatial_latent.edit latent.safetensors --network ffhq --bank bank.npz \\
        --attr smile --strength 2 --region 64,128,192,200 --out edited.png --strip strip.png

A latent of the embedded ``faces`` model needs no bank: the one shipped for it is used (smile,
eyeglasses, bangs, age, gender), each direction with the region and strength it records (the
mouth for smile); ``--strength`` and ``--region`` override them.

The latent file is one written by ``LatentGrid.save`` (e.g. by the encode tool); the bank one
written by ``python -m spatial_latent.fit``. ``--network`` may be left out when the latent's metadata
records it (``meta['network']``); the generator's fingerprint must match the bank's (and the
latent's ``meta['generator_fingerprint']`` where recorded). Edits add ``strength x direction``
inside a region: ``--region x0,y0,x1,y1`` (a box in output pixels, end-exclusive; cells partly
inside get their covered fraction), ``--mask mask.png`` (grey levels 0..255 -> 0..1, the size of
the output image) or ``--edit-cells ROW,COL ...``; without any, the whole grid. Several ``--attr``
apply together (each may have its own ``--strength`` and ``--region``). ``--strip`` writes the
first attribute at several strengths side by side, for looking. A latent file holding optimized noise maps (the encode tool saves
them) is rendered with them, so strength 0 reproduces the encoded reconstruction; see
``--ignore-saved-noise``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .cli import add_device_arg, add_network_arg, add_noise_mode_arg, run_cli, with_exit_status
from .errors import InputError

if TYPE_CHECKING:  # imported when needed at run time, so that --help stays light
    import torch

    from .latents.grid import LatentGrid
    from .render.generator import SpatialGenerator

DEFAULT_STRIP = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]


def _floats(text: str, n: int | None = None, what: str = "values") -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"bad {what} {text!r}: expected comma-separated numbers") from None
    if n is not None and len(vals) != n:
        raise InputError(f"bad {what} {text!r}: expected {n} comma-separated numbers")
    return vals


def _cell(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"bad cell {text!r}: use ROW,COL") from None
    return r, c


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spatial_latent.edit",
        description="Move a latent grid along named directions of a direction bank, inside a region, "
        "and render the result (plus, optionally, a strip of strengths and the edited latent).",
        epilog=with_exit_status("Existing --out, --strip and --save-latent files are not replaced unless --overwrite is given."),
    )
    p.add_argument("latent", type=Path, help="latent grid file (.safetensors written by LatentGrid.save / the encode tool)")
    p.add_argument("--bank", type=Path, default=None, help="direction bank (.npz from python -m spatial_latent.fit, or faces: the bank shipped for the faces model); default: the bank shipped for the latent's network, if any")
    p.add_argument("--attr", action="append", default=[], metavar="NAME", help="direction to apply; repeat for several edits at once")
    p.add_argument("--strength", action="append", default=[], type=float, metavar="S", help="one per --attr, or one for all; 1 = one standard deviation of the fitted data (default: the direction's recorded default strength, else 1)")
    p.add_argument("--region", action="append", default=[], metavar="x0,y0,x1,y1", help="box in output pixels (left, top, right, bottom; end-exclusive); one per --attr, or one for all (default: the direction's recorded region, e.g. the mouth for the faces bank's smile, else the whole grid)")
    p.add_argument("--mask", type=Path, metavar="PNG", help="grey-level mask the size of the output image (white = full edit)")
    p.add_argument("--edit-cells", nargs="+", type=_cell, metavar="ROW,COL", help="edit only these grid cells")
    p.add_argument("--layers", metavar="A-B,...", help="edit only these ws rows (the grid becomes w+): coarse = shape, fine = colour")
    add_network_arg(p, required=False)  # default: the network the latent file records
    p.add_argument("--out", type=Path, help="edited picture (PNG)")
    p.add_argument("--strip", type=Path, metavar="PNG", help="also write the first --attr at each --strip-strengths, side by side")
    p.add_argument("--strip-strengths", nargs="+", type=float, default=None, metavar="S", help="strengths of the strip, e.g. --strip-strengths -2 0 2 (default: -1, -0.5, 0, 0.5, 1, 1.5 x the direction's recorded default strength; -3 .. 3 without one)")
    p.add_argument("--save-latent", type=Path, metavar="PATH", help="also write the edited latent grid (.safetensors)")
    p.add_argument("--padding", choices=["zero", "none"], default="zero", help="render with the network's zero padding or padding-free (default: zero)")
    add_noise_mode_arg(p, "const", "per-layer noise: the network's stored maps, seeded random, or off")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of --noise-mode random (default: 0)")
    p.add_argument("--ignore-saved-noise", action="store_true", help="render with --noise-mode even when the latent file holds optimized noise maps (by default they are used, so an encoded face renders as its reconstruction)")
    p.add_argument("--overwrite", action="store_true", help="replace --out, --strip and --save-latent files that already exist")
    add_device_arg(p)
    p.add_argument("--list", action="store_true", help="list the bank's directions and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from attributes.bank import DirectionBank

    bank = DirectionBank.load(args.bank or _default_bank(args))
    if args.list:
        print(bank.summary())
        return 0
    plan = _check_args(args, bank)
    for out in (args.out, args.strip, args.save_latent):
        if out is not None and out.exists() and not args.overwrite:
            raise InputError(f"{out} exists; pass --overwrite to replace it")

    import torch

    from attributes.direction import grid_fingerprint
    from attributes.edits import Edit, apply_edits, strength_series

    from .io.pictures import image_grid, save_picture, to_uint8
    from .latents.grid import LatentGrid
    from .checkpoints.loading import load_generator
    from .render.generator import SpatialGenerator

    grid = LatentGrid.load(args.latent)
    network = args.network or grid.meta.get("network")
    if not network:
        raise InputError("--network is required: the latent file does not record its generator")
    if not args.network:
        network = _network_from_file(str(network), args.latent)
    if grid.space == "w" and (plan["layers"] is not None or any(bank[n].space == "w+" for n in plan["names"])):
        grid.check_for(bank.num_ws, bank.w_dim, finite=False)
        grid = grid.to_space("w+", bank.num_ws)  # per-layer edits need a grid per layer
    for name in plan["names"]:  # shape and space before the (slow) generator load
        bank.check_grid(grid, name)
    G = load_generator(network, device=args.device)
    fp = G.fingerprint()
    bank.check_generator(fp)
    grid_fp = grid_fingerprint(grid.meta)
    if grid_fp and grid_fp != fp:
        raise InputError(f"{args.latent} was made with generator {grid_fp}, --network is {fp}")
    sg = SpatialGenerator(G, padding=args.padding)
    grid.check_for(G.num_ws, G.w_dim)
    H, W = sg.canvas_size(grid)
    grid = grid.to(sg.device)

    cell_px = G.img_resolution / grid.density
    masks = [_mask(args, grid, region, cell_px, (H, W)) for region in plan["regions"]]
    edits = [Edit(bank[n], s, m, plan["layers"]) for n, s, m in zip(plan["names"], plan["strengths"], masks, strict=True)]
    edited = apply_edits(grid, edits)
    for note in plan["notes"]:
        print(note, file=sys.stderr)

    maps = None if args.ignore_saved_noise else grid.noise_maps()
    if maps is not None:
        sg.noise_shapes(grid)  # whole pixels at every layer (checked before any rendering)
        print(f"using the latent's {len(maps)} saved noise maps (--ignore-saved-noise for --noise-mode {args.noise_mode})", file=sys.stderr)
    with torch.no_grad():
        if args.out:
            save_picture(image_grid(to_uint8(render_grid(sg, edited, maps, args.noise_mode, args.noise_seed))), args.out)
            print(f"wrote {args.out} ({W}x{H} per image)")
        if args.strip:
            first, rest = edits[0], edits[1:]
            series = strength_series(grid, first.direction, plan["strip"], first.mask, first.layers, base=rest)
            first_maps = [m[:1] for m in maps] if maps is not None else None  # the strip shows the first grid
            pics = to_uint8(render_grid(sg, series, first_maps, args.noise_mode, args.noise_seed))
            save_picture(image_grid(pics, cols=len(pics)), args.strip)
            print(f"wrote {args.strip}: {first.direction.name} at strengths {', '.join(f'{s:g}' for s in plan['strip'])}")
    if args.save_latent:
        edited.meta.setdefault("generator_fingerprint", fp)
        edited.meta.setdefault("network", str(network))
        edited.save(args.save_latent)
        print(f"wrote {args.save_latent}")
    return 0


def render_grid(sg: SpatialGenerator, grid: LatentGrid, maps: list[torch.Tensor] | None = None, noise_mode: str = "const", noise_seed: int = 0) -> torch.Tensor:
    """``[B, 3, H, W]`` picture of ``grid``: with the saved per-layer noise ``maps`` (see
    :meth:`LatentGrid.noise_maps`; an encoded latent then renders exactly as its reconstruction)
    or, without them, with ``noise_mode``."""
    if maps is None:
        return sg(grid, noise_mode, noise_seed)
    return sg(grid, noise_mode, noise_seed, noise=[m.to(sg.device) for m in maps])


def _check_args(args: argparse.Namespace, bank: Any) -> dict[str, Any]:
    """Pair up --attr/--strength/--region and check everything that needs no file but the bank."""
    names = args.attr
    if not names:
        raise InputError("give at least one --attr NAME (see --list)")
    for n in names:
        bank[n]  # unknown names: one clear error listing the bank's names
    if not (args.out or args.strip or args.save_latent):
        raise InputError("nothing to write: give --out, --strip or --save-latent")
    recorded = [bank[n].meta for n in names]
    strengths = _per_attr(args.strength or [float(m.get("default_strength", 1.0)) for m in recorded], len(names), "--strength")
    kinds = sum(bool(v) for v in (args.region, args.mask, args.edit_cells))
    if kinds > 1:
        raise InputError("choose one of --region, --mask and --edit-cells")
    if kinds:
        regions = _per_attr([_floats(r, 4, "region") for r in args.region] or [None], len(names), "--region")
    else:  # each direction's recorded region (the faces bank records where each attribute lives)
        regions = [[float(v) for v in m["region"]] if m.get("region") else None for m in recorded]
    notes = []  # what the bank's records chose, said once every check has passed
    for n, s, r, m in zip(names, strengths, regions, recorded, strict=True):
        if (not args.strength and "default_strength" in m) or (not kinds and m.get("region")):
            where = f"region {','.join(f'{v:g}' for v in r)}" if r else ("the whole grid" if not kinds else "your mask")
            notes.append(f"{n}: strength {s:g}, {where}")
    if args.mask is not None and not args.mask.is_file():
        raise InputError(f"mask not found: {args.mask}")
    layers = None
    if args.layers:
        from spatial_latent.fit import parse_layers

        layers = parse_layers(args.layers)
    if args.strip_strengths:
        strip = list(args.strip_strengths)
    elif "default_strength" in recorded[0]:
        strip = [m * float(recorded[0]["default_strength"]) for m in (-1, -0.5, 0, 0.5, 1, 1.5)]
    else:
        strip = list(DEFAULT_STRIP)
    return dict(names=names, strengths=strengths, regions=regions, layers=layers, strip=strip, notes=notes)


def _default_bank(args: argparse.Namespace) -> Path:
    """The bank shipped for the network the latent file (or --network) names."""
    from attributes.bank import EMBEDDED_BANKS

    from .latents.grid import LatentGrid

    network = args.network or LatentGrid.load(args.latent).meta.get("network")
    if str(network) not in EMBEDDED_BANKS:
        raise InputError(f"--bank is required: no direction bank ships for network {str(network)[:200]!r} (banks ship for: {', '.join(EMBEDDED_BANKS)})")
    return EMBEDDED_BANKS[str(network)]


def _per_attr(values: list[Any], n: int, flag: str) -> list[Any]:
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise InputError(f"{len(values)} values of {flag} for {n} --attr: give one, or one per --attr")
    return values


def _mask(args: argparse.Namespace, grid: LatentGrid, region: list[float] | None, cell_px: float, size: tuple[int, int]) -> torch.Tensor | None:
    """The cell mask ``[h, w]`` of one edit (None = everywhere); ``region`` is a box
    ``(x0, y0, x1, y1)`` in output pixels, ``size`` the output ``(H, W)``."""
    from .latents.masks import box_mask, cell_mask, image_mask

    if region is not None:
        return box_mask(grid.cells, region, cell_size=cell_px)
    if args.edit_cells:
        return cell_mask(grid.cells, args.edit_cells)
    if args.mask is not None:
        import numpy as np
        import torch
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(args.mask) as im:
                m = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"{args.mask}: unreadable mask image ({e})") from None
        return image_mask(torch.from_numpy(m), grid.cells, image_size=size)
    return None




def _network_from_file(name: str, latent: Any) -> str:
    """The network a latent file records, accepted only when it is a built-in or well-known
    network name or an existing local file: a file must never choose what gets downloaded."""
    from .checkpoints import hub
    from .checkpoints.loading import BUILTIN_GENERATORS, EMBEDDED_MODELS

    if "://" in name:
        raise InputError(f"{latent} records its network as {name[:200]!r}, a URL; a file may not choose what is downloaded: pass --network")
    if not (name in BUILTIN_GENERATORS or name in EMBEDDED_MODELS or hub.is_known(name) or Path(name).expanduser().is_file()):
        raise InputError(f"{latent} records its network as {name[:200]!r}, which is neither a well-known network nor an existing file; pass --network")
    print(f"using the network recorded in {latent}: {name} (pass --network to choose another)", file=sys.stderr)
    return name


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
