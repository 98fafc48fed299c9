"""Labelers: what turns a generated image into the attribute score an edit direction follows.

A labeler is any callable ``images [B, 3, H, W] (floats in about [-1, 1]) -> scores``, returning
either one score per image (``[B]``) or a score map per image (``[B, h', w']``, any size that
divides the image: it is area-averaged onto the latent grid's cells for per-location fitting).

Built-in labelers measure the image itself and need no download (they are what the tests use):

==================  =============================================================================
``brightness``      mean of R, G, B in [0, 1]
``red`` ...         ``red``/``green``/``blue``: that channel minus the mean of the other two
``saturation``      HSV saturation ``(max - min) / max`` of the RGB values
``contrast``        standard deviation of the brightness (per image only)
==================  =============================================================================

Face labelers (``face:Smiling``, ``face:Eyeglasses``, ``face:Male``, ``face:Young``,
``face:Bangs``, ``face:age``, any of CelebA's 40 attributes, and ``face:NAME-map`` per place) come
from a small CNN trained on real photos (:mod:`attributes.face_labeler`); they expect faces
aligned like the ``faces`` model's.

Each pixel labeler is available for a region (``brightness:left``, ``saturation:0,0,0.5,1`` with a box
``x0,y0,x1,y1`` given as fractions of the image side; named regions: ``full``, ``left``,
``right``, ``top``, ``bottom``, ``center``) or as a per-pixel map (``brightness-map`` ...).

User labelers: :class:`FunctionLabeler` wraps a callable (batched on tensors, or per image on
uint8 arrays); a spec ``package.module:function`` imports one. :func:`load_csv_dataset` reads a
CSV of scores for image files whose latents were saved beside them.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid

from .direction import grid_fingerprint

REGIONS: dict[str, tuple[float, float, float, float]] = {
    # name: (x0, y0, x1, y1) as fractions of the image width / height
    "full": (0.0, 0.0, 1.0, 1.0),
    "left": (0.0, 0.0, 0.5, 1.0),
    "right": (0.5, 0.0, 1.0, 1.0),
    "top": (0.0, 0.0, 1.0, 0.5),
    "bottom": (0.0, 0.5, 1.0, 1.0),
    "center": (0.25, 0.25, 0.75, 0.75),
}
PIXEL_STATS = ("brightness", "red", "green", "blue", "saturation")
REGION_STATS = PIXEL_STATS + ("contrast",)


def _unit_rgb(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [-1, 1] -> clamped to [0, 1] (what a saved picture shows)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"labelers take RGB images [B, 3, H, W], got {tuple(getattr(images, 'shape', ()))}")
    return ((images.to(torch.float32) + 1) / 2).clamp(0, 1)


def pixel_stat(images: torch.Tensor, stat: str) -> torch.Tensor:
    """Per-pixel statistic ``[B, H, W]`` of ``images [B, 3, H, W]`` (see the module table)."""
    x = _unit_rgb(images)
    if stat == "brightness":
        return x.mean(dim=1)
    if stat in ("red", "green", "blue"):
        c = ("red", "green", "blue").index(stat)
        others = [i for i in range(3) if i != c]
        return x[:, c] - x[:, others].mean(dim=1)
    if stat == "saturation":
        mx, mn = x.max(dim=1).values, x.min(dim=1).values
        return (mx - mn) / mx.clamp_min(1e-6)
    raise InputError(f"unknown per-pixel statistic {stat!r}; choose from {PIXEL_STATS}")


def region_slices(box: Sequence[float], size: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of an image of ``size = (H, W)`` covered by ``box = (x0, y0, x1, y1)``
    given as fractions; at least one pixel each way."""
    x0, y0, x1, y1 = box
    H, W = size
    r0, r1 = int(math.floor(y0 * H)), int(math.ceil(y1 * H))
    c0, c1 = int(math.floor(x0 * W)), int(math.ceil(x1 * W))
    return slice(r0, max(r1, r0 + 1)), slice(c0, max(c1, c0 + 1))


