"""Training a StyleGAN2: padding-free on random crops, or whole aligned images (``mode``).

``mode='whole'`` is ordinary StyleGAN2 training on whole images (e.g. aligned faces): the
generator keeps its zero padding (its sense of position), z -> W with style mixing, noise
inputs, and DiffAugment (:mod:`spatial_latent.training.augment`) on everything the discriminator sees.

``mode='crops'``: one step, as in StyleGAN2 with the seed paper's latent distribution:

1. a batch of latent grids ``[B, 1, C, h, w]``: white z per cell, smoothed by a Gaussian of
   ``correlation`` cells (closer cells are more dependent, the statistics the same everywhere;
   the same construction as :class:`~spatial_latent.latents.field.LatentField`), mapped cell by cell;
2. a random ``crop x crop`` window of the infinite canvas rendered padding-free by
   :class:`~spatial_latent.render.generator.SpatialGenerator` (per-location styles, coordinate noise);
3. the StyleGAN2 residual discriminator on generated and real random crops, non-saturating
   logistic loss, lazy R1 on reals, Adam (0, 0.99), an EMA copy of the generator.

Everything random in step ``k`` is drawn from generators seeded by ``(seed, k)``, so a run
resumed from a checkpoint continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..atomic import atomic_write
from .augment import augment, parse_policy
from .data import CropSampler
from .discriminator import Discriminator
from ..errors import CheckpointError, InputError
from ..latents.field import gaussian_taps
from ..latents.grid import LatentGrid
from ..networks import Generator, GeneratorConfig
from ..latents.window import Window
from ..render.generator import SpatialGenerator

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "spatial-latent-training"


@dataclass
class TrainConfig:
    """Hyper-parameters of a run (saved in every checkpoint)."""

    crop: int = 64  # training crop size (power of two); the discriminator's resolution
    mode: str = "crops"  # 'crops' (padding-free, random windows) or 'whole' (whole images, zero padding)
    augment: str = ""  # DiffAugment policy, e.g. 'color,translation,cutout'
    style_mixing: float = 0.9  # probability of mixing two latents ('whole' mode)
    noise: bool = True  # noise inputs; False: strengths zeroed and never used (no gradient reaches them)
    batch: int = 8
    steps: int = 1000
    lr_g: float = 0.002
    lr_d: float = 0.002
    r1_gamma: float = 0.5
    r1_every: int = 16
    ema_kimg: float = 2.0  # EMA half-life in thousands of images
    ema_rampup: float = 0.05  # half-life at most this fraction of the images seen so far
    density: int = 4  # latent cells per native image side
    correlation: float = 2.0  # Gaussian smoothing of the z field, in cells
    seed: int = 0
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on the CPU)
    d_channels: dict[int, int] = field(default_factory=dict)  # default: the generator's widths

    def validate(self) -> None:
        if self.mode not in ("crops", "whole"):
            raise InputError(f"--mode must be crops or whole, got {self.mode!r}")
        parse_policy(self.augment)
        if not 0 <= self.style_mixing <= 1:
            raise InputError(f"style mixing probability must be in [0, 1], got {self.style_mixing}")
        if self.crop < 8 or self.crop & (self.crop - 1):
            raise InputError(f"--crop must be a power of two >= 8, got {self.crop}")
        if self.batch < 2:
            raise InputError(f"--batch must be at least 2 (minibatch std), got {self.batch}")
        if self.steps < 0:
            raise InputError(f"--steps must be >= 0, got {self.steps}")
        if self.density < 1 or self.correlation < 0:
            raise InputError("--density must be >= 1 and --correlation >= 0")


def _step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    # Distinct, reproducible streams per (seed, step, purpose).
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + stream) % (2**63 - 1))


def default_d_channels(G: Generator, crop: int) -> dict[int, int]:
    """Discriminator widths mirroring the generator's (crops larger than ``img_resolution`` use
    the top width)."""
    ch = G.config.channels
    top = ch[G.img_resolution]
    out = {}
    res = crop
    while res >= 4:
        out[res] = ch.get(res, top)
        res //= 2
    return out


class Trainer:
    """Holds G, G_ema, D, their optimizers and the step; :meth:`step` runs one training step.

    ``G`` is trained in place (``requires_grad`` on); ``sampler`` gives real crops.
    """

    def __init__(self, G: Generator, sampler: CropSampler, cfg: TrainConfig, device: torch.device) -> None:
        cfg.validate()
        if G.config.c_dim:
            raise InputError("training conditional generators is not supported (the crops carry no labels)")
        if sampler.size != cfg.crop:
            raise InputError(f"crop sampler gives {sampler.size} px crops, config says {cfg.crop}")
        if cfg.mode == "whole" and cfg.crop != G.img_resolution:
            raise InputError(f"whole-image training needs images of the generator's {G.img_resolution} px, got {cfg.crop}")
        if not cfg.d_channels:
            cfg.d_channels = default_d_channels(G, cfg.crop)
        self.cfg, self.device, self.sampler = cfg, device, sampler
        self.G = G.to(device).train().requires_grad_(True)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.D = Discriminator(cfg.crop, cfg.d_channels, img_channels=G.config.img_channels).to(device)
        ratio = cfg.r1_every / (cfg.r1_every + 1)  # lazy regularization: keep the effective lr
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(0.0, 0.99), eps=1e-8)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
        self.sg = SpatialGenerator(self.G, padding="none")
        self.sg_ema = SpatialGenerator(self.G_ema, padding="none")
        self.taps = gaussian_taps(cfg.correlation).to(torch.float32)
        self.policy = parse_policy(cfg.augment)
        self.step_index = 0
        self.history: list[dict[str, float]] = []
        if not cfg.noise:
            self.silence_noise()

    @torch.no_grad()
    def silence_noise(self) -> None:
        """Noise strengths to 0 (``cfg.noise`` False): renders use no noise, so no gradient moves
        them, and every noise mode renders alike."""
        for G in (self.G, self.G_ema):
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.zero_()

    # -- latents and renders ---------------------------------------------------------------------
    def latent_grid(self, G: Generator, batch: int, cells: tuple[int, int], gen: torch.Generator) -> LatentGrid:
        """Correlated z per cell -> mapping (with gradients when G trains): ``[B, 1, C, h, w]``."""
        r = (len(self.taps) - 1) // 2
        h, w = cells
        z = torch.randn(batch * G.z_dim, 1, h + 2 * r, w + 2 * r, generator=gen).to(self.device)
        if r:
            taps = self.taps.to(self.device)
            z = F.conv2d(F.conv2d(z, taps.reshape(1, 1, 1, -1)), taps.reshape(1, 1, -1, 1))
        z = z.reshape(batch, G.z_dim, h, w).permute(0, 2, 3, 1).reshape(-1, G.z_dim)
        wv = G.mapping(z, None)
        if G.training:  # track the average W for truncation, as StyleGAN2 does (beta 0.995)
            with torch.no_grad():
                G.mapping.w_avg.copy_(torch.lerp(wv.detach().float().mean(0), G.mapping.w_avg, 0.995))
        data = wv.reshape(batch, h, w, 1, G.w_dim).permute(0, 3, 4, 1, 2)
        return LatentGrid(data, space="w", density=self.cfg.density)

    def whole_images(self, G: Generator, batch: int, gen: torch.Generator, mixing: float = 0.0) -> torch.Tensor:
        """``[B, 3, R, R]``: whole images from random z (zero padding), with style mixing."""
        z = torch.randn(batch, G.z_dim, generator=gen).to(self.device)
        ws = G.mapping(z, None, num_ws=G.num_ws)
        if G.training:
            with torch.no_grad():
                G.mapping.w_avg.copy_(torch.lerp(ws[:, 0].detach().float().mean(0), G.mapping.w_avg, 0.995))
        if mixing > 0 and bool(torch.rand((), generator=gen) < mixing):
            z2 = torch.randn(batch, G.z_dim, generator=gen).to(self.device)
            cut = int(torch.randint(1, G.num_ws, (1,), generator=gen))
            ws = torch.cat([ws[:, :cut], G.mapping(z2, None, num_ws=G.num_ws)[:, cut:]], dim=1)
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(noise_seed)  # the noise inputs, reproducibly
            return G.synthesis(ws, noise_mode="random" if self.cfg.noise else "none")

    def render(self, sg: SpatialGenerator, batch: int, size: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
        """``[B, 3, *size]``: a random window of fresh infinite canvases (padding-free), or in
        ``whole`` mode whole images."""
        if self.cfg.mode == "whole":
            return self.whole_images(sg.G, batch, gen, self.cfg.style_mixing if sg.G.training else 0.0)
        G, d = sg.G, self.cfg.density
        cell_px = G.img_resolution / d
        oy, ox = (int(v) for v in torch.randint(0, G.img_resolution, (2,), generator=gen))
        need = sg.cells_needed(Window(ox, oy, ox + size[1], oy + size[0]), d)
        # Shift by whole cells so the grid starts at cell 0, keeping the window's phase.
        sy, sx = -need.y0, -need.x0
        if (sy * cell_px) % 1 or (sx * cell_px) % 1:
            raise InputError(f"density {d} does not divide the generator resolution {G.img_resolution}")
        win = Window(ox + int(sx * cell_px), oy + int(sy * cell_px), ox + int(sx * cell_px) + size[1], oy + int(sy * cell_px) + size[0])
        grid = self.latent_grid(G, batch, need.size, gen)
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        return sg(grid, noise_mode="random" if self.cfg.noise else "none", noise_seed=noise_seed, window=win)

    def _autocast(self) -> Any:
        enabled = self.cfg.amp and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # -- one step --------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        cfg, k = self.cfg, self.step_index
        crop = (cfg.crop, cfg.crop)
        stats: dict[str, float] = {"step": float(k)}

        # Discriminator: fakes and reals, plus lazy R1 on reals.
        real = self.sampler.sample(cfg.batch, _step_generator(cfg.seed, k, 1)).to(self.device)
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        with torch.no_grad(), self._autocast():
            fake = self.render(self.sg, cfg.batch, crop, _step_generator(cfg.seed, k, 2))
        aug = _step_generator(cfg.seed, k, 4)
        with self._autocast():
            logits_fake = self.D(augment(fake.float(), self.policy, aug)).float()
            logits_real = self.D(augment(real, self.policy, aug)).float()
        loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if cfg.r1_gamma > 0 and k % cfg.r1_every == 0:
            real_r1 = real.detach().requires_grad_(True)
            score = self.D(augment(real_r1, self.policy, _step_generator(cfg.seed, k, 5))).sum()  # fp32: the gradient penalty is sensitive to precision
            (grad,) = torch.autograd.grad(score, real_r1, create_graph=True)
            r1 = grad.square().sum(dim=(1, 2, 3)).mean()
            (r1 * (cfg.r1_gamma / 2) * cfg.r1_every).backward()
            stats["r1"] = r1.item()
        self.opt_d.step()
        stats["loss_d"] = loss_d.item()
        stats["real_score"] = logits_real.mean().item()
        stats["fake_score"] = logits_fake.mean().item()

        # Generator: non-saturating loss.
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        with self._autocast():
            fake = self.render(self.sg, cfg.batch, crop, _step_generator(cfg.seed, k, 3))
            loss_g = F.softplus(-self.D(augment(fake.float(), self.policy, _step_generator(cfg.seed, k, 6))).float()).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        stats["loss_g"] = loss_g.item()

        self._update_ema()
        self.step_index += 1
        self.history.append(stats)
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        cfg = self.cfg
        nimg = (self.step_index + 1) * cfg.batch
        half_life = min(cfg.ema_kimg * 1000, nimg * cfg.ema_rampup) if cfg.ema_rampup else cfg.ema_kimg * 1000
        beta = 0.5 ** (cfg.batch / max(half_life, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(torch.lerp(p.detach(), p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # -- samples ---------------------------------------------------------------------------------
    @torch.no_grad()
    def samples(self, count: int, size: tuple[int, int], seed: int = 12345, ema: bool = True) -> torch.Tensor:
        """``[count, 3, *size]`` from fixed seeds (comparable across checkpoints)."""
        sg = self.sg_ema if ema else self.sg
        if self.cfg.mode == "whole":
            return self.whole_images(sg.G, count, _step_generator(seed, 0, 9)).float().cpu()
        out = [self.render(sg, 1, size, _step_generator(seed, i, 9)) for i in range(count)]
        return torch.cat(out).float().cpu()

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step_index,
            "train_config": dataclasses.asdict(self.cfg),
            "generator_config": generator_config_dict(self.G.config),
            "G": self.G.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "history_json": json.dumps(self.history),
        }

    def save(self, path: str | Path) -> Path:
        """Write a resumable checkpoint atomically (``torch.save`` of tensors and plain data only)."""
        path = Path(path)
        with atomic_write(path) as tmp:
            torch.save(self.state(), tmp)
        return path

    def load_state(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.G_ema.load_state_dict(state["G_ema"])
        if not self.cfg.noise:
            self.silence_noise()
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step_index = int(state["step"])
        self.history = json.loads(state["history_json"])


def generator_config_dict(cfg: GeneratorConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["channels"] = {str(k): v for k, v in cfg.channels.items()}
    return d


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :meth:`Trainer.save` without running any code from it.

    Everything is checked before a network is built from it: the file's size and zip members,
    both configs (types and ranges), and the keys and shapes of ``G``, ``G_ema`` and ``D``
    against what the configs imply (so a small file cannot make the caller allocate a huge
    network), finite floating-point weights. Every failure is one :class:`CheckpointError` line.
    """
    from ..limits import MAX_TRAINING_CHECKPOINT_BYTES, check_file_size, check_zip_sizes

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training checkpoint not found: {path}")
    check_file_size(path, MAX_TRAINING_CHECKPOINT_BYTES, "training checkpoint")
    if zipfile.is_zipfile(path):  # declared sizes first: torch would trust them
        check_zip_sizes(path, str(path), "training checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, foreign pickle, not a torch file
        raise CheckpointError(f"{path} is not a readable training checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a spatial-latent training checkpoint (use --init for generator checkpoints)")
    _check_training_state(state, str(path))
    return state


def _check_training_state(state: dict[str, Any], source: str) -> None:
    from ..checkpoints.validate import check_config_values, config_from_json, validate_state_dict

    gc = state.get("generator_config")
    if not isinstance(gc, dict):
        raise CheckpointError(f"{source}: malformed training checkpoint: generator_config is a {type(gc).__name__}, not a dict")
    try:
        gtext = json.dumps(gc)
    except (TypeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{source}: malformed training checkpoint: generator_config is not plain data ({e})") from None
    gcfg = config_from_json(gtext, f"{source}: generator_config")
    check_config_values(gcfg, source)
    try:
        cfg = train_config_from(state)
        cfg.validate()
    except (InputError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{source}: malformed training checkpoint: train_config ({type(e).__name__}: {str(e)[:200]})") from None
    if cfg.mode == "whole" and cfg.crop != gcfg.img_resolution:
        raise CheckpointError(f"{source}: malformed training checkpoint: whole-image crop {cfg.crop} != resolution {gcfg.img_resolution}")
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{source}: malformed training checkpoint: step is {step!r}")
    for name in ("G", "G_ema"):
        sd = state.get(name)
        if not isinstance(sd, dict):
            raise CheckpointError(f"{source}: malformed training checkpoint: no {name} state dict")
        validate_state_dict(gcfg, sd, source=f"{source}: {name}")
        _check_finite(sd, f"{source}: {name}")
    d_channels = cfg.d_channels or _d_channels_for(gcfg, cfg.crop)
    if any(not 1 <= v <= 1 << 16 for v in d_channels.values()):
        raise CheckpointError(f"{source}: malformed training checkpoint: discriminator widths {d_channels} out of range")
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            expected = {k: tuple(v.shape) for k, v in Discriminator(cfg.crop, d_channels, img_channels=gcfg.img_channels).state_dict().items()}
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: malformed training checkpoint: discriminator config ({type(e).__name__}: {e})") from None
    sd = state.get("D")
    if not isinstance(sd, dict) or {k: tuple(getattr(v, "shape", ())) for k, v in sd.items()} != expected:
        raise CheckpointError(f"{source}: malformed training checkpoint: D does not match its configured widths {d_channels}")
    _check_finite(sd, f"{source}: D")
    if not isinstance(state.get("history_json", "[]"), str):
        raise CheckpointError(f"{source}: malformed training checkpoint: history_json is not text")
    for name in ("opt_g", "opt_d"):
        if not isinstance(state.get(name), dict):
            raise CheckpointError(f"{source}: malformed training checkpoint: no {name} optimizer state")


def _check_finite(sd: dict[str, Any], source: str) -> None:
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor) or not v.is_floating_point() or not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{source}: weights are not finite floating-point tensors in {bad[:8]}")


def _d_channels_for(gcfg: GeneratorConfig, crop: int) -> dict[int, int]:
    """:func:`default_d_channels` from a config alone."""
    ch = gcfg.channels
    top = ch[gcfg.img_resolution]
    out, res = {}, crop
    while res >= 4:
        out[res] = ch.get(res, top)
        res //= 2
    return out


def generator_config_from(state: dict[str, Any]) -> GeneratorConfig:
    """Inverse of :func:`generator_config_dict` for a checkpoint's ``generator_config``."""
    d = dict(state["generator_config"])
    d["channels"] = {int(k): v for k, v in d["channels"].items()}
    return GeneratorConfig(**d)


def train_config_from(state: dict[str, Any]) -> TrainConfig:
    d = dict(state["train_config"])
    d["d_channels"] = {int(k): int(v) for k, v in d.get("d_channels", {}).items()}
    return TrainConfig(**d)


def swd_whole(trainer: Trainer, real: torch.Tensor, seed: int = 777) -> float:
    """SWD (x1e3, mean over levels) of ``len(real)`` EMA images from fixed seeds against ``real``
    ``[N, 3, R, R]`` (e.g. a validation split)."""
    from ..metrics.swd import sliced_wasserstein

    fake = torch.cat([trainer.samples(min(64, len(real) - i), (trainer.cfg.crop,) * 2, seed=seed + i) for i in range(0, len(real), 64)])
    return float(sliced_wasserstein(fake, real.float(), seed=seed)["mean"])


def swd_by_scale(trainer: Trainer, count: int = 64, scales: tuple[int, ...] = (1, 4), seed: int = 777, per_image: int = 4) -> dict[int, float]:
    """SWD (x1e3, mean over levels) of ``count`` crops cut from EMA renders ``scale`` times the
    crop size against ``count`` real crops, per scale (see :func:`~spatial_latent.metrics.scale_consistency`)."""
    from ..metrics.swd import scale_consistency

    crop = trainer.cfg.crop
    real = trainer.sampler.sample(count, torch.Generator().manual_seed(seed))
    return scale_consistency(lambda s, n: trainer.samples(n, (crop * s, crop * s), seed=seed), real, scales, seed=seed, per_image=per_image)
