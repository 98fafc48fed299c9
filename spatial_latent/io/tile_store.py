"""Finished tiles on disk, and assembling them into the final image without holding it all.

A render writes each finished tile into a parts folder beside the output (``scene.png.parts/``,
one ``.npy`` per tile, each written atomically) with a manifest of the settings. An interrupted
run resumes from the finished tiles (the manifest must match), and the final file is assembled
from the parts under a temporary name, then renamed: it appears complete or not at all.

Outputs: ``.png`` / ``.jpg`` (assembled in memory: for images that fit in RAM), ``.tif`` /
``.tiff`` (tiled BigTIFF, streamed tile by tile: any size), ``.dzi`` (a Deep Zoom pyramid plus
an HTML viewer, streamed row strip by row strip; see :mod:`spatial_latent.io.deepzoom`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..atomic import atomic_write
from .deepzoom import DeepZoomOptions, companion_paths, write_deepzoom
from ..errors import InputError

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TIFF_SUFFIXES = (".tif", ".tiff")
DZI_SUFFIXES = (".dzi",)
MAX_PICTURE_PIXELS = 1 << 30  # 1 Gpx as an in-memory RGB array is 3 GiB: beyond that, use TIFF
MAX_JPEG_SIDE = 65535


def output_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PICTURE_SUFFIXES:
        return "picture"
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in DZI_SUFFIXES:
        return "dzi"
    raise InputError(f"unsupported output type {suffix!r}; use one of {PICTURE_SUFFIXES + TIFF_SUFFIXES + DZI_SUFFIXES}")


def check_output(path: Path, height: int, width: int, overwrite: bool, resume: bool) -> None:
    """Refuse bad output requests before any work: type, size, existing file, permissions, disk."""
    kind = output_kind(path)
    if kind == "picture" and height * width > MAX_PICTURE_PIXELS:
        raise InputError(f"{width}x{height} is too large for {path.suffix} (assembled in memory); write a .tif instead")
    if path.suffix.lower() in (".jpg", ".jpeg") and max(height, width) > MAX_JPEG_SIDE:
        raise InputError(f"JPEG cannot be wider or taller than {MAX_JPEG_SIDE} pixels; write a .png or .tif")
    existing = [p for p in (path, *(companion_paths(path) if kind == "dzi" else ())) if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing[0]} exists; pass --overwrite to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"output folder {parent} is not writable")
    parts = parts_dir(path)
    if parts.exists() and not (resume or overwrite):
        raise InputError(f"an interrupted render left {parts}; pass --resume to continue it or --overwrite to start again")
    # raw tiles + the output (uncompressed bound; a pyramid adds a third for its lower levels) + slack
    need = (2 if kind != "dzi" else 3) * height * width * 3 + (64 << 20)
    free = shutil.disk_usage(parent).free
    if need > free:
        raise InputError(f"{width}x{height} needs about {need / 2**30:.1f} GiB of disk, only {free / 2**30:.1f} GiB free in {parent}")


def parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


class TileStore:
    """The parts folder of one render: finished tiles ``uint8 [h, w, 3]`` keyed by tile index."""

    def __init__(self, out: Path, manifest: dict[str, Any], resume: bool) -> None:
        self.dir = parts_dir(out)
        self.manifest_path = self.dir / "manifest.json"
        if self.dir.exists() and resume:
            try:
                old = json.loads(self.manifest_path.read_text())
            except (OSError, ValueError):
                raise InputError(f"{self.dir} has no readable manifest; remove it or pass --overwrite") from None
            if old != manifest:
                diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
                raise InputError(f"cannot resume: settings differ from the interrupted run ({', '.join(diff)}); pass --overwrite to start again")
        else:
            if self.dir.exists():
                shutil.rmtree(self.dir)
            self.dir.mkdir(parents=True)
            with atomic_write(self.manifest_path) as tmp:
                tmp.write_text(json.dumps(manifest, sort_keys=True, indent=1))

    def path(self, index: int) -> Path:
        return self.dir / f"tile{index:07d}.npy"

    def has(self, index: int) -> bool:
        return self.path(index).exists()

    def put(self, index: int, tile: np.ndarray) -> None:
        with atomic_write(self.path(index)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(tile))

    def get(self, index: int) -> np.ndarray:
        return np.load(self.path(index), allow_pickle=False)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def tile_rows(store: TileStore, height: int, width: int, tile: int) -> Iterator[np.ndarray]:
    """The image as strips of one tile row each, ``uint8 [<= tile, width, 3]``, top to bottom."""
    rows, cols = -(-height // tile), -(-width // tile)
    for r in range(rows):
        yield np.concatenate([store.get(r * cols + c) for c in range(cols)], axis=1)


def assemble(
    store: TileStore,
    out: Path,
    height: int,
    width: int,
    tile: int,
    deepzoom: DeepZoomOptions | None = None,
    quality: int = 90,
) -> Path:
    """Write the final image from the stored tiles (row-major tile indices), atomically.
    ``deepzoom``: pyramid settings for a ``.dzi`` output; ``quality``: JPEG quality of a ``.jpg``."""
    rows, cols = -(-height // tile), -(-width // tile)
    kind = output_kind(out)
    if kind == "dzi":
        return write_deepzoom(out, tile_rows(store, height, width, tile), height, width, deepzoom or DeepZoomOptions())
    with atomic_write(out) as tmp:
        if kind == "picture":
            from PIL import Image

            canvas = np.empty((height, width, 3), dtype=np.uint8)
            for i in range(rows * cols):
                r, c = divmod(i, cols)
                t = store.get(i)
                canvas[r * tile : r * tile + t.shape[0], c * tile : c * tile + t.shape[1]] = t
            img = Image.fromarray(canvas)
            if out.suffix.lower() in (".jpg", ".jpeg"):
                img.save(tmp, quality=quality)
            else:
                img.save(tmp)
        else:
            import tifffile

            def tiles() -> Iterator[np.ndarray]:
                for i in range(rows * cols):
                    t = store.get(i)
                    if t.shape[:2] != (tile, tile):  # TIFF tiles are full size; pad the canvas edge
                        full = np.zeros((tile, tile, 3), dtype=np.uint8)
                        full[: t.shape[0], : t.shape[1]] = t
                        t = full
                    yield t

            tifffile.imwrite(tmp, tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(tile, tile), bigtiff=True, photometric="rgb", compression="zlib")
    return out
