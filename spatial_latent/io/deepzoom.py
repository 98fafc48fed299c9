"""Deep Zoom Image (DZI) output: a tile pyramid plus a self-contained HTML viewer.

Layout (the Deep Zoom convention, as read by OpenSeadragon and others)::

    scene.dzi                          XML descriptor: tile size, overlap, format, full size
    scene_files/<level>/<col>_<row>.jpg  tiles; level ``max = ceil(log2(max(W, H)))`` is full
                                       resolution, level ``l`` is ``ceil(W / 2^(max - l))`` wide,
                                       level 0 is 1x1
    scene.html                         a static viewer (own JavaScript, no network) for the above

Tile ``(c, r)`` of a level covers level pixels ``[c*T - O, (c+1)*T + O)`` horizontally (and the
same vertically), clipped to the level, with ``T`` the tile size and ``O`` the overlap.

The pyramid is built in one streaming pass over rows of the full-resolution image: each level
keeps only the rows its next tile row needs, writes that tile row, and hands 2x2-averaged rows to
the level below. Memory is about ``(T + 2 O + strip) x width`` pixels per level, independent of
the height. Everything is written into a temporary folder beside the output and renamed into
place at the end, the ``.dzi`` descriptor last: a descriptor that exists describes complete tiles.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import math
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

import numpy as np

from ..atomic import clean_stale_temps
from ..errors import InputError

log = logging.getLogger(__name__)

DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"
DZI_FORMATS = ("jpg", "png")


@dataclasses.dataclass(frozen=True)
class DeepZoomOptions:
    """How the pyramid is cut and stored: ``tile_size`` + 2 ``overlap`` pixels per tile side
    (254 + 1 + 1 = 256 by default), ``format`` 'jpg' (JPEG ``quality``) or 'png' (lossless)."""

    tile_size: int = 254
    overlap: int = 1
    format: str = "jpg"
    quality: int = 90

    def __post_init__(self) -> None:
        if not 1 <= self.tile_size <= 8192:
            raise InputError(f"Deep Zoom tile size must be in [1, 8192], got {self.tile_size}")
        if not 0 <= self.overlap < self.tile_size:
            raise InputError(f"Deep Zoom overlap must be in [0, tile size), got {self.overlap}")
        if self.format not in DZI_FORMATS:
            raise InputError(f"Deep Zoom tile format must be one of {DZI_FORMATS}, got {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise InputError(f"JPEG quality must be in [1, 100], got {self.quality}")


def level_count(height: int, width: int) -> int:
    """Number of pyramid levels: ``ceil(log2(max side)) + 1`` (down to 1x1)."""
    return math.ceil(math.log2(max(height, width))) + 1 if max(height, width) > 1 else 1


def level_size(height: int, width: int, level: int) -> tuple[int, int]:
    """``(h, w)`` of ``level`` (the last level is full resolution)."""
    f = 1 << (level_count(height, width) - 1 - level)
    return -(-height // f), -(-width // f)


def companion_paths(out: Path) -> tuple[Path, Path]:
    """The tiles folder and the viewer page that go with descriptor ``out``: ``(scene_files, scene.html)``."""
    return out.with_name(out.stem + "_files"), out.with_name(out.stem + ".html")


def descriptor_xml(height: int, width: int, opts: DeepZoomOptions) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Image xmlns="{DZI_NAMESPACE}" Format="{opts.format}" Overlap="{opts.overlap}" TileSize="{opts.tile_size}">\n'
        f'  <Size Width="{width}" Height="{height}"/>\n'
        "</Image>\n"
    )


def viewer_html(title: str, files_url: str, height: int, width: int, opts: DeepZoomOptions) -> str:
    """The viewer page with this pyramid's parameters filled in (no XML fetch: browsers refuse
    ``fetch`` on ``file://`` pages, while tile ``<img>`` loads work)."""
    template = resources.files("spatial_latent.io").joinpath("viewer/deepzoom.html").read_text(encoding="utf-8")
    cfg = {"width": width, "height": height, "tileSize": opts.tile_size, "overlap": opts.overlap, "format": opts.format, "tiles": files_url}
    cfg_js = json.dumps(cfg).replace("</", "<\\/")
    return template.replace("__DZI_TITLE__", html.escape(title)).replace("/*__DZI_CONFIG__*/null", cfg_js)


