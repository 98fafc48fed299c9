"""A learned encoder: image ``[B, 3, R, R]`` -> per-layer latent grids ``[B, num_ws, C, d, d]``.

pSp/e4e-like: a residual CNN downsamples the image into a feature pyramid; a top-down path
(FPN) merges the levels; each group of synthesis layers reads the level that matches it (the
coarse layers, up to 8x8, the deepest features; layers up to 32x32 the middle ones; finer layers
the shallowest), pooled onto the ``d x d`` cell grid, and a small head predicts every cell's
latents for its layers. Outputs are offsets from ``w_avg`` in units of W's spread, and the last
layer of every head starts at zero, so an untrained encoder returns the average latent.

Trained on the generator's own samples (see :mod:`encoders.training`); saved as a ``.pt`` file that
holds only tensors, numbers and strings (read back with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spatial_latent.atomic import atomic_write
from spatial_latent.errors import InputError
from spatial_latent.limits import MAX_ENCODER_BYTES, check_file_size, check_zip_sizes
from spatial_latent.latents.grid import LatentGrid
from spatial_latent.networks import Generator

log = logging.getLogger(__name__)

ENCODER_FORMAT = "spatial-latent-encoder"
ENCODER_FORMAT_VERSION = 2  # 2: the config's grid size is `density` (version 1 called it `cells`)


@dataclasses.dataclass
class EncoderConfig:
    """Shape of a :class:`GridEncoder` and of the generator it belongs to."""

    img_resolution: int  # generator resolution (images come in at this size)
    w_dim: int
    num_ws: int
    density: int = 8  # output grid cells per image side
    input_resolution: int = 0  # images are resized to this before encoding (0: min(R, 256))
    base_channels: int = 32
    max_channels: int = 256

    def __post_init__(self) -> None:
        if self.input_resolution == 0:
            self.input_resolution = min(self.img_resolution, 256)
        r = self.input_resolution
        if r < 16 or r & (r - 1):
            raise InputError(f"encoder input resolution must be a power of two >= 16, got {r}")
        if not 1 <= self.density <= 64:
            raise InputError(f"encoder density must be in [1, 64] cells per image side, got {self.density}")

    def layer_groups(self) -> list[list[int]]:
        """W+ rows per pyramid level (coarse, medium, fine), by the resolution each row drives."""
        groups: list[list[int]] = [[], [], []]
        for row in range(self.num_ws):
            res = 4 * 2 ** ((row + 1) // 2) if row < self.num_ws - 1 else self.img_resolution
            groups[0 if res <= 8 else 1 if res <= 32 else 2].append(row)
        return groups


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class _DownBlock(nn.Module):
    """Residual block halving the resolution: ``[B, I, H, W] -> [B, O, H/2, W/2]``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(_lrelu(self.conv0(_lrelu(x))))
        return (y + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


class _Head(nn.Module):
    """Features ``[B, F, h, w]`` -> latents for ``n`` layers on ``d x d`` cells ``[B, n, C, d, d]``."""

    def __init__(self, features: int, n: int, w_dim: int, density: int) -> None:
        super().__init__()
        self.n, self.w_dim, self.density = n, w_dim, density
        self.conv = nn.Conv2d(features, features, 3, padding=1)
        self.out = nn.Conv2d(features, n * w_dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        d = self.density
        f = F.adaptive_avg_pool2d(f, d) if f.shape[-1] >= d else F.interpolate(f, size=(d, d), mode="bilinear", align_corners=False)
        y = self.out(_lrelu(self.conv(f)))
        return y.view(y.shape[0], self.n, self.w_dim, d, d)


class GridEncoder(nn.Module):
    """Image ``[B, 3, R, R]`` in [-1, 1] -> latents ``[B, num_ws, w_dim, density, density]`` (space w+).

    ``w_avg`` ``[w_dim]`` and ``w_scale`` (W's per-coordinate spread) are buffers copied from the
    generator, so outputs are ``w_avg + w_scale * prediction``.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg = config
        r = cfg.input_resolution
        levels = [max(r // 4, 4), max(r // 8, 2), max(r // 16, 1)]  # fine, medium, coarse
        ch = lambda res: min(cfg.base_channels * (r // res), cfg.max_channels)  # noqa: E731
        self.stem = nn.Conv2d(3, ch(r), 3, padding=1)
        blocks, res = [], r
        while res > levels[-1]:
            blocks.append(_DownBlock(ch(res), ch(res // 2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        self.level_res = levels
        width = ch(levels[-1])
        self.lateral = nn.ModuleList([nn.Conv2d(ch(lr), width, 1) for lr in levels])
        groups = cfg.layer_groups()
        self.groups = groups
        self.heads = nn.ModuleList([_Head(width, len(g), cfg.w_dim, cfg.density) if g else nn.Identity() for g in groups])
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))
        self.register_buffer("w_scale", torch.ones([]))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if img.ndim != 4 or img.shape[1] != 3:
            raise InputError(f"encoder input must be [B, 3, H, W], got {tuple(img.shape)}")
        r = cfg.input_resolution
        if img.shape[-2:] != (r, r):
            mode = "area" if img.shape[-1] > r else "bilinear"
            img = F.interpolate(img, size=(r, r), mode=mode, **({} if mode == "area" else {"align_corners": False}))
        x = self.stem(img)
        feats: dict[int, torch.Tensor] = {}
        res = r
        for block in self.blocks:
            x = block(x)
            res //= 2
            feats[res] = x
        # top-down: coarse -> medium -> fine, each level adds the upsampled coarser one
        fine, mid, coarse = (self.lateral[i](feats[lr]) for i, lr in enumerate(self.level_res))
        mid = mid + F.interpolate(coarse, size=mid.shape[-2:], mode="bilinear", align_corners=False)
        fine = fine + F.interpolate(mid, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        parts = [head(f) for rows, head, f in zip(self.groups, self.heads, (coarse, mid, fine)) if rows]
        out = torch.cat(parts, dim=1)  # groups hold consecutive rows in order, so this is row order
        return self.w_avg.view(1, 1, -1, 1, 1) + self.w_scale * out

    def encode(self, img: torch.Tensor) -> LatentGrid:
        """Image ``[B, 3, R, R]`` -> a one-image :class:`LatentGrid` (space w+, ``config.density``)."""
        return LatentGrid(self(img), space="w+", density=self.config.density)

    def check_generator(self, G: Generator) -> None:
        """Raise :class:`InputError` unless this encoder fits ``G`` (resolution, num_ws, w_dim)."""
        cfg = self.config
        if (cfg.img_resolution, cfg.num_ws, cfg.w_dim) != (G.img_resolution, G.num_ws, G.w_dim):
            raise InputError(
                f"this encoder was trained for a {cfg.img_resolution}px generator with {cfg.num_ws}x{cfg.w_dim} latents, "
                f"not {G.img_resolution}px with {G.num_ws}x{G.w_dim}"
            )


def build_encoder(G: Generator, density: int = 8, base_channels: int = 32, max_channels: int = 256, input_resolution: int = 0, w_scale: float | None = None) -> GridEncoder:
    """A fresh encoder for generator ``G`` (its ``w_avg`` and W's spread copied in)."""
    from .losses import WStats

    cfg = EncoderConfig(G.img_resolution, G.w_dim, G.num_ws, density, input_resolution, base_channels, max_channels)
    enc = GridEncoder(cfg).to(G.device)
    with torch.no_grad():
        enc.w_avg.copy_(G.mapping.w_avg)
        enc.w_scale.fill_(w_scale if w_scale is not None else WStats.from_generator(G).scale)
    return enc


def save_encoder(enc: GridEncoder, path: str | os.PathLike, generator_fingerprint: str = "", extra: dict[str, Any] | None = None) -> Path:
    """Write ``enc`` (and optional training state in ``extra``) to ``path``, atomically."""
    path = Path(path)
    payload = {
        "format": ENCODER_FORMAT,
        "format_version": ENCODER_FORMAT_VERSION,
        "config": dataclasses.asdict(enc.config),
        "state_dict": {k: v.detach().cpu() for k, v in enc.state_dict().items()},
        "generator_fingerprint": generator_fingerprint,
        "extra": extra or {},
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


# Encoders trained here for the embedded generators, shipped in weights/ (see its card).
EMBEDDED_ENCODERS = {"faces": Path(__file__).parent / "weights" / "faces_encoder.pt"}


def read_encoder_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw payload of an encoder file (safe: tensors, numbers and strings only); a name of
    :data:`EMBEDDED_ENCODERS` (``faces``) reads the shipped one."""
    path = Path(path)
    if str(path) in EMBEDDED_ENCODERS and not path.exists():
        path = EMBEDDED_ENCODERS[str(path)]
    if not path.is_file():
        raise InputError(f"encoder file not found: {path}")
    check_file_size(path, MAX_ENCODER_BYTES, "learned encoder file", InputError)
    if zipfile.is_zipfile(path):  # declared sizes first: torch would trust them
        check_zip_sizes(path, str(path), "learned encoder file", InputError)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"{path}: not a readable encoder file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(payload, dict) or payload.get("format") != ENCODER_FORMAT:
        raise InputError(f"{path} is not a spatial-latent encoder file")
    if payload.get("format_version") != ENCODER_FORMAT_VERSION:
        raise InputError(f"{path}: encoder format version {payload.get('format_version')!r} is not supported")
    return payload


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu", G: Generator | None = None) -> GridEncoder:
    """Read an encoder written by :func:`save_encoder`; with ``G``, check that it fits it."""
    payload = read_encoder_file(path)
    try:
        cfg = EncoderConfig(**payload["config"])
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 1 << 16:
                raise InputError(f"{path}: encoder config {f.name} is {v!r}, expected an integer in [0, 65536]")
        state = payload["state_dict"]
        if not isinstance(state, dict):
            raise InputError(f"{path}: the encoder file holds no state dict")
        # the shapes the config implies, from a network built on the meta device (no memory),
        # checked against the file's tensors before a real network is allocated
        with torch.device("meta"):
            meta = GridEncoder(cfg).state_dict()
        expected = {k: tuple(v.shape) for k, v in meta.items()}
        wrong = [k for k, shape in expected.items() if not isinstance(state.get(k), torch.Tensor) or tuple(state[k].shape) != shape]
        extra = [k for k in state if k not in expected]
        if wrong or extra:
            raise InputError(f"{path}: encoder weights do not match its config (missing or mis-shaped: {wrong[:6]}, unexpected: {extra[:6]})")
        bad = [k for k, v in state.items() if meta[k].is_floating_point() and (not v.is_floating_point() or not torch.isfinite(v).all())]
        if bad:
            raise InputError(f"{path}: encoder weights are not finite floating-point numbers in {bad[:6]}")
        enc = GridEncoder(cfg)
        enc.load_state_dict(state, strict=True)
    except (TypeError, KeyError, RuntimeError, ValueError, AttributeError) as e:
        raise InputError(f"{path}: inconsistent encoder file ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})") from None
    enc = enc.eval().requires_grad_(False).to(device)
    if G is not None:
        enc.check_generator(G)
        fp = payload.get("generator_fingerprint")
        if fp and fp != G.fingerprint():
            log.warning("%s was trained on another generator (fingerprint %s, this one %s)", path, fp, G.fingerprint())
    return enc
