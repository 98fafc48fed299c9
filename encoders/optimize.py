"""Optimization-based inversion: targets ``[B, 3, R, R]`` -> a :class:`LatentGrid` plus noise maps.

Three parametrizations, all rendered through :class:`~spatial_latent.render.generator.SpatialGenerator`
(a one-cell grid is exactly ``G.synthesis``):

* ``'grid'`` — a grid of ``density x density`` latents per image, one grid per
  layer (``grid_layers='w+'``) or one shared by all layers (``'w'``);
* ``'w+'`` — one latent per layer (a 1x1 grid in space 'w+'); ``'w'`` — one latent for all layers.

From the average latent the schedule is StyleGAN2's projector's: Adam, the learning rate ramped
up over the first 5% and down (cosine) over the last 25%, Gaussian noise added to the latents at
5% of W's total spread and ramped down (quadratically) to zero at 75% of the run, noise maps
optimized alongside at the same rate, kept noise-like by the autocorrelation penalty and
re-normalized after every step. From a given start (a learned encoder's grid) the defaults are
gentler, so the steps refine the start instead of undoing it (:data:`START_DEFAULTS`): ramp-up
over 20%, ramp-down over 10%, no latent noise, noise maps at half the rate. Latents are
optimized in units of W's per-coordinate spread around ``w_avg`` (:class:`~encoders.losses.WStats`),
so one learning rate suits any generator. The result is deterministic for given targets, start,
settings, seed and batch composition.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Callable

import torch

from spatial_latent.errors import InputError
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.networks import Generator
from spatial_latent.render.generator import SpatialGenerator
from spatial_latent.render.plan import PaddingMode

from .adam import Adam
from .losses import LOSSES, LPIPS_NETS, ReconstructionLoss, WStats, grid_distribution_loss, noise_regularization, normalize_noise_, psnr, random_directions, smoothness_loss
from .noise_maps import const_noise, convert_grid, render

log = logging.getLogger(__name__)

SPACES = ("grid", "w+", "w")


@dataclasses.dataclass
class OptimizeConfig:
    """Settings of one inversion (see the module docstring for the schedule)."""

    steps: int = 500
    space: str = "grid"
    density: int = 8  # latent cells per image side (space 'grid')
    grid_layers: str = "w+"  # 'w+': one grid per layer; 'w': one grid shared by all layers
    lr: float = 0.1
    # None: chosen by the start (see START_DEFAULTS): the projector's schedule from w_avg, a gentler one from a given start
    lr_rampup: float | None = None  # fraction of the run
    lr_rampdown: float | None = None  # fraction of the run
    latent_noise: float | None = None  # x W's total spread at the start
    latent_noise_ramp: float = 0.75
    loss: str = "lpips+mse"
    lpips_net: str = "vgg"
    mse_weight: float = 1.0
    lpips_weight: float = 1.0
    noise_reg: float = 1e5
    dist_reg: float = 1e-3  # grid distribution regularizer (sliced Wasserstein to W)
    smooth_reg: float = 0.0
    optimize_noise: bool = True
    noise_lr: float | None = None  # noise maps' learning rate, x the latents'
    sw_directions: int = 64
    seed: int = 0

    def validate(self) -> None:
        if self.space not in SPACES:
            raise InputError(f"unknown space {self.space!r}; expected one of {SPACES}")
        if self.grid_layers not in ("w", "w+"):
            raise InputError(f"grid_layers must be 'w' or 'w+', got {self.grid_layers!r}")
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; expected one of {LOSSES}")
        if self.lpips_net not in LPIPS_NETS:
            raise InputError(f"unknown LPIPS network {self.lpips_net!r}; expected one of {LPIPS_NETS}")
        if not 0 <= self.steps <= 1_000_000:
            raise InputError(f"steps must be in [0, 1000000], got {self.steps}")
        if not 1 <= self.density <= 256:
            raise InputError(f"density must be in [1, 256] cells per image side, got {self.density}")
        for name in ("lr", "noise_reg", "dist_reg", "smooth_reg", "mse_weight", "lpips_weight", *START_DEFAULTS["w_avg"]):
            v = getattr(self, name)
            if v is None and name in START_DEFAULTS["w_avg"]:
                continue
            if not (math.isfinite(v) and v >= 0):
                raise InputError(f"{name} must be a finite number >= 0, got {v}")
            if name in ("lr_rampup", "lr_rampdown") and v > 1:
                raise InputError(f"{name} is a fraction of the run: it must be in [0, 1], got {v}")

    @property
    def latent_space(self) -> str:
        """LatentGrid space of the result."""
        return self.grid_layers if self.space == "grid" else self.space

    @property
    def grid_density(self) -> int:
        """Cells per image side of the result: ``density`` for space 'grid', 1 for 'w+' and 'w'."""
        return self.density if self.space == "grid" else 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved(self, start: str = "w_avg") -> "OptimizeConfig":
        """A copy with every automatic (None) setting filled in for ``start``: ``'w_avg'`` or
        ``'given'`` (e.g. a learned encoder's grid)."""
        auto = START_DEFAULTS[start]
        return dataclasses.replace(self, **{k: v for k, v in auto.items() if getattr(self, k) is None})


# Schedule settings by start. From w_avg: StyleGAN2's projector. From a given start (a learned
# encoder's grid) the start is already close, and measured on held-out targets (docs/BENCHMARKS.md,
# encoders) a longer ramp-up (20% of the run instead of 5%: Adam's first, sign-like steps move
# every coordinate by the full rate and undo much of the start), a shorter ramp-down (10%), half
# the learning rate for the noise maps and no latent noise give 15-20% lower MSE after 100 steps.
START_DEFAULTS: dict[str, dict[str, float]] = {
    "w_avg": {"lr_rampup": 0.05, "lr_rampdown": 0.25, "latent_noise": 0.05, "noise_lr": 1.0},
    "given": {"lr_rampup": 0.2, "lr_rampdown": 0.1, "latent_noise": 0.0, "noise_lr": 0.5},
}


@dataclasses.dataclass
class Inversion:
    """What an inversion returns.

    ``grid``: the latents ``[B, L, C, h, w]`` with the noise maps in ``extras`` (``noise.<i>``,
    ``[B, 1, H_i, W_i]``) and the settings and generator fingerprint in ``meta``; ``images``: the
    reconstructions ``[B, 3, R, R]``; ``loss_curve``: per step, the per-image total loss;
    ``recon_curve``: per step, the per-image reconstruction loss alone (no regularizers);
    ``metrics``: per image ``{'mse', 'psnr', 'lpips' (when computed)}`` (MSE on [0, 1] pixels).
    """

    grid: LatentGrid
    images: torch.Tensor
    loss_curve: list[list[float]]
    recon_curve: list[list[float]]
    metrics: list[dict[str, float]]
    seconds: float

    def noise_maps(self) -> list[torch.Tensor]:
        """The optimized noise maps, one ``[B, 1, H_i, W_i]`` per noise layer (see :meth:`LatentGrid.noise_maps`)."""
        return self.grid.noise_maps() or []


def learning_rate(step: int, steps: int, cfg: OptimizeConfig) -> float:
    """Ramp up linearly over ``lr_rampup`` of the run, down with a half cosine over ``lr_rampdown``
    (automatic settings: those of a start from ``w_avg``)."""
    cfg = cfg.resolved("w_avg")
    t = step / max(steps, 1)
    down = min(1.0, (1.0 - t) / cfg.lr_rampdown) if cfg.lr_rampdown > 0 else 1.0
    down = 0.5 - 0.5 * math.cos(down * math.pi)
    up = min(1.0, t / cfg.lr_rampup) if cfg.lr_rampup > 0 else 1.0
    return cfg.lr * down * up


def check_targets(G: Generator, targets: torch.Tensor) -> None:
    R = G.img_resolution
    if not isinstance(targets, torch.Tensor) or targets.ndim != 4 or targets.shape[1:] != (G.img_channels, R, R):
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise InputError(f"targets must be [B, {G.img_channels}, {R}, {R}] in [-1, 1], got {shape}")
    if not torch.isfinite(targets).all():
        raise InputError("targets contain NaN or inf")


def invert(
    G: Generator,
    targets: torch.Tensor,
    config: OptimizeConfig | None = None,
    init: torch.Tensor | None = None,
    init_noise: list[torch.Tensor] | None = None,
    loss_fn: ReconstructionLoss | None = None,
    stats: WStats | None = None,
    callback: Callable[[int, int, dict[str, float]], None] | None = None,
) -> Inversion:
    """Invert ``targets`` ``[B, 3, R, R]`` (in [-1, 1]) by ``config.steps`` optimization steps.

    ``init``: starting latents ``[B, L, C, h, w]`` (L = 1 or num_ws, any cells; e.g. a learned
    encoder's grid), converted to the configured space and cells; default: ``w_avg``.
    ``init_noise``: starting noise maps (default: the network's stored maps). ``loss_fn`` and
    ``stats`` can be passed in to share them between batches. ``callback(step, steps, losses)``
    is called after every step with the batch-mean losses.
    """
    cfg = config or OptimizeConfig()
    cfg.validate()
    cfg = cfg.resolved("w_avg" if init is None else "given")
    check_targets(G, targets)
    device = G.device
    targets = targets.to(device, torch.float32)
    b, R = targets.shape[0], G.img_resolution
    t0 = time.perf_counter()
    if loss_fn is None:
        loss_fn = ReconstructionLoss(cfg.loss, cfg.lpips_net, cfg.mse_weight, cfg.lpips_weight, device=device)
    stats = stats or WStats.from_generator(G)
    sg = SpatialGenerator(G, padding=PaddingMode.ZERO)
    cells = (cfg.grid_density, cfg.grid_density)
    if init is None:
        init = G.mapping.w_avg.detach().view(1, 1, -1, 1, 1).expand(b, 1, -1, 1, 1)
    if init.ndim != 5 or init.shape[0] != b or init.shape[2] != G.w_dim:
        raise InputError(f"init latents must be [{b}, L, {G.w_dim}, h, w], got {tuple(init.shape)}")
    start = convert_grid(init.to(device, torch.float32), cfg.latent_space, G.num_ws, cells)
    param = stats.normalize(start).detach().clone().requires_grad_(cfg.steps > 0)
    noise = [n.detach().clone().to(device) for n in init_noise] if init_noise is not None else const_noise(G, b, (R, R))
    for n in noise:
        n.requires_grad_(cfg.optimize_noise and cfg.steps > 0)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = Adam([param], lr=cfg.lr)
    opt_noise = Adam(noise, lr=cfg.lr) if cfg.optimize_noise else None
    total_spread = math.sqrt(G.w_dim)  # W's total std in units of its per-coordinate spread
    latent_noise = cfg.latent_noise
    curve: list[list[float]] = []
    recon_curve: list[list[float]] = []

    def grid_of(x: torch.Tensor) -> LatentGrid:
        return LatentGrid(stats.denormalize(x), space=cfg.latent_space, density=cfg.grid_density)

    for step in range(cfg.steps):
        t = step / cfg.steps
        lr = learning_rate(step, cfg.steps, cfg)
        opt.lr = lr
        if opt_noise is not None:
            opt_noise.lr = lr * cfg.noise_lr
        sigma = latent_noise * total_spread * max(0.0, 1.0 - t / cfg.latent_noise_ramp) ** 2 if cfg.latent_noise_ramp > 0 else 0.0
        x = param
        if sigma > 0:
            x = x + sigma * torch.randn(param.shape, generator=gen).to(device)
        img = render(sg, grid_of(x), noise)
        parts = loss_fn(img, targets)
        total = parts["total"]
        if cfg.optimize_noise and cfg.noise_reg > 0:
            parts["noise_reg"] = noise_regularization(noise)
            total = total + cfg.noise_reg * parts["noise_reg"]
        if cfg.dist_reg > 0:
            dirs = random_directions(cfg.sw_directions, G.w_dim, gen, device)
            parts["dist_reg"] = grid_distribution_loss(stats.denormalize(param), stats, dirs)
            total = total + cfg.dist_reg * parts["dist_reg"]
        if cfg.smooth_reg > 0 and cfg.grid_density > 1:
            parts["smooth_reg"] = smoothness_loss(stats.denormalize(param), stats)
            total = total + cfg.smooth_reg * parts["smooth_reg"]
        opt.zero_grad()
        if opt_noise is not None:
            opt_noise.zero_grad()
        total.sum().backward()  # per-image losses are independent: summing keeps their gradients apart
        opt.step()
        if opt_noise is not None:
            opt_noise.step()
        if cfg.optimize_noise:
            normalize_noise_(noise)
        curve.append([float(v) for v in total.detach().cpu()])
        recon_curve.append([float(v) for v in parts["total"].detach().cpu()])
        if callback is not None:
            means = {k: float(v.detach().mean()) for k, v in parts.items()}
            means["recon"] = means.pop("total")
            means["loss"] = float(total.detach().mean())
            means["lr"] = lr
            callback(step + 1, cfg.steps, means)

    with torch.no_grad():
        # No step taken: return the start itself, not its normalize/denormalize round trip
        # (which is off by float rounding, so an encoder-only result would not be the encoder's grid).
        final = grid_of(param.detach()) if cfg.steps > 0 else LatentGrid(start, space=cfg.latent_space, density=cfg.grid_density)
        images = render(sg, final, noise)
        metrics = image_metrics(images, targets, loss_fn)
    final.extras = {f"noise.{i}": n.detach().clone() for i, n in enumerate(noise)}
    final.meta = {
        "generator_fingerprint": G.fingerprint(),
        "generator_resolution": R,
        "encoder_space": cfg.space,
        "optimize": cfg.to_dict(),
        "noise_layers": len(noise),
    }
    return Inversion(final, images.detach(), curve, recon_curve, metrics, time.perf_counter() - t0)


@torch.no_grad()
def image_metrics(images: torch.Tensor, targets: torch.Tensor, loss_fn: ReconstructionLoss | None = None) -> list[dict[str, float]]:
    """Per image ``{'mse', 'psnr'}`` on [0, 1] pixels, plus ``'lpips'`` when ``loss_fn`` has LPIPS."""
    mse01 = ((images.clamp(-1, 1) - targets) / 2).square().flatten(1).mean(1)
    out = [{"mse": float(m), "psnr": float(psnr(m))} for m in mse01.cpu()]
    if loss_fn is not None and loss_fn.lpips is not None:
        for o, v in zip(out, loss_fn.lpips_distance(images, targets).cpu()):
            o["lpips"] = float(v)
    return out
