"""Drawing labeled latent grids from a generator: the training data of supervised directions.

Each sample is a 'w' grid of ``cells`` whose cell latents mix one per-image latent with one
independent latent per cell, ``w = lerp(w_image, w_cell, cell_mix)``: ``cell_mix = 0`` gives
ordinary images (every cell equal: a per-location fit cannot tell cells apart), ``1`` gives
independent cells (the cleanest per-location statistics, but patchwork images for face models).
The grids are rendered with a :class:`~spatial_latent.render.generator.SpatialGenerator` and labeled.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.networks import Generator
from spatial_latent.render.generator import SpatialGenerator
from spatial_latent.render.plan import PaddingMode

log = logging.getLogger(__name__)


def pool_labels(labels: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """Per-location labels on the grid: ``[N, h, w]`` unchanged, image-sized maps ``[N, H, W]``
    area-averaged onto the cells (``H``, ``W`` multiples of ``h``, ``w``). Returns ``[N, h, w]``."""
    h, w = cells
    if labels.ndim != 3:
        raise InputError(f"score maps must be [N, H, W], got {tuple(labels.shape)}")
    H, W = labels.shape[1:]
    if (H, W) == (h, w):
        return labels
    if H % h or W % w:
        raise InputError(f"a {H}x{W} score map does not divide into the {h}x{w} grid cells")
    return F.adaptive_avg_pool2d(labels[:, None].float(), (h, w))[:, 0]


@torch.no_grad()
def sample_grids(
    G: Generator,
    num_samples: int,
    cells: tuple[int, int] = (8, 8),
    density: int = 8,
    cell_mix: float = 0.5,
    truncation_psi: float = 1.0,
    seed: int = 0,
    start: int = 0,
) -> LatentGrid:
    """``num_samples`` random 'w' grids ``[N, 1, w_dim, h, w]`` (see the module docstring).

    Sample ``i`` depends only on ``(seed, start + i)``, so any range can be redrawn exactly.
    Conditional generators get a random class per image.
    """
    if num_samples < 1:
        raise InputError("num_samples must be >= 1")
    if not 0 <= cell_mix <= 1:
        raise InputError(f"cell_mix must be in [0, 1], got {cell_mix}")
    h, w = cells
    device = G.device
    zs, zi, cs = [], [], []
    for i in range(start, start + num_samples):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        zi.append(torch.randn(G.z_dim, generator=gen))
        zs.append(torch.randn(G.z_dim, h, w, generator=gen))
        if G.c_dim:
            cs.append(F.one_hot(torch.randint(G.c_dim, (), generator=gen), G.c_dim).float())
    z_img, z_cell = torch.stack(zi).to(device), torch.stack(zs).to(device)
    c = torch.stack(cs).to(device) if cs else None
    cell = LatentGrid.from_z_grid(G, z_cell, c, truncation_psi=truncation_psi, density=density).data
    img = G.mapping(z_img, c, truncation_psi=truncation_psi)  # [N, C]
    data = torch.lerp(img[:, None, :, None, None].expand_as(cell), cell, cell_mix)
    return LatentGrid(data.contiguous(), space="w", density=density)


@torch.no_grad()
def sample_labeled(
    G: Generator,
    labeler: Callable[[torch.Tensor], torch.Tensor],
    num_samples: int,
    cells: tuple[int, int] = (8, 8),
    density: int = 8,
    cell_mix: float = 0.5,
    truncation_psi: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    padding: PaddingMode | str = PaddingMode.ZERO,
    resample: str = "bilinear",
    noise_mode: str = "const",
    progress: bool = False,
    on_batch: Callable[[int, LatentGrid, torch.Tensor], None] | None = None,
) -> tuple[LatentGrid, torch.Tensor]:
    """Draw grids, render them and label the images.

    Returns ``(grids [N, 1, w_dim, h, w], labels)`` with labels ``[N]`` (per-image labeler) or
    ``[N, h, w]`` (score maps, area-averaged onto the cells). ``on_batch(start, grids, images)``
    sees every rendered batch (e.g. to export pictures for hand labelling).
    """
    if batch_size < 1:
        raise InputError("batch_size must be >= 1")
    sg = SpatialGenerator(G, padding=padding, resample=resample)
    sg.canvas_size(LatentGrid(torch.zeros(1, 1, G.w_dim, *cells), space="w", density=density))  # whole pixels?
    grids, labels = [], []
    fingerprint = G.fingerprint()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_samples, desc="sampling and labeling", unit="img")
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        g = sample_grids(G, n, cells, density, cell_mix, truncation_psi, seed, start)
        images = sg(g, noise_mode=noise_mode, noise_seed=seed)
        y = labeler(images)
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y)
        y = y.detach().to("cpu", torch.float32)
        if y.ndim == 3:
            y = pool_labels(y, cells)
        elif y.ndim != 1:
            raise InputError(f"labeler returned {tuple(y.shape)}; expected [B] scores or [B, h, w] maps")
        if y.shape[0] != n:
            raise InputError(f"labeler returned {y.shape[0]} scores for {n} images")
        if on_batch is not None:
            on_batch(start, g, images)
        grids.append(g.data.cpu())
        labels.append(y)
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    meta = {"generator_fingerprint": fingerprint, "cell_mix": cell_mix, "truncation_psi": truncation_psi, "seed": seed, "padding": sg.padding.value}
    return LatentGrid(torch.cat(grids), space="w", density=density, meta=meta), torch.cat(labels)
