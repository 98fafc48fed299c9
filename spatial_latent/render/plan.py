"""The window plan: which pixels every synthesis block reads and writes, and the padding modes.

With zero padding (:attr:`PaddingMode.ZERO`) every block computes the whole canvas. Padding-free
(:attr:`PaddingMode.NONE`) convolutions are valid, so each block's input window must carry the
margin its outputs need: :func:`plan_blocks` walks the network backward from the requested output
window with the span arithmetic of the valid ops below (derived from their index formulas).
All windows are in global pixels at the resolution of the tensor they describe.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import torch

from ..errors import InputError
from ..latents.window import Span, Window
from ..networks import Generator


class PaddingMode(str, enum.Enum):
    """How convolutions treat the canvas border.

    ``ZERO``: what the pretrained network does (same-size convolutions, zero padding at the canvas
    border, which the network reads as position); renders the whole canvas at once.
    ``NONE``: padding-free (valid convolutions): an output pixel depends only on the latents in its
    receptive field, so any sub-window equals the same crop of the full render and tiles stitch.
    A ``str`` subclass, so ``PaddingMode.NONE == "none"`` and it serialises as its value.
    """

    ZERO = "zero"
    NONE = "none"

    @classmethod
    def of(cls, value: "PaddingMode | str") -> "PaddingMode":
        """The mode named by ``value`` (a member or its string); :class:`InputError` otherwise."""
        try:
            return cls(value)
        except ValueError:
            names = tuple(m.value for m in cls)
            raise InputError(f"padding must be one of {names}, got {value!r}") from None

    @property
    def padding_free(self) -> bool:
        """Valid convolutions: every layer's input window carries the margin its outputs need."""
        return self is PaddingMode.NONE

    @property
    def tileable(self) -> bool:
        """Sub-windows render on their own and equal crops of the full render (tiles stitch)."""
        return self.padding_free


# Span arithmetic of the valid (padding-free) ops, derived from their index formulas.
def valid_conv_out(s: Span) -> Span:
    """Output span of a valid 3x3 convolution of the input span ``s``."""
    return s[0] + 1, s[1] - 1


def valid_upconv_out(s: Span) -> Span:
    """Output span (at 2x) of the upsampling 3x3 convolution of ``s``."""
    # Transposed 3x3 stride 2, then the 4-tap blur. The transposed conv's outermost samples lack
    # the neighbour outside the window, so one more pixel per side is invalid than a plain blur.
    return 2 * s[0] + 2, 2 * s[1] - 2


def valid_upfir_out(s: Span) -> Span:
    """Output span (at 2x) of zero-insertion then the 4-tap filter (image and skip upsampling)."""
    return 2 * s[0] + 2, 2 * s[1] - 1


def upconv_in(s: Span) -> Span:
    """Input span (at 1/2) an upsampling convolution needs for the output span ``s``."""
    return math.floor((s[0] - 2) / 2), math.ceil((s[1] + 2) / 2)


def upfir_in(s: Span) -> Span:
    """Input span (at 1/2) an FIR upsampling needs for the output span ``s``."""
    return math.floor((s[0] - 2) / 2), math.ceil((s[1] + 1) / 2)


def double(s: Span) -> Span:
    """A same-size 2x upsampling maps a span to twice its coordinates."""
    return 2 * s[0], 2 * s[1]


VALID_UPFIR_PADDING = (-2, -1, -2, -1)  # cancels the same-size padding upsample2d/skip add


def crop(t: torch.Tensor, have: Window, want: Window) -> torch.Tensor:
    """Slice ``t [..., H, W]`` (covering ``have``) down to ``[..., *want.size]``."""
    if not have.contains(want):
        raise AssertionError(f"window {want} is not inside {have}")
    if have == want:
        return t
    return t[..., want.y0 - have.y0 : want.y1 - have.y0, want.x0 - have.x0 : want.x1 - have.x0]


@dataclasses.dataclass
class BlockPlan:
    """Windows one synthesis block reads and writes (global pixels at the block's resolutions)."""

    x_in: Window | None  # features read, at res/2 (the const window for the 4x4 block)
    mid: Window | None  # conv0 output kept, at res
    x_out: Window  # features kept after conv1, at res
    img: Window | None  # image kept after this block's toRGB, at res


@dataclasses.dataclass
class LatentPatch:
    """Latents for a group of samples rendered together.

    ``latents`` ``[B, num_ws, C, h, w]`` has its cell ``(0, 0)`` at global cell ``origin``; the
    group's output window is the render window shifted by ``shift`` output pixels (a multiple of
    R/4, so that every layer shifts by whole pixels). Tiles at different places of one canvas
    are different patches of one batch.
    """

    latents: torch.Tensor
    origin: tuple[int, int] = (0, 0)
    shift: tuple[int, int] = (0, 0)


def plan_blocks(G: Generator, out: Window) -> list[BlockPlan]:
    """Padding-free plan: the window every block must compute so that the image covers ``out``
    (output pixels). A backward pass over the network; one entry per block, 4x4 first."""
    blocks = G.synthesis.blocks()
    plans: list[BlockPlan] = []
    img_need: Window | None = out
    x_next: Window | None = None
    resnet = G.config.architecture == "resnet"
    for block in reversed(blocks):
        x_out = x_next
        if block.num_torgb:
            x_out = img_need.hull(x_out)
        mid = x_out.grow(1)
        if block.in_channels == 0:
            x_in = mid.grow(1)
        else:
            x_in = mid.map(upconv_in)
            if resnet:
                x_in = x_in.hull(x_out.map(upfir_in))
        plans.append(BlockPlan(x_in=x_in, mid=mid, x_out=x_out, img=img_need if block.num_torgb else None))
        x_next = x_in
        img_need = img_need.map(upfir_in) if (block.num_torgb and G.config.architecture == "skip") else None
    return plans[::-1]


def same_size_plan(G: Generator, size: tuple[int, int]) -> list[BlockPlan]:
    """Zero-padding plan for a canvas of ``size`` output pixels: every block computes its whole
    canvas (block 4x4 reads the constant tiled over its canvas)."""
    plans = []
    R = G.img_resolution
    for block in G.synthesis.blocks():
        r = block.resolution
        full = Window(0, 0, size[1] * r // R, size[0] * r // R)
        half = Window(0, 0, full.x1 // 2, full.y1 // 2) if r > 4 else full
        plans.append(BlockPlan(x_in=half, mid=full, x_out=full, img=full if block.num_torgb else None))
    return plans


def receptive_margin(G: Generator) -> int:
    """Input margin, in 4x4-level pixels, that a padding-free render adds around its window."""
    p = plan_blocks(G, Window(0, 0, 1, 1))[0]
    return max(-p.x_in.y0, p.x_in.y1 - 1)


def cells_needed(G: Generator, window: Window, density: int) -> Window:
    """Global cell range (as a Window in cell units) that a padding-free render of ``window``
    samples from: the 4x4 input window mapped to cells, plus bilinear neighbours."""
    p = plan_blocks(G, window)[0].x_in
    return Window(
        math.floor(p.x0 * density / 4) - 1,
        math.floor(p.y0 * density / 4) - 1,
        math.ceil(p.x1 * density / 4) + 1,
        math.ceil(p.y1 * density / 4) + 1,
    )
