"""Per-location directions from a differentiable labeler: the average gradient of its score.

A linear model fitted on sampled grids (:mod:`attributes.supervised`) sees each cell's latent only
through the variation the sampler gave it; on a face model, where every cell of a natural face
holds the same latent, it cannot tell where an attribute lives. A differentiable labeler (the
face labeler, the pixel-statistic labelers) can say so directly: for each sampled grid ``x`` the
gradient ``d score / d x [C, h, w]`` through the generator is large at the cells that change the
score (a smile: the cells over the mouth) and near zero elsewhere. Averaged over many samples it
is an edit direction that is per-location by construction, the first-order steepest ascent of
the labeler in latent space for a typical face.

* ``locations='per-cell'`` keeps the average gradient's map (the step is large where the attribute
  lives); ``'shared'`` averages it over the cells into one global step (InterFaceGAN style, the
  comparison the bench makes).
* Scale: strength 1 moves the strongest cell by one standard deviation of the sampled latents
  along its step; the other cells keep their relative size.
* Held-out ``agreement`` per cell: the fraction of held-out samples whose own gradient at that
  cell points the same way as the direction (positive dot product); 0.5 is chance.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Callable

import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.render.plan import PaddingMode

from .direction import Direction
from .sampling import sample_grids

if TYPE_CHECKING:
    from spatial_latent.networks import Generator

log = logging.getLogger(__name__)

GRADIENT_LOCATIONS = ("per-cell", "shared")


def differentiable_score(labeler: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The labeler's differentiable score ``images [B, 3, H, W] -> [B]``: its ``score`` method
    when it has one (the face labeler's logits, before the sigmoid), else the labeler itself."""
    return getattr(labeler, "score", labeler)


def fit_gradient(
    G: Generator,
    labeler: Callable[[torch.Tensor], torch.Tensor],
    num_samples: int = 512,
    cells: tuple[int, int] = (8, 8),
    density: int = 8,
    cell_mix: float = 0.5,
    truncation_psi: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    val_fraction: float = 0.3,
    locations: str = "per-cell",
    padding: PaddingMode | str = PaddingMode.ZERO,
    noise_mode: str = "const",
    name: str | None = None,
    progress: bool = False,
) -> Direction:
    """Average the labeler's latent gradient over ``num_samples`` drawn grids (module docstring).

    Grids are drawn as :func:`~attributes.sampling.sample_grids` draws them (``cell_mix`` mixes a
    per-image latent with one per cell). Returns a 'w' :class:`Direction` ``[1, C, h, w]``
    (``[1, C, 1, 1]`` for ``locations='shared'``) with held-out agreement per cell.
    """
    from spatial_latent.render.generator import SpatialGenerator

    if locations not in GRADIENT_LOCATIONS:
        raise InputError(f"unknown locations {locations!r} for gradient directions; choose from {GRADIENT_LOCATIONS}")
    if num_samples < 2 or batch_size < 1:
        raise InputError("gradient directions need num_samples >= 2 and batch_size >= 1")
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    t0 = time.perf_counter()
    score = differentiable_score(labeler)
    sg = SpatialGenerator(G, padding=padding)
    params = [p for p in G.parameters() if p.requires_grad]
    for p in params:  # only the latents need gradients
        p.requires_grad_(False)
    grads, lats = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_samples, desc="labeler gradients", unit="img")
    try:
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            g = sample_grids(G, n, cells, density, cell_mix, truncation_psi, seed, start)
            x = g.data.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                y = score(sg(g.replace(x), noise_mode=noise_mode, noise_seed=seed))
                if not isinstance(y, torch.Tensor) or y.shape != (n,):
                    raise InputError(f"labeler {getattr(labeler, 'name', labeler)!r} must score each image ([B]) for gradient directions")
                if not y.requires_grad:
                    raise InputError(f"labeler {getattr(labeler, 'name', labeler)!r} is not differentiable; fit it with --method logistic")
                (gx,) = torch.autograd.grad(y.sum(), x)
            grads.append(gx[:, 0].detach().to("cpu", torch.float32))
            lats.append(g.data[:, 0].to("cpu", torch.float32))
            if bar is not None:
                bar.update(n)
    finally:
        for p in params:
            p.requires_grad_(True)
        if bar is not None:
            bar.close()
    grad = torch.cat(grads)  # [N, C, h, w]
    lat = torch.cat(lats)
    if not torch.isfinite(grad).all():
        raise InputError("the labeler's gradients contain NaN or inf")
    n_val = int(round(num_samples * val_fraction))
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    fit_idx, val_idx = order[n_val:], order[:n_val]
    mean = grad[fit_idx].mean(0)  # [C, h, w]
    if locations == "shared":
        mean = mean.mean(dim=(1, 2), keepdim=True)
    if not float(mean.norm()) > 0:
        raise InputError(f"the labeler's score does not change with the latents ({getattr(labeler, 'name', labeler)!r})")
    vectors = scale_to_data(mean, lat)
    held = None
    if n_val:
        dots = (grad[val_idx] * vectors[None]).sum(1)  # [V, h, w] (broadcasts a shared step)
        held = (dots > 0).float().mean(0, keepdim=True)
    d = Direction(
        name=name or getattr(labeler, "name", "attribute"),
        vectors=vectors[None].contiguous(),
        space="w",
        density=density,
        held_out=held,
        metric="agreement" if held is not None else "",
        meta={
            "method": "gradient",
            "fitted": "supervised",
            "labels": "labeler gradient",
            "locations": locations,
            "num_samples": num_samples,
            "cell_mix": cell_mix,
            "truncation_psi": truncation_psi,
            "val_fraction": val_fraction,
            "seed": seed,
            "generator": G.fingerprint(),
            "fit_seconds": round(time.perf_counter() - t0, 3),
            "held_out_agreement": float(held.mean()) if held is not None else None,
            "labeler": getattr(labeler, "name", repr(labeler)),
        },
    )
    log.info("fitted %s from %d labeler gradients in %.1f s", d.name, num_samples, d.meta["fit_seconds"])
    return d


def scale_to_data(step: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Scale ``step [C, h, w]`` so that its strongest cell is one standard deviation of
    ``latents [N, C, h, w]`` (that cell's samples) along its own orientation."""
    norms = step.flatten(1).norm(dim=0)
    k = int(norms.argmax())
    unit = step.flatten(1)[:, k] / norms[k]
    cell = latents.flatten(2)[:, :, k if latents.shape[2] * latents.shape[3] > 1 else 0]  # [N, C]
    sd = float((cell @ unit).std()) if cell.shape[0] > 1 else 1.0
    if not math.isfinite(sd) or sd <= 0:
        sd = 1.0
    return step / norms[k] * sd

