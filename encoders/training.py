"""Train a :class:`~encoders.learned.GridEncoder` on the generator's own samples.

    python -m spatial_latent.train_encoder --network ffhq --out enc.pt --iters 20000 --batch 8

Every iteration draws a batch of latent grids, renders them with the spatial generator and
regresses the encoder's grid onto them (latent loss) and its rendering onto the image (image
loss). The grids are a mix of

* plain samples (one latent for the whole image),
* style-mixed samples (coarse layers from one latent, fine layers from another),
* compositions of 2-4 latents in soft Voronoi regions of the grid (out-of-sample arrangements),
* latent fields (an independent latent per coarse cell, interpolated) — far out of sample,

optionally plus real pictures from ``--real-dir`` (image loss only; they are centre-cropped, so
give already aligned faces). Iteration ``i`` draws its batch from a generator seeded by
``(seed, i)``, so a run resumed from a checkpoint (``--resume``) ends with exactly the weights an
uninterrupted run would have. Checkpoints (encoder, optimizer state, iteration, settings) are
written atomically to ``--out`` every ``--checkpoint-every`` iterations, at the end and on Ctrl-C.
``--resume`` with a larger ``--iters`` (and ``--lr-decay``) extends a finished run, e.g. by an
annealing phase: the learning rate of every iteration follows the settings of the resumed call.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from spatial_latent.errors import InputError

if TYPE_CHECKING:  # the command imports this module lightly: torch-heavy names for type checkers only
    from spatial_latent.networks import Generator

log = logging.getLogger(__name__)

KINDS = ("plain", "mixed", "composed", "field")


@dataclasses.dataclass
class TrainConfig:
    """Settings of an encoder training run (all of them are stored in the checkpoint)."""

    iters: int = 20000
    batch: int = 8
    lr: float = 1e-3
    lr_decay: float = 0.3  # fraction of the run, at its end, over which the learning rate falls (half cosine) to 1/20
    density: int = 8  # output grid cells per image side
    base_channels: int = 32
    max_channels: int = 256
    latent_weight: float = 1.0
    image_weight: float = 1.0
    loss: str = "mse"  # image loss: 'mse', 'lpips' or 'lpips+mse'
    lpips_net: str = "vgg"
    mix: tuple[float, float, float, float] = (0.3, 0.2, 0.3, 0.2)  # plain, mixed, composed, field
    psi_min: float = 0.7  # truncation drawn uniformly in [psi_min, 1]
    real_dir: str = ""
    real_per_batch: int = 0
    seed: int = 0

    def validate(self) -> None:
        if self.iters < 1 or self.batch < 1:
            raise InputError("--iters and --batch must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.lr_decay <= 1:
            raise InputError(f"--lr-decay must be in [0, 1], got {self.lr_decay}")
        if len(self.mix) != 4 or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise InputError("--mix needs four non-negative weights (plain, mixed, composed, field)")
        if not 0 <= self.psi_min <= 1:
            raise InputError("--psi-min must be in [0, 1]")
        if self.real_per_batch < 0 or self.real_per_batch > self.batch:
            raise InputError("--real-per-batch must be in [0, --batch]")
        if self.real_per_batch and not self.real_dir:
            raise InputError("--real-per-batch needs --real-dir")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mix"] = list(self.mix)
        return d

    # settings that must not change when a run is resumed (the result would not be one run)
    FIXED = ("batch", "lr", "density", "base_channels", "max_channels", "latent_weight", "image_weight", "loss", "lpips_net", "mix", "psi_min", "real_dir", "real_per_batch", "seed")


def learning_rate(it: int, cfg: TrainConfig) -> float:
    """Constant ``cfg.lr``, then a half cosine down to ``lr / 20`` over the last ``lr_decay`` of
    the run (a short CPU training ends much lower with the decay than at a constant rate)."""
    start = cfg.iters * (1 - cfg.lr_decay)
    if cfg.lr_decay <= 0 or it < start:
        return cfg.lr
    t = (it - start) / max(cfg.iters - start, 1)
    return cfg.lr * (0.05 + 0.95 * (0.5 + 0.5 * math.cos(math.pi * t)))


def iteration_generator(seed: int, it: int) -> "Any":
    import torch

    return torch.Generator().manual_seed((seed * 1_000_003 + it) % (2**63))


def sample_grids(G: Generator, batch: int, density: int, gen: Any, mix: Sequence[float] = (0.3, 0.2, 0.3, 0.2), psi_min: float = 0.7) -> Any:
    """A batch of training latents ``[batch, num_ws, C, density, density]`` (see the module docstring).

    All randomness comes from the CPU generator ``gen``.
    """
    import torch

    from spatial_latent.latents.grid import LatentGrid
    from spatial_latent.latents.masks import soft_regions

    from .noise_maps import resize_cells

    device = G.device
    num_ws, d = G.num_ws, density
    kinds = torch.multinomial(torch.tensor(mix, dtype=torch.float64), batch, replacement=True, generator=gen).tolist()

    def ws(n: int) -> torch.Tensor:  # [n, C] mapped latents with random truncation
        z = torch.randn([n, G.z_dim], generator=gen)
        psi = psi_min + (1 - psi_min) * torch.rand([n, 1], generator=gen)
        c = None
        if G.c_dim > 0:
            c = torch.nn.functional.one_hot(torch.randint(G.c_dim, [n], generator=gen), G.c_dim).float().to(device)
        w = G.mapping(z.to(device), c)
        avg = G.mapping.w_avg
        return avg + psi.to(device) * (w - avg)

    out = []
    for kind in kinds:
        name = KINDS[kind]
        if name == "plain":
            lat = ws(1)[:, None, :, None, None].expand(1, num_ws, -1, d, d)
        elif name == "mixed":
            a, b = ws(2)
            k = int(torch.randint(1, num_ws, [1], generator=gen))
            rows = torch.cat([a[None].expand(k, -1), b[None].expand(num_ws - k, -1)])
            lat = rows[None, :, :, None, None].expand(1, -1, -1, d, d)
        elif name == "composed":
            k = int(torch.randint(2, 5, [1], generator=gen))
            w = ws(k)  # [k, C]
            centres = torch.rand([k, 2], generator=gen) * d  # (y, x) in cells
            soft = float(0.2 + 0.8 * torch.rand([1], generator=gen))  # seam width, cells
            masks = soft_regions(centres, (d, d), soft).to(device)  # [k, d, d]
            lat = torch.einsum("khw,kc->chw", masks, w)[None, None].expand(1, num_ws, -1, -1, -1)
        else:  # field
            g = int(torch.randint(2, max(3, d + 1), [1], generator=gen))
            z = torch.randn([1, G.z_dim, g, g], generator=gen).to(device)
            c = None
            if G.c_dim > 0:
                c = torch.nn.functional.one_hot(torch.randint(G.c_dim, [1], generator=gen), G.c_dim).float().to(device)
            field = LatentGrid.from_z_grid(G, z, c, truncation_psi=psi_min + (1 - psi_min) * float(torch.rand([1], generator=gen))).data
            lat = resize_cells(field, (d, d)).expand(1, num_ws, -1, -1, -1)
        out.append(lat)
    return torch.cat(out).contiguous()


def load_real_images(folder: str, size: int, max_bytes: int = 2 << 30) -> Any:
    """Pictures in ``folder`` centre-cropped and resized to ``size``: uint8 ``[N, 3, size, size]``,
    at most ``max_bytes`` of them (they are kept in memory). ``folder`` may also be an aligned set
    written by ``python -m spatial_latent.prepare_faces`` (``.npz``): its training photos are used,
    never its validation split, so that encoders can be measured on photos they have not seen."""
    import numpy as np
    import torch

    from spatial_latent.io.pictures import list_images, read_image

    if Path(folder).suffix.lower() == ".npz":
        from spatial_latent.faces.dataset import AlignedFaces

        faces = AlignedFaces.load(folder)
        pics = faces.images[faces.split(validation=False)]
        if pics.shape[1] != size:
            pics = np.stack([center_square(p, size) for p in pics])
        log.info("%d training photos of %s (validation split left out)", len(pics), folder)
        return torch.from_numpy(np.ascontiguousarray(pics)).permute(0, 3, 1, 2).contiguous()
    paths = list_images([folder])
    limit = max(1, max_bytes // (3 * size * size))
    if len(paths) > limit:
        log.warning("using the first %d of %d pictures in %s (memory limit)", limit, len(paths), folder)
    pics = []
    for p in paths[:limit]:
        try:
            img = read_image(p, max_side=4 * size).pixels
        except InputError as e:
            log.warning("skipping %s", e)
            continue
        pics.append(center_square(img, size))
    if not pics:
        raise InputError(f"no readable pictures in {folder}")
    return torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2).contiguous()


def center_square(img: Any, size: int) -> Any:
    """uint8 ``[H, W, 3]`` -> its central square resized to ``[size, size, 3]``."""
    import cv2

    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = img[y : y + s, x : x + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def train_encoder(
    G: Generator,
    config: TrainConfig,
    out: str | os.PathLike,
    resume: bool = False,
    checkpoint_every: int = 500,
    callback: Callable[[int, int, dict[str, float]], None] | None = None,
) -> Any:
    """Train (or, with ``resume``, continue training) an encoder for ``G``; writes ``out``.

    ``callback(iteration, iters, losses)`` is called after every iteration. Returns the encoder.
    """
    import torch

    from spatial_latent.latents.grid import LatentGrid
    from spatial_latent.render.generator import SpatialGenerator

    from .adam import Adam
    from .learned import GridEncoder, build_encoder, load_encoder, read_encoder_file, save_encoder
    from .losses import ReconstructionLoss, WStats

    cfg = config
    cfg.validate()
    out = Path(out)
    device = G.device
    fingerprint = G.fingerprint()
    start = 0
    history: list[dict[str, float]] = []
    if resume and out.exists():
        payload = read_encoder_file(out)
        train = payload.get("extra", {}).get("train")
        if not train:
            raise InputError(f"{out} holds no training state to resume from")
        if payload.get("generator_fingerprint") != fingerprint:
            raise InputError(f"{out} was trained for another generator (fingerprint {payload.get('generator_fingerprint')}, this one {fingerprint})")
        old = train["config"]
        changed = [k for k in TrainConfig.FIXED if old.get(k) != cfg.to_dict()[k]]
        if changed:
            raise InputError(f"cannot resume {out} with different settings: {', '.join(changed)} (was {', '.join(repr(old.get(k)) for k in changed)})")
        enc: GridEncoder = load_encoder(out, device=device, G=G).requires_grad_(True).train()
        start = int(train["iteration"])
        history = list(train.get("history", []))
        opt = Adam(list(enc.parameters()), lr=cfg.lr)
        opt.load_state_dict(train["optimizer"])
        log.info("resuming %s at iteration %d", out, start)
    else:
        if out.exists() and not resume:
            raise InputError(f"{out} exists; pass --resume to continue it or choose another --out")
        out.parent.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # the encoder's initial weights
            enc = build_encoder(G, cfg.density, cfg.base_channels, cfg.max_channels)
        enc.train()
        opt = Adam(list(enc.parameters()), lr=cfg.lr)
    stats = WStats.from_generator(G)
    sg = SpatialGenerator(G)
    image_loss = ReconstructionLoss(cfg.loss, cfg.lpips_net, device=device)
    real = load_real_images(cfg.real_dir, G.img_resolution) if cfg.real_dir else None

    def save(it: int) -> None:
        train = {"iteration": it, "optimizer": opt.state_dict(), "config": cfg.to_dict(), "history": history}
        save_encoder(enc, out, fingerprint, {"train": train})

    done = start  # iterations finished (what a checkpoint records)
    try:
        for it in range(start, cfg.iters):
            gen = iteration_generator(cfg.seed, it)
            n_fake = cfg.batch - (cfg.real_per_batch if real is not None else 0)
            with torch.no_grad():
                true = sample_grids(G, n_fake, cfg.density, gen, cfg.mix, cfg.psi_min) if n_fake else None
                imgs = [sg(LatentGrid(true, space="w+", density=cfg.density)).clamp(-1, 1)] if n_fake else []
                if real is not None and cfg.real_per_batch:
                    idx = torch.randint(real.shape[0], [cfg.real_per_batch], generator=gen)
                    imgs.append(real[idx].to(device, torch.float32) / 127.5 - 1)
                target = torch.cat(imgs)
            opt.lr = learning_rate(it, cfg)
            pred = enc(target)
            parts: dict[str, torch.Tensor] = {}
            loss = pred.new_zeros([])
            if n_fake and cfg.latent_weight > 0:
                parts["latent"] = ((pred[:n_fake] - true) / stats.scale).square().mean()
                loss = loss + cfg.latent_weight * parts["latent"]
            if cfg.image_weight > 0:
                rec = sg(LatentGrid(pred, space="w+", density=cfg.density))
                parts["image"] = image_loss(rec, target)["total"].mean()
                loss = loss + cfg.image_weight * parts["image"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            done = it + 1
            record = {k: float(v.detach()) for k, v in parts.items()}
            record["loss"] = float(loss.detach())
            history.append(record)
            if callback is not None:
                callback(done, cfg.iters, record)
            if checkpoint_every > 0 and done % checkpoint_every == 0 and done < cfg.iters:
                save(done)
    except KeyboardInterrupt:
        save(done)
        log.info("interrupted: checkpoint after %d iterations written to %s (continue with --resume)", done, out)
        raise
    save(done)
    return enc.eval().requires_grad_(False)
