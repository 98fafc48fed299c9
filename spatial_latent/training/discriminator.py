"""The StyleGAN2 residual discriminator, for training and fine-tuning on random crops.

Layout (as in StyleGAN2 config-e/f, widths read from a ``channels`` dict like the generator's):
``fromRGB`` (1x1) at the input resolution, then per block ``conv3x3 -> blur + conv3x3 stride 2``
with a ``blur + 1x1 stride 2`` skip, summed with gain ``1/sqrt(2)``; at 4x4 the minibatch
standard-deviation feature, a 3x3 conv, a fully connected layer and the score. Every weight uses
the equalized learning rate (stored N(0, 1), scaled at run time by ``1/sqrt(fan_in)``).

The input resolution is the training crop size, which need not equal the generator's
``img_resolution``: a padding-free generator renders crops of any size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with StyleGAN's gain sqrt(2), which keeps activations at unit variance."""
    return F.leaky_relu(x, 0.2) * SQRT2


class Blur(nn.Module):
    """Depthwise [1, 3, 3, 1] low-pass filter (normalized), the anti-aliasing before a stride-2 op.

    ``pad``: zero padding on each side; the output has ``H + 2 pad - 3`` rows.
    """

    def __init__(self, channels: int, pad: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = torch.outer(k, k)
        self.register_buffer("kernel", (k / k.sum()).expand(channels, 1, 4, 4).clone(), persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, [self.pad] * 4), self.kernel.to(x.dtype), groups=x.shape[1])


class EqualConv(nn.Module):
    """Conv with equalized learning rate; ``down`` = 2 applies blur then a stride-2 convolution."""

    def __init__(self, cin: int, cout: int, kernel: int, down: int = 1, bias: bool = True, activate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.gain = 1 / math.sqrt(cin * kernel * kernel)
        self.down, self.activate, self.kernel = down, activate, kernel
        # Blur padding chosen so a k x k stride-2 conv after it halves the size exactly.
        self.blur = Blur(cin, pad=(4 - 2 + kernel - 1) // 2) if down == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight * self.gain).to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        if self.blur is not None:
            x = F.conv2d(self.blur(x), w, b, stride=2)
        else:
            x = F.conv2d(x, w, b, padding=self.kernel // 2)
        return lrelu(x) if self.activate else x


class DiscriminatorBlock(nn.Module):
    """``[B, cin, R, R] -> [B, cout, R/2, R/2]`` (residual)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = EqualConv(cin, cin, 3)
        self.conv1 = EqualConv(cin, cout, 3, down=2)
        self.skip = EqualConv(cin, cout, 1, down=2, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) / SQRT2


class Discriminator(nn.Module):
    """``D(img [B, 3, R, R]) -> logits [B]``; ``channels`` maps each resolution R, R/2, ..., 4 to
    its width. ``mbstd_group`` samples share one standard-deviation feature (StyleGAN2: 4)."""

    def __init__(self, resolution: int, channels: dict[int, int], img_channels: int = 3, mbstd_group: int = 4) -> None:
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"discriminator resolution must be a power of two >= 8, got {resolution}")
        self.resolution = resolution
        self.channels = {int(k): int(v) for k, v in channels.items()}
        self.mbstd_group = mbstd_group
        self.from_rgb = EqualConv(img_channels, self.channels[resolution], 1)
        blocks = []
        res = resolution
        while res > 4:
            blocks.append(DiscriminatorBlock(self.channels[res], self.channels[res // 2]))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        c4 = self.channels[4]
        self.conv = EqualConv(c4 + 1, c4, 3)
        self.fc_weight = nn.Parameter(torch.randn(c4, c4 * 16))
        self.fc_bias = nn.Parameter(torch.zeros(c4))
        self.out_weight = nn.Parameter(torch.randn(1, c4))
        self.out_bias = nn.Parameter(torch.zeros(1))

    def minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        """Append the std over groups of samples, averaged over features and pixels: ``[B, C+1, 4, 4]``."""
        b, c, h, w = x.shape
        g = min(self.mbstd_group, b)
        while b % g:
            g -= 1
        y = x.reshape(g, b // g, c, h, w)
        y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # [B/g, C, H, W]
        y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"discriminator expects {self.resolution}x{self.resolution} images, got {tuple(img.shape[-2:])}")
        x = self.from_rgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.conv(self.minibatch_std(x))
        x = lrelu(F.linear(x.flatten(1), self.fc_weight / math.sqrt(self.fc_weight.shape[1]), self.fc_bias))
        return F.linear(x, self.out_weight / math.sqrt(self.out_weight.shape[1]), self.out_bias)[:, 0]
