"""Losses for inversion: reconstruction (LPIPS + MSE) and the regularizers of latents and noise.

* :class:`ReconstructionLoss` — per-sample ``lpips_weight * LPIPS + mse_weight * MSE`` between images
  ``[B, 3, H, W]`` in ``[-1, 1]``. LPIPS needs its pretrained AlexNet/VGG backbone, which
  torchvision downloads into the torch hub cache at first use; when that is impossible
  :func:`load_lpips` raises :class:`LpipsWeightsError` (one message: the file, where it must go,
  and ``--loss mse``). It never continues with a randomly initialised backbone.
* :func:`noise_regularization` — StyleGAN2's penalty on the spatial autocorrelation of optimized
  noise maps at every scale down to 8x8 (keeps them noise, so they do not learn the image).
* :func:`grid_distribution_loss` — the regularizer that equalizes the distribution of the parts of
  a latent grid with the generator's own latent distribution. Our choice: every cell of every
  layer is one sample; its distance to the distribution of mapping-network outputs W is a sliced
  Wasserstein-2 distance (random 1-D projections, sorted cell projections against the matching
  quantiles of many generated latents), in units of W's own spread. It pulls encoded cells toward
  where generated cells live without tying every cell to the mean (a mean/covariance match would
  need far more cells than a grid has to estimate a 512-D covariance).
* :func:`smoothness_loss` — optional: mean squared difference between neighbouring cells.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from spatial_latent.errors import DownloadError, InputError
from spatial_latent.networks import Generator

log = logging.getLogger(__name__)

LOSSES = ("lpips+mse", "lpips", "mse")
LPIPS_NETS = ("vgg", "alex")
_BACKBONES = {  # torchvision file each lpips backbone needs
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
}


class LpipsWeightsError(DownloadError):
    """The LPIPS backbone weights are not present and could not be downloaded."""


def lpips_backbone_path(net: str) -> Path:
    """Where torchvision keeps (and looks for) the backbone of ``lpips.LPIPS(net=net)``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _BACKBONES[net][0]


def load_lpips(net: str = "vgg", device: torch.device | str = "cpu") -> torch.nn.Module:
    """``lpips.LPIPS(net)`` with pretrained backbone and calibrated heads, frozen, on ``device``.

    Raises :class:`LpipsWeightsError` when the backbone is missing and cannot be downloaded.
    """
    if net not in LPIPS_NETS:
        raise InputError(f"unknown LPIPS network {net!r}; expected one of {LPIPS_NETS}")
    import lpips

    path = lpips_backbone_path(net)
    if not path.is_file():
        log.info("LPIPS-%s: downloading its backbone into %s", net, path.parent)
    try:
        with warnings.catch_warnings():  # torchvision's deprecation notes about lpips' call style
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=False, verbose=False)
    except Exception as e:  # URLError, HTTP errors, SSL errors, partial files: all the same to a user
        raise LpipsWeightsError(
            f"LPIPS-{net} needs its pretrained backbone {path.name}, which is not in the torch hub cache "
            f"and could not be downloaded ({type(e).__name__}: {e}). Put the file from {_BACKBONES[net][1]} "
            f"at {path} (the folder follows $TORCH_HOME), or use --loss mse"
        ) from None
    return model.eval().requires_grad_(False).to(device)