def parse_region(text: str) -> tuple[float, float, float, float]:
    """A region name (``left`` ...) or ``x0,y0,x1,y1`` fractions in [0, 1] -> a box."""
    if text in REGIONS:
        return REGIONS[text]
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise InputError(f"bad region {text!r}: use one of {sorted(REGIONS)} or x0,y0,x1,y1 as fractions of the image")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise InputError(f"bad region {text!r}: need 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return box  # type: ignore[return-value]


class RegionLabeler:
    """One score per image: ``stat`` averaged over ``box`` (fractions ``x0, y0, x1, y1``).

    ``__call__(images [B, 3, H, W]) -> [B]``.
    """

    per_location = False

    def __init__(self, stat: str = "brightness", box: Sequence[float] = REGIONS["full"], name: str | None = None) -> None:
        if stat not in REGION_STATS:
            raise InputError(f"unknown statistic {stat!r}; choose from {REGION_STATS}")
        self.stat, self.box = stat, tuple(float(v) for v in box)
        self.name = name or stat

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        rows, cols = region_slices(self.box, tuple(images.shape[-2:]))
        if self.stat == "contrast":
            b = pixel_stat(images, "brightness")[:, rows, cols]
            return b.flatten(1).std(dim=1)
        return pixel_stat(images, self.stat)[:, rows, cols].mean(dim=(1, 2))

    def __repr__(self) -> str:
        return f"RegionLabeler({self.stat!r}, box={self.box})"


class MapLabeler:
    """A score map per image: ``stat`` at every pixel, ``__call__(images) -> [B, H, W]``; pooled
    onto the grid's cells it gives per-location labels."""

    per_location = True

    def __init__(self, stat: str = "brightness", name: str | None = None) -> None:
        if stat not in PIXEL_STATS:
            raise InputError(f"no per-pixel map for {stat!r}; choose from {PIXEL_STATS}")
        self.stat = stat
        self.name = name or stat

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return pixel_stat(images, self.stat)

    def __repr__(self) -> str:
        return f"MapLabeler({self.stat!r})"


class FunctionLabeler:
    """Wrap a user callable as a labeler.

    ``batched=True``: ``fn(images [B, 3, H, W] float tensor in [-1, 1]) -> [B] or [B, h, w]``.
    ``batched=False``: ``fn(picture uint8 [H, W, 3] numpy) -> float or [h, w] array``, called per
    image (the form a user's own classifier usually has). Outputs must be finite numbers.
    """

    def __init__(self, fn: Callable[[Any], Any], name: str | None = None, batched: bool = True) -> None:
        if not callable(fn):
            raise InputError(f"a labeler must be callable, got {type(fn).__name__}")
        self.fn, self.batched = fn, batched
        self.name = name or getattr(fn, "__name__", "attribute")
        self.per_location: bool | None = None  # known after the first call

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.batched:
            out = _as_scores(self.fn(images), self.name)
        else:
            from spatial_latent.io.pictures import to_uint8

            out = torch.stack([_as_scores(self.fn(p), self.name) for p in to_uint8(images)])
        if out.shape[0] != images.shape[0] or out.ndim not in (1, 3):
            raise InputError(f"labeler {self.name!r} must return [B] scores or [B, h, w] maps for B = {images.shape[0]}, got {tuple(out.shape)}")
        self.per_location = out.ndim == 3
        return out

    def __repr__(self) -> str:
        return f"FunctionLabeler({self.name!r})"


def _as_scores(value: Any, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float32))
    except (TypeError, ValueError):
        raise InputError(f"labeler {name!r} returned {type(value).__name__}, not numbers") from None
    if not torch.isfinite(t).all():
        raise InputError(f"labeler {name!r} returned NaN or inf")
    return t


