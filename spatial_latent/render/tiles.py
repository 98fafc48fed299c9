"""``TileSampler``: arbitrarily large seamless images, tile by tile, with flat memory.

The canvas is split into ``tile x tile`` pixel tiles. Each tile is rendered padding-free
(:class:`~spatial_latent.render.generator.SpatialGenerator` with ``padding='none'``) from the
cells of a :class:`~spatial_latent.latents.field.LatentField` that its receptive field needs, so every tile
carries exactly the margin the network needs and the stitched image equals a one-shot render of
the same field (to float rounding). Tiles are rendered in batches of different positions;
memory depends on the tile and batch size only, never on the canvas size.

Batches are fixed groups of consecutive tile indices, so a resumed run renders exactly the same
batches (hence the same bytes) as an uninterrupted one. Under ``torch.distributed`` each rank
renders the batches with ``batch_index % world_size == rank``; rank 0 assembles.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Callable

import torch

from ..io.deepzoom import DeepZoomOptions
from ..errors import InputError
from ..latents.field import LatentField
from ..io.pictures import to_uint8
from ..latents.window import Window
from .generator import SpatialGenerator
from .plan import LatentPatch
from ..io.tile_store import TileStore, assemble, check_output

log = logging.getLogger(__name__)

MAX_SIDE = 1 << 20  # a million pixels per side is far beyond any real request
MIN_DEFAULT_TILE = 256  # below this, margins and per-pass overhead dominate (see docs/BENCHMARKS.md)

#: Test hook: with this environment variable set to N > 0, :meth:`TileSampler.render_to_file`
#: ends its process abruptly (SIGKILL, as if killed: no cleanup runs) right after storing its
#: N-th tile, so that tests can interrupt a run at an exact point. Read only where tiles are stored.
STOP_AFTER_TILES_ENV = "SPATIAL_LATENT_STOP_AFTER_TILES"


def default_tile(resolution: int) -> int:
    """Default tile side for an ``R``-pixel generator: ``max(2 R, 256)`` (a multiple of R/4)."""
    step = max(resolution // 4, 1)
    return -(-max(2 * resolution, MIN_DEFAULT_TILE) // step) * step


class TileSampler:
    """Render windows of a :class:`LatentField` tile by tile.

    ``tile``: tile side in output pixels, a multiple of R/4 (so tiles at different places share
    one plan and batch together); ``batch``: tiles per forward pass.
    """

    def __init__(
        self,
        sg: SpatialGenerator,
        field: LatentField,
        tile: int = 256,
        batch: int = 4,
        noise_mode: str = "random",
        noise_seed: int | None = None,
    ) -> None:
        if not sg.padding.tileable:
            raise InputError("tiling needs a padding-free SpatialGenerator (padding='none')")
        step = sg.img_resolution // 4
        if tile < step or tile % step:
            raise InputError(f"tile must be a positive multiple of {step} pixels (R/4) for this {sg.img_resolution}px generator, got {tile}")
        if batch < 1:
            raise InputError(f"batch must be >= 1, got {batch}")
        self.sg, self.field, self.tile, self.batch = sg, field, tile, batch
        self.noise_mode = noise_mode
        self.noise_seed = field.seed if noise_seed is None else noise_seed

    def positions(self, height: int, width: int) -> list[tuple[int, int]]:
        """Top-left pixel of every tile, row-major."""
        return [(y, x) for y in range(0, height, self.tile) for x in range(0, width, self.tile)]

    @torch.no_grad()
    def render_tiles(self, positions: list[tuple[int, int]]) -> torch.Tensor:
        """Full ``tile x tile`` renders at ``positions`` (multiples of R/4): ``[n, 3, tile, tile]``.

        Horizontally adjacent tiles of one row are rendered as one wide window: their margins
        overlap, so computing them once saves work, and one window costs far fewer tensor ops
        than one patch per tile. Runs of equal length at different places share one forward
        pass as patches; the latents of all runs come from one field evaluation over their hull
        when it is compact. The result equals per-tile rendering to float rounding.
        """
        if not positions:
            return torch.empty(0, 3, self.tile, self.tile, device=self.field.device)
        out: list[torch.Tensor | None] = [None] * len(positions)
        for k, runs in _runs_by_length(positions, self.tile).items():
            window = Window(0, 0, k * self.tile, self.tile)
            needs = [self.sg.cells_needed(Window(x, y, x + k * self.tile, y + self.tile), self.field.density) for _, y, x in runs]
            latents = self._field_cells(needs)
            patches = [LatentPatch(lat, origin=(c.y0, c.x0), shift=(y, x)) for lat, c, (_, y, x) in zip(latents, needs, runs)]
            imgs = self.sg.render_patches(patches, window, self.field.density, self.noise_mode, self.noise_seed)
            for img, (idx, _, _) in zip(imgs, runs):
                for j, i in enumerate(idx):
                    out[i] = img[:, :, j * self.tile : (j + 1) * self.tile]
        return torch.stack(out)  # type: ignore[arg-type]

    def _field_cells(self, needs: list[Window]) -> list[torch.Tensor]:
        """Field latents ``[1, num_ws or 1, C, h, w]`` for each cell window (expanded to num_ws in
        space 'w'); one evaluation over the hull when it is at most twice the cells needed.

        Windows are grown to one common size (the field is unbounded, extra cells are harmless)
        so that the renderer can stack all patches into one batch."""
        h = max(c.size[0] for c in needs)
        w = max(c.size[1] for c in needs)
        needs = [Window(c.x0, c.y0, c.x0 + w, c.y0 + h) for c in needs]
        hull = None
        for c in needs:
            hull = c.hull(hull)
        area = sum(c.size[0] * c.size[1] for c in needs)
        if len(needs) > 1 and hull.size[0] * hull.size[1] <= 2 * area:
            big = self.field.cells(hull)
            parts = [big[..., c.y0 - hull.y0 : c.y1 - hull.y0, c.x0 - hull.x0 : c.x1 - hull.x0] for c in needs]
        else:
            parts = [self.field.cells(c) for c in needs]
        if self.field.space == "w":
            parts = [p.expand(-1, self.sg.num_ws, -1, -1, -1) for p in parts]
        return parts

    @torch.no_grad()
    def render_window(self, window: Window) -> torch.Tensor:
        """One-shot padding-free render of ``window`` (for comparison; memory grows with it)."""
        cells = self.sg.cells_needed(window, self.field.density)
        latents = self.field.cells(cells)
        if self.field.space == "w":
            latents = latents.expand(-1, self.sg.num_ws, -1, -1, -1)
        shift = (window.y0, window.x0)
        step = self.sg.img_resolution // 4
        if shift[0] % step or shift[1] % step:
            raise InputError(f"window origin must be a multiple of {step} pixels")
        local = Window(0, 0, window.size[1], window.size[0])
        return self.sg.render_patches([LatentPatch(latents, (cells.y0, cells.x0), shift)], local, self.field.density, self.noise_mode, self.noise_seed)

    def render_to_file(
        self,
        out: str | Path,
        height: int,
        width: int,
        *,
        resume: bool = False,
        overwrite: bool = False,
        manifest_extra: dict | None = None,
        on_progress: Callable[[int, int, float], None] | None = None,
        rank: int = 0,
        world_size: int = 1,
        barrier: Callable[[], None] | None = None,
        deepzoom: DeepZoomOptions | None = None,
        quality: int = 90,
    ) -> Path | None:
        """Render a ``height x width`` canvas into ``out`` (.png/.jpg/.tif/.dzi), resumably.

        ``deepzoom``: tile size, overlap and format of a ``.dzi`` pyramid (default
        :class:`DeepZoomOptions`); ``quality``: JPEG quality of a ``.jpg`` output.

        ``on_progress(done_tiles, total_tiles, megapixels_per_second)`` is called after each batch.
        Returns the output path on rank 0 (None on other ranks).

        For tests, the environment variable :data:`STOP_AFTER_TILES_ENV` kills the process
        after it has stored that many tiles (see :func:`_stop_after_tiles`).
        """
        out = Path(out)
        check_size(height, width)
        if rank == 0:
            check_output(out, height, width, overwrite, resume)
        manifest = {
            "height": height,
            "width": width,
            "tile": self.tile,
            "batch": self.batch,
            "noise_mode": self.noise_mode,
            "noise_seed": self.noise_seed,
            "generator": self.sg.G.fingerprint(),
            "field": {
                "seed": self.field.seed,
                "correlation": self.field.correlation,
                "truncation_psi": self.field.truncation_psi,
                "density": self.field.density,
                "global_mix": self.field.global_mix,
                "space": self.field.space,
            },
            **(manifest_extra or {}),
        }
        store = TileStore(out, manifest, resume=resume or rank != 0) if rank == 0 else None
        if barrier is not None:
            barrier()
        if store is None:
            store = TileStore(out, manifest, resume=True)
        pos = self.positions(height, width)
        batches = [list(range(i, min(i + self.batch, len(pos)))) for i in range(0, len(pos), self.batch)]
        mine = [b for k, b in enumerate(batches) if k % world_size == rank]
        todo = [b for b in mine if not all(store.has(i) for i in b)]
        done = sum(len(b) for b in mine) - sum(len(b) for b in todo)
        if done:
            log.info("resuming: %d of %d tiles already rendered", done, sum(len(b) for b in mine))
        start, pixels = time.perf_counter(), 0
        stop_after, stored = _stop_after_tiles(), 0
        for b in todo:
            imgs = to_uint8(self.render_tiles([pos[i] for i in b]))
            for i, img in zip(b, imgs):
                y, x = pos[i]
                tile = img[: min(self.tile, height - y), : min(self.tile, width - x)]
                if not store.has(i):
                    store.put(i, tile)
                    stored += 1
                    if stored == stop_after:
                        _die_as_if_killed()
                pixels += tile.shape[0] * tile.shape[1]
            done += len(b)
            if on_progress is not None:
                on_progress(done, sum(len(b) for b in mine), pixels / 1e6 / max(time.perf_counter() - start, 1e-9))
        if barrier is not None:
            barrier()
        if rank != 0:
            return None
        path = assemble(store, out, height, width, self.tile, deepzoom=deepzoom, quality=quality)
        store.remove()
        return path


def _stop_after_tiles() -> int:
    """The tile count of the :data:`STOP_AFTER_TILES_ENV` test hook; 0 (never) when unset."""
    text = os.environ.get(STOP_AFTER_TILES_ENV, "").strip()
    if not text:
        return 0
    try:
        return max(int(text), 0)
    except ValueError:
        raise InputError(f"{STOP_AFTER_TILES_ENV} must be a whole number of tiles, got {text!r}") from None


def _die_as_if_killed() -> None:
    """End this process the way ``kill -9`` would: no exception, no ``finally``, no atexit."""
    log.warning("%s: stopping as if killed", STOP_AFTER_TILES_ENV)
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # where there is no SIGKILL (Windows): the status a shell reports for one


def _runs_by_length(positions: list[tuple[int, int]], tile: int) -> dict[int, list[tuple[list[int], int, int]]]:
    """Split tile positions into horizontal runs of adjacent tiles (same row, consecutive
    columns, in the given order), grouped by run length: ``{k: [(indices, y, x0), ...]}``."""
    runs: list[tuple[list[int], int, int]] = []
    for i, (y, x) in enumerate(positions):
        if runs and runs[-1][1] == y and runs[-1][2] + len(runs[-1][0]) * tile == x:
            runs[-1][0].append(i)
        else:
            runs.append(([i], y, x))
    groups: dict[int, list[tuple[list[int], int, int]]] = {}
    for r in runs:
        groups.setdefault(len(r[0]), []).append(r)
    return groups


def check_size(height: int, width: int) -> None:
    if not (isinstance(height, int) and isinstance(width, int)) or height < 1 or width < 1:
        raise InputError(f"image size must be positive whole numbers, got {width}x{height}")
    if max(height, width) > MAX_SIDE:
        raise InputError(f"{width}x{height} exceeds the maximum side of {MAX_SIDE} pixels")