class _Level:
    """One pyramid level fed rows top to bottom: writes its tile rows as soon as their rows (and
    overlap) have arrived, and passes 2x2 box averages to the level below."""

    def __init__(self, index: int, height: int, width: int, opts: DeepZoomOptions, folder: Path, below: "_Level | None") -> None:
        self.index, self.height, self.width, self.opts, self.below = index, height, width, opts, below
        self.folder = folder / str(index)
        self.folder.mkdir(parents=True)
        self.buf = np.empty((0, width, 3), np.uint8)
        self.buf_y0 = 0  # level row of buf[0]
        self.rows_in = 0
        self.next_tile_row = 0
        self.pending: np.ndarray | None = None  # an odd row waiting for its partner
        self.peak_rows = 0  # the most rows held at once (for tests / memory accounting)
        self.cols = -(-width // opts.tile_size)

    def push(self, rows: np.ndarray) -> None:
        if rows.shape[1:] != (self.width, 3) or rows.dtype != np.uint8:
            raise AssertionError(f"level {self.index}: rows {rows.shape} {rows.dtype} do not fit width {self.width}")
        if self.rows_in + len(rows) > self.height:
            raise AssertionError(f"level {self.index}: more than {self.height} rows")
        self.buf = np.concatenate([self.buf, rows]) if len(self.buf) else rows
        self.rows_in += len(rows)
        self.peak_rows = max(self.peak_rows, len(self.buf))
        self._write_ready()
        if self.below is not None:
            pairs = np.concatenate([self.pending, rows]) if self.pending is not None else rows
            n = len(pairs) // 2 * 2
            self.pending = pairs[n:].copy() if n < len(pairs) else None
            if n:
                self.below.push(downsample(pairs[:n]))

    def finish(self) -> None:
        if self.rows_in != self.height:
            raise AssertionError(f"level {self.index}: got {self.rows_in} of {self.height} rows")
        self._write_ready()
        if self.below is not None:
            if self.pending is not None:  # odd height: the last row pairs with itself
                self.below.push(downsample(np.concatenate([self.pending, self.pending])))
                self.pending = None
            self.below.finish()

    def _write_ready(self) -> None:
        T, O = self.opts.tile_size, self.opts.overlap
        while self.next_tile_row * T < self.height:
            r = self.next_tile_row
            y0, y1 = max(0, r * T - O), min(self.height, (r + 1) * T + O)
            if self.rows_in < y1:
                return
            strip = self.buf[y0 - self.buf_y0 : y1 - self.buf_y0]
            for c in range(self.cols):
                x0, x1 = max(0, c * T - O), min(self.width, (c + 1) * T + O)
                save_tile(self.folder / f"{c}_{r}.{self.opts.format}", strip[:, x0:x1], self.opts)
            self.next_tile_row += 1
            keep = (r + 1) * T - O  # first row the next tile row needs
            if keep > self.buf_y0:
                self.buf = self.buf[keep - self.buf_y0 :]
                self.buf_y0 = keep


def downsample(rows: np.ndarray) -> np.ndarray:
    """2x2 box average with rounding, ``uint8 [2n, w, 3] -> [n, ceil(w / 2), 3]``; an odd last
    column is averaged with itself."""
    x = rows.astype(np.uint16)
    x = x[0::2] + x[1::2]
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -1:]], axis=1)
    x = x[:, 0::2] + x[:, 1::2]
    return ((x + 2) // 4).astype(np.uint8)


def save_tile(path: Path, pixels: np.ndarray, opts: DeepZoomOptions) -> None:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(pixels))
    if opts.format == "jpg":
        img.save(path, format="JPEG", quality=opts.quality)
    else:
        img.save(path, format="PNG", compress_level=1)


def build_pyramid(rows: Iterable[np.ndarray], height: int, width: int, folder: Path, opts: DeepZoomOptions) -> list[_Level]:
    """Write all levels' tiles into ``folder/<level>/`` from full-resolution row strips
    (``uint8 [k, width, 3]``, top to bottom, ``height`` rows in all). Returns the levels
    (finest first) for inspection."""
    levels: list[_Level] = []
    below = None
    for index in range(level_count(height, width)):  # coarsest first, so each gets its 'below'
        h, w = level_size(height, width, index)
        below = _Level(index, h, w, opts, folder, below)
        levels.append(below)
    top = levels[-1]
    for strip in rows:
        top.push(strip)
    top.finish()
    return levels[::-1]


def write_deepzoom(
    out: Path,
    rows: Iterable[np.ndarray],
    height: int,
    width: int,
    opts: DeepZoomOptions,
) -> Path:
    """Write ``out`` (``scene.dzi``), ``scene_files/`` and ``scene.html`` from full-resolution row
    strips, all in a temporary folder first, then renamed into place (descriptor last). Any
    previous output of the same name is replaced."""
    out = Path(out)
    files, page = companion_paths(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    clean_stale_temps(out, again=True)  # folders of killed runs (their process is gone)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        build_pyramid(rows, height, width, tmp / files.name, opts)
        (tmp / out.name).write_text(descriptor_xml(height, width, opts), encoding="utf-8")
        (tmp / page.name).write_text(viewer_html(out.stem, quote(files.name) + "/", height, width, opts), encoding="utf-8")
        old = tmp / "replaced"
        old.mkdir()
        if out.exists():  # no stale descriptor may point at half-swapped tiles
            os.replace(out, old / out.name)
        if files.exists():
            os.replace(files, old / files.name)
        os.replace(tmp / files.name, files)
        os.replace(tmp / page.name, page)
        os.replace(tmp / out.name, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote Deep Zoom pyramid %s (%d levels)", out, level_count(height, width))
    return out