def get_labeler(spec: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A labeler from a spec: ``brightness``, ``brightness:left``, ``red:0,0,0.5,1``,
    ``brightness-map``, or ``package.module:function`` (a batched callable, imported)."""
    spec = spec.strip()
    if spec.startswith("face:"):
        from .face_labeler import FaceLabeler

        attr = spec[len("face:") :]
        spatial = attr.endswith("-map")
        return FaceLabeler(attr[: -len("-map")] if spatial else attr, spatial=spatial)
    if spec.endswith("-map") and spec[: -len("-map")] in PIXEL_STATS:
        return MapLabeler(spec[: -len("-map")])
    stat, _, region = spec.partition(":")
    if stat in REGION_STATS:
        return RegionLabeler(stat, parse_region(region or "full"), name=stat)
    if region and "." not in region and all(p.isidentifier() for p in stat.split(".")):
        return FunctionLabeler(_import_callable(stat, region), name=region)
    raise InputError(
        f"unknown labeler {spec!r}: use one of {sorted(list_labelers())}, optionally with :REGION, "
        "a CSV file of scores, or package.module:function"
    )


def _import_callable(module: str, attr: str) -> Callable[..., Any]:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise InputError(f"cannot import labeler module {module!r}: {e}") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise InputError(f"{module}:{attr} is not a callable")
    return fn


def list_labelers() -> dict[str, str]:
    """Built-in labeler names -> one-line descriptions."""
    out = {s: f"{s} of a region (default: whole image; {s}:left, {s}:x0,y0,x1,y1)" for s in REGION_STATS}
    out.update({f"{s}-map": f"per-pixel {s} (per-location labels)" for s in PIXEL_STATS})
    from .face_labeler import face_labeler_names

    out.update(face_labeler_names())
    return out


# -- CSV of scores -----------------------------------------------------------------------------
FILE_COLUMNS = ("file", "path", "image", "filename")


def read_score_csv(path: str | os.PathLike, column: str | None = None) -> tuple[list[Path], np.ndarray, str]:
    """Read ``file,score`` rows (a header row names the columns; paths are relative to the CSV).

    The file column is one of ``file``, ``path``, ``image``, ``filename``; the score column is
    ``column`` or else the only other column. Returns ``(files, scores [N] float64, column)``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"score CSV not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: unreadable CSV ({e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise InputError(f"{path}: needs a header row and at least one score row")
    header = [h.strip() for h in rows[0]]
    file_col = next((i for i, h in enumerate(header) if h.lower() in FILE_COLUMNS), None)
    if file_col is None:
        raise InputError(f"{path}: no file column (name one of {FILE_COLUMNS}) in header {header}")
    others = [i for i in range(len(header)) if i != file_col]
    if column is not None:
        if column not in header:
            raise InputError(f"{path}: no column {column!r}; columns are {header}")
        score_col = header.index(column)
    elif len(others) == 1:
        score_col = others[0]
    else:
        raise InputError(f"{path}: several score columns {[header[i] for i in others]}; choose one")
    files, scores = [], []
    for n, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise InputError(f"{path}, line {n}: {len(r)} fields, the header has {len(header)}")
        try:
            s = float(r[score_col])
        except ValueError:
            raise InputError(f"{path}, line {n}: score {r[score_col]!r} is not a number") from None
        if not math.isfinite(s):
            raise InputError(f"{path}, line {n}: score is not finite")
        f = Path(r[file_col].strip())
        files.append(f if f.is_absolute() else path.parent / f)
        scores.append(s)
    return files, np.asarray(scores, dtype=np.float64), header[score_col]


def latent_path_for(file: Path) -> Path:
    """The latent file of an image: the file itself when it is a ``.safetensors`` latent, else
    the ``.safetensors`` file beside it with the same stem (what ``spatial_latent.fit
    --export-samples`` and the encode tool write)."""
    return file if file.suffix == ".safetensors" else file.with_suffix(".safetensors")


def load_csv_dataset(path: str | os.PathLike, column: str | None = None) -> tuple[LatentGrid, torch.Tensor, list[Path]]:
    """Scores from a CSV plus the latent grid of every listed file.

    Returns ``(grids [N, L, C, h, w], scores [N], files)``; every latent must have the same
    space, shape and density (and generator fingerprint where recorded).
    """
    files, scores, name = read_score_csv(path, column)
    datas, first, fp = [], None, None
    for f in files:
        lp = latent_path_for(f)
        if not lp.is_file():
            raise InputError(f"no latent for {f.name}: expected {lp} (export samples with --export-samples, or encode the image)")
        g = LatentGrid.load(lp)
        if first is None:
            first = g
        elif (g.space, g.density, tuple(g.data.shape[1:])) != (first.space, first.density, tuple(first.data.shape[1:])):
            raise InputError(f"{lp}: latent {g.space}/{g.density}/{tuple(g.data.shape[1:])} differs from the first one's")
        gfp = grid_fingerprint(g.meta)
        if gfp is not None:
            if fp is not None and gfp != fp:
                raise InputError(f"{lp}: latent made with generator {gfp}, others with {fp}")
            fp = gfp
        datas.append(g.data)
    counts = [d.shape[0] for d in datas]
    if any(c != 1 for c in counts):
        raise InputError("every latent file listed in a score CSV must hold one grid (batch 1)")
    grid = first.replace(torch.cat(datas), meta={"generator_fingerprint": fp} if fp else {}, extras={})
    return grid, torch.as_tensor(scores, dtype=torch.float32), files