class ReconstructionLoss(torch.nn.Module):
    """Per-sample image distance ``[B]`` between ``img`` and ``target`` (``[B, 3, H, W]``, [-1, 1]).

    ``kind``: ``'lpips+mse'``, ``'lpips'`` or ``'mse'``. LPIPS runs on images area-resized to at
    most ``lpips_size`` px (and upsampled to at least 64 px, which the backbones need).
    """

    def __init__(
        self,
        kind: str = "lpips+mse",
        lpips_net: str = "vgg",
        mse_weight: float = 1.0,
        lpips_weight: float = 1.0,
        lpips_size: int = 256,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise InputError(f"unknown loss {kind!r}; expected one of {LOSSES}")
        self.kind = kind
        self.mse_weight = mse_weight if "mse" in kind else 0.0
        self.lpips_weight = lpips_weight if "lpips" in kind else 0.0
        self.lpips_size = lpips_size
        self.lpips = load_lpips(lpips_net, device) if "lpips" in kind else None

    def lpips_distance(self, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """LPIPS ``[B]``; needs the model (``kind`` with lpips)."""
        if self.lpips is None:
            raise InputError("this loss was built without LPIPS")
        return self.lpips(_lpips_size(img, self.lpips_size), _lpips_size(target, self.lpips_size)).flatten()

    def forward(self, img: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{'total': [B], 'mse': [B], 'lpips': [B] (when used)}``."""
        parts: dict[str, torch.Tensor] = {"mse": (img - target).square().flatten(1).mean(1)}
        total = self.mse_weight * parts["mse"]
        if self.lpips is not None:
            parts["lpips"] = self.lpips_distance(img, target)
            total = total + self.lpips_weight * parts["lpips"]
        parts["total"] = total
        return parts


def _lpips_size(x: torch.Tensor, size: int) -> torch.Tensor:
    h = x.shape[-1]
    if h > size:
        return F.interpolate(x, size=(size, size), mode="area")
    if h < 64:
        return F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    return x


def noise_regularization(maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps ``[B, 1, H, W]`` and scales (halving down to 8 px) of the squared lag-1
    autocorrelations along x and y; returns ``[B]``."""
    total = maps[0].new_zeros(maps[0].shape[0])
    for n in maps:
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (n * torch.roll(n, 1, dims=2)).mean(dim=(1, 2, 3)).square()
            if min(n.shape[2:]) <= 8:
                break
            n = F.avg_pool2d(n, 2) * 2  # x2 keeps unit variance for white noise
    return total


@torch.no_grad()
def normalize_noise_(maps: list[torch.Tensor]) -> None:
    """Make every map ``[B, 1, H, W]`` zero-mean, unit-variance per sample, in place."""
    for n in maps:
        mean = n.mean(dim=(1, 2, 3), keepdim=True)
        std = n.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
        n.sub_(mean).div_(std)


@dataclasses.dataclass
class WStats:
    """Statistics of the generator's W distribution, for normalizing and regularizing latents.

    ``mean`` ``[C]`` (the generator's ``w_avg``), ``scale`` (RMS per-coordinate std, a float) and
    ``samples`` ``[N, C]`` (mapping outputs, for the distribution regularizer).
    """

    mean: torch.Tensor
    scale: float
    samples: torch.Tensor

    @classmethod
    @torch.no_grad()
    def from_generator(cls, G: Generator, num_samples: int = 4096, seed: int = 0) -> "WStats":
        gen = torch.Generator().manual_seed(seed)
        device = G.device
        z = torch.randn([num_samples, G.z_dim], generator=gen).to(device)
        c = None
        if G.c_dim > 0:
            labels = torch.randint(G.c_dim, [num_samples], generator=gen).to(device)
            c = F.one_hot(labels, G.c_dim).float()
        w = G.mapping(z, c)
        mean = G.mapping.w_avg.detach().clone()
        scale = float((w - w.mean(0)).square().mean().sqrt())
        return cls(mean, max(scale, 1e-6), w)

    def normalize(self, data: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, L, C, h, w]`` -> units of W's spread around its mean."""
        return (data - self.mean.view(1, 1, -1, 1, 1)) / self.scale

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.mean.view(1, 1, -1, 1, 1)


def grid_distribution_loss(data: torch.Tensor, stats: WStats, directions: torch.Tensor) -> torch.Tensor:
    """Sliced Wasserstein-2 distance between each sample's cells and W; returns ``[B]``.

    ``data``: latents ``[B, L, C, h, w]``; every cell of every layer is one sample of the grid's
    distribution (layers are compared separately: each layer's cells should look like W).
    ``directions``: ``[K, C]`` unit vectors (draw fresh ones every step for an unbiased estimate).
    Units: squared distances in W's spread (:attr:`WStats.scale`), so 0 when the cells are
    distributed as W and about ``|shift|^2`` when every cell is moved by ``shift`` spreads.
    """
    b, layers, c, h, w = data.shape
    n = h * w
    x = stats.normalize(data).permute(0, 1, 3, 4, 2).reshape(b * layers, n, c)
    proj = torch.sort(x @ directions.t(), dim=1).values  # [B*L, n, K]
    ref = (stats.samples.to(data) - stats.mean.to(data)) / stats.scale
    ref_proj = ref @ directions.t()  # [N, K]
    q = (torch.arange(n, device=data.device, dtype=data.dtype) + 0.5) / n
    ref_q = torch.quantile(ref_proj, q, dim=0)  # [n, K]: the W quantiles each sorted cell should sit at
    d = (proj - ref_q[None]).square().mean(dim=(1, 2))
    return d.view(b, layers).mean(dim=1) * c  # x C: a sum over directions spanning C dims


def random_directions(k: int, c: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[k, c]`` random unit vectors (drawn on the CPU for reproducibility)."""
    d = torch.randn([k, c], generator=generator)
    return (d / d.norm(dim=1, keepdim=True)).to(device)


def smoothness_loss(data: torch.Tensor, stats: WStats) -> torch.Tensor:
    """Mean squared difference of neighbouring cells, in W's spread; ``data [B, L, C, h, w]`` -> ``[B]``."""
    x = data / stats.scale
    total = data.new_zeros(data.shape[0])
    if x.shape[3] > 1:
        total = total + (x[..., 1:, :] - x[..., :-1, :]).square().flatten(1).mean(1)
    if x.shape[4] > 1:
        total = total + (x[..., :, 1:] - x[..., :, :-1]).square().flatten(1).mean(1)
    return total


def psnr(mse01: torch.Tensor) -> torch.Tensor:
    """PSNR in dB from the MSE of images in [0, 1]."""
    return 10 * torch.log10(1.0 / mse01.clamp_min(1e-12))

