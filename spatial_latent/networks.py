"""StyleGAN2 mapping and synthesis networks in plain PyTorch.

The whole generator lives in this one file so it can be read top to bottom. Parameter and
buffer names follow NVIDIA's stylegan2-ada-pytorch ``G_ema.state_dict()`` exactly (without the
constant ``resample_filter`` buffers, which are rebuilt here), so that every foreign checkpoint
is converted to one canonical layout (see :mod:`spatial_latent.checkpoints.readers`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

ARCHITECTURES = ("skip", "resnet", "orig")


@dataclasses.dataclass
class GeneratorConfig:
    """Every hyper-parameter of a StyleGAN2 generator, as inferred from a checkpoint.

    ``channels`` maps each resolution (4, 8, ..., img_resolution) to its feature width; it is
    read from tensor shapes, never computed from a channel multiplier, because fixtures and
    some real checkpoints do not follow the usual ``min(channel_base // res, channel_max)``.
    """

    z_dim: int
    w_dim: int
    img_resolution: int
    channels: dict[int, int]
    c_dim: int = 0
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_hidden: int | None = None  # width of the hidden fc layers (default: w_dim)
    embed_features: int | None = None  # label embedding width (default: w_dim), c_dim > 0 only
    mapping_lr_multiplier: float = 0.01
    architecture: str = "skip"
    conv_clamp: float | None = None
    num_fp16_res: int = 0
    source_format: str = "native"  # informational: which format it was read from

    def __post_init__(self) -> None:
        self.channels = {int(k): int(v) for k, v in self.channels.items()}
        if self.mapping_hidden is None:
            self.mapping_hidden = self.w_dim
        if self.embed_features is None:
            self.embed_features = self.w_dim if self.c_dim > 0 else 0
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}, expected one of {ARCHITECTURES}")
        res = self.img_resolution
        if res < 4 or res & (res - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {res}")
        missing = [r for r in self.block_resolutions if r not in self.channels]
        if missing:
            raise ValueError(f"channels missing for resolutions {missing}")

    @property
    def block_resolutions(self) -> list[int]:
        """[4, 8, ..., img_resolution]."""
        return [2**i for i in range(2, self.img_resolution.bit_length())]

    @property
    def num_ws(self) -> int:
        """Number of per-layer latents (rows of W+): two per block after 4x4, plus conv and toRGB."""
        return 2 * len(self.block_resolutions)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# ----------------------------------------------------------------------------------------------
# Layers

import hashlib  # noqa: E402
import math  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from .errors import InputError  # noqa: E402
from .modes import NOISE_MODES  # noqa: E402  (the one list, torch-free so the commands' --help stays light)
from .ops import bias_act, conv2d_resample, make_filter, modulated_conv2d, upsample2d  # noqa: E402


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit mean square along ``dim`` (StyleGAN's pixel norm of z)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnected(nn.Module):
    """Equalized-learning-rate linear layer.

    Stored weights are scaled at run time by ``lr_multiplier / sqrt(in_features)`` and biases by
    ``lr_multiplier``, which is how StyleGAN2 slows down the mapping network's learning.
    Input ``[N, in]`` -> ``[N, out]``; a per-location input ``[N, in, H, W]`` -> ``[N, out, H, W]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None
        if self.bias is not None:
            b = self.bias.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if x.ndim == 4:  # per-location latents: apply the same layer at every cell
            y = torch.einsum("oi,nihw->nohw", w, x)
            return bias_act(y, b, dim=1, act=self.activation)
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


class MappingNetwork(nn.Module):
    """z (and label c) -> w, broadcast to ``num_ws`` rows, with truncation toward ``w_avg``."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        cfg = config
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.num_layers = cfg.mapping_layers
        if cfg.c_dim > 0:
            self.embed = FullyConnected(cfg.c_dim, cfg.embed_features)
        in_features = cfg.z_dim + (cfg.embed_features if cfg.c_dim > 0 else 0)
        widths = [in_features] + [cfg.mapping_hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for j in range(cfg.mapping_layers):
            fc = FullyConnected(widths[j], widths[j + 1], activation="lrelu", lr_multiplier=cfg.mapping_lr_multiplier)
            setattr(self, f"fc{j}", fc)
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        num_ws: int | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """``z``: ``[N, z_dim]``, ``c``: ``[N, c_dim]`` -> ``[N, num_ws, w_dim]`` (``[N, w_dim]`` if num_ws is None)."""
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for j in range(self.num_layers):
            x = getattr(self, f"fc{j}")(x)
        if num_ws is not None:
            x = x.unsqueeze(1).repeat(1, num_ws, 1)
        if truncation_psi != 1:
            avg = self.w_avg.to(x.dtype)
            if num_ws is None or truncation_cutoff is None:
                x = avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling 2x) + noise + bias + leaky ReLU.

    ``forward(x [N, I, H, W], w [N, w_dim]) -> [N, O, H*up, W*up]`` (same padding), or smaller by
    ``kernel_size - 1`` with ``padding=0``. Per-location styles are the render engine's job
    (:mod:`spatial_latent.render.engine`); it reads this layer's weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.kernel_size = resolution, up, kernel_size
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = math.sqrt(2)
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("resample_filter", make_filter(), persistent=False)

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        """Per-input-channel styles: ``[N, w_dim] -> [N, I]`` or ``[N, w_dim, H, W] -> [N, I, H, W]``."""
        return self.affine(w)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        gain: float = 1.0,
    ) -> torch.Tensor:
        noise = None
        if noise_mode == "random":
            size = x.shape[2] * self.up
            noise = torch.randn([x.shape[0], 1, size, size], device=x.device, dtype=x.dtype)
        elif noise_mode == "const":
            noise = self.noise_const
        return self.forward_styles(x, self.styles(w), noise=noise, gain=gain)

    def forward_styles(
        self,
        x: torch.Tensor,
        styles: torch.Tensor,
        noise: torch.Tensor | None = None,
        gain: float = 1.0,
        padding: int | None = None,
    ) -> torch.Tensor:
        """The layer given its styles ``[N, I]`` and unit-variance ``noise`` broadcastable to the
        output (scaled here by ``noise_strength``). ``padding=0`` makes the convolution valid."""
        if noise is not None:
            noise = noise * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding if padding is None else padding,
            resample_filter=self.resample_filter,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act="lrelu", gain=self.act_gain * gain, clamp=clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels (no demodulation) + bias: ``[N, I, H, W] -> [N, 3, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        """``[N, w_dim] -> [N, I]`` or ``[N, w_dim, H, W] -> [N, I, H, W]`` (includes the weight gain)."""
        return self.affine(w) * self.weight_gain

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.forward_styles(x, self.styles(w))

    def forward_styles(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SkipConv(nn.Module):
    """The resnet block's shortcut: 2x upsample + 1x1 conv without bias, ``[N, I, H, W] -> [N, O, 2H, 2W]``."""

    def __init__(self, in_channels: int, out_channels: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.register_buffer("resample_filter", make_filter(), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0, padding: int = 0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, f=self.resample_filter, up=2, padding=padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, None, gain=gain, clamp=clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | up-conv) + conv, plus toRGB / skip."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str,
        conv_clamp: float | None,
        use_fp16: bool,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.architecture, self.is_last = resolution, architecture, is_last
        self.use_fp16 = use_fp16
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 0
        if is_last or architecture == "skip":
            self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb = 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = SkipConv(in_channels, out_channels, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", make_filter(), persistent=False)

    def compute_dtype(self, device: torch.device, force_fp32: bool) -> torch.dtype:
        """fp16 for the top blocks on CUDA (as the original does), fp32 everywhere else."""
        return torch.float16 if self.use_fp16 and device.type == "cuda" and not force_fp32 else torch.float32

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "const",
        force_fp32: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``ws``: ``[N, num_conv + num_torgb, w_dim]``; ``x``: ``[N, I, R/2, R/2]`` (None for 4x4).

        Returns features ``[N, O, R, R]`` and the image so far ``[N, 3, R, R]`` (or None).
        """
        dtype = self.compute_dtype(ws.device, force_fp32)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, ws[:, 0], noise_mode=noise_mode)
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, ws[:, 0], noise_mode=noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode=noise_mode, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = x.to(dtype)
            x = self.conv0(x, ws[:, 0], noise_mode=noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode=noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, ws[:, self.num_conv]).to(torch.float32)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ latents ``[N, num_ws, w_dim]`` -> image ``[N, img_channels, R, R]``."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        cfg = config
        self.w_dim, self.img_resolution, self.img_channels = cfg.w_dim, cfg.img_resolution, cfg.img_channels
        self.block_resolutions = cfg.block_resolutions
        log2 = int(math.log2(cfg.img_resolution))
        fp16_resolution = max(2 ** (log2 + 1 - cfg.num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                in_channels=cfg.channels[res // 2] if res > 4 else 0,
                out_channels=cfg.channels[res],
                w_dim=cfg.w_dim,
                resolution=res,
                img_channels=cfg.img_channels,
                is_last=res == cfg.img_resolution,
                architecture=cfg.architecture,
                conv_clamp=cfg.conv_clamp,
                use_fp16=res >= fp16_resolution,
            )
            self.num_ws += block.num_conv + (block.num_torgb if block.is_last else 0)
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """The layers that take noise, in the order they run (the 4x4 conv first): one per ws row
        but the last, ``num_ws - 1`` in all. Index ``i`` is noise map ``i`` of a spatial render."""
        layers = []
        for block in self.blocks():
            if block.in_channels != 0:
                layers.append(block.conv0)
            layers.append(block.conv1)
        return layers

    def block_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Split ``[N, num_ws, ...]`` into each block's slice; a toRGB shares its row with the next conv."""
        out, idx = [], 0
        for block in self.blocks():
            out.append(ws.narrow(1, idx, block.num_conv + block.num_torgb))
            idx += block.num_conv
        return out

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = False) -> torch.Tensor:
        check_ws(ws, self.num_ws, self.w_dim)
        check_noise_mode(noise_mode)
        x = img = None
        for block, bws in zip(self.blocks(), self.block_ws(ws.to(torch.float32))):
            x, img = block(x, img, bws, noise_mode=noise_mode, force_fp32=force_fp32)
        return img


def check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise InputError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")


def check_ws(ws: torch.Tensor, num_ws: int, w_dim: int) -> None:
    """Raise :class:`InputError` unless ``ws`` is a finite ``[N, num_ws, w_dim]`` tensor."""
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or ws.shape[1:] != (num_ws, w_dim):
        shape = tuple(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
        raise InputError(f"ws must have shape [N, {num_ws}, {w_dim}], got {shape}")
    if not torch.isfinite(ws).all():
        raise InputError("ws contains NaN or inf")


class Generator(nn.Module):
    """StyleGAN2 generator: ``forward(z [N, z_dim], c [N, c_dim]) -> img [N, C, R, R]``.

    ``G.mapping(z, c)`` gives W+ latents ``[N, num_ws, w_dim]`` and ``G.synthesis(ws)`` renders
    them; W+ input is the first-class entry point for encoders and editing.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        # How the training photos were aligned (a faces.align.AlignTemplate), when the checkpoint says.
        self.align_template: Any = None
        self.mapping = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config)
        if self.synthesis.num_ws != config.num_ws:
            raise AssertionError("num_ws bookkeeping mismatch")

    z_dim = property(lambda self: self.config.z_dim)
    c_dim = property(lambda self: self.config.c_dim)
    w_dim = property(lambda self: self.config.w_dim)
    num_ws = property(lambda self: self.config.num_ws)
    img_resolution = property(lambda self: self.config.img_resolution)
    img_channels = property(lambda self: self.config.img_channels)

    @property
    def device(self) -> torch.device:
        """The device the generator's weights live on."""
        return self.mapping.w_avg.device

    def map(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """Validated mapping: ``z [N, z_dim]``, ``c [N, c_dim]`` -> ws ``[N, num_ws, w_dim]``."""
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InputError(f"z must have shape [N, {self.z_dim}], got {tuple(getattr(z, 'shape', ()))}")
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape != (z.shape[0], self.c_dim):
                raise InputError(f"this generator is conditional: c must have shape [{z.shape[0]}, {self.c_dim}]")
        elif c is not None and c.numel() > 0:
            raise InputError("this generator is not conditional; do not pass c")
        if not torch.isfinite(z).all():
            raise InputError("z contains NaN or inf")
        return self.mapping(z, c, num_ws=self.num_ws, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        force_fp32: bool = False,
    ) -> torch.Tensor:
        ws = self.map(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32)

    @torch.no_grad()
    def compute_w_avg(self, num_samples: int = 10000, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
        """Mean of the mapping output over seeded random z (and random one-hot labels); ``[w_dim]``."""
        gen = torch.Generator().manual_seed(seed)
        device = self.device
        total = torch.zeros([self.w_dim], dtype=torch.float64)
        done = 0
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            z = torch.randn([n, self.z_dim], generator=gen)
            c = None
            if self.c_dim > 0:
                labels = torch.randint(self.c_dim, [n], generator=gen)
                c = torch.nn.functional.one_hot(labels, self.c_dim).float()
                c = c.to(device)
            w = self.mapping(z.to(device), c)
            total += w.double().sum(dim=0).cpu()
            done += n
        return (total / num_samples).to(torch.float32)

    def fingerprint(self) -> str:
        """A short sha256 of the config and every tensor: identifies the weights a latent belongs to."""
        cfg = self.config.to_dict()
        cfg.pop("source_format")  # the same weights read from any format share one fingerprint
        h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]
