"""2-D convolution combined with FIR up/downsampling, the way StyleGAN2 resamples.

Upsampling convolutions are a strided transposed convolution followed by the FIR low-pass;
downsampling ones filter first, then stride. Padding is ``(x0, x1, y0, y1)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .fir import _pad4, upfirdn2d


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | tuple[int, ...] = 0,
    groups: int = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Convolve ``x`` ``[N, I, H, W]`` with ``w`` ``[O, I/groups, kh, kw]``, upsampling or
    downsampling by an integer factor through the filter ``f``.

    Without upsampling this is a correlation (as ``F.conv2d``); with ``up > 1`` it is a
    transposed convolution with the weight not flipped, which is what StyleGAN2 checkpoints
    expect (NVIDIA's ``flip_weight=(up == 1)``).

    Output ``[N, O, H', W']`` with ``H' = H*up/down + py0 + py1 - kh + 1`` for ``up``/``down`` 1 or
    a power of two and the usual 4-tap filter.
    """
    if up < 1 or down < 1:
        raise ValueError("up and down must be >= 1")
    if (up > 1 or down > 1) and f is None:
        raise ValueError("resampling needs a filter f")
    out_ch, in_per_group, kh, kw = w.shape
    px0, px1, py0, py1 = _pad4(padding)
    fh, fw = (f.shape[0], f.shape[-1]) if f is not None else (1, 1)

    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    if kh == 1 and kw == 1 and (up > 1 or down > 1):
        # A 1x1 conv commutes with resampling: resample the (fewer or equal) channels once.
        x = upfirdn2d(x, f, up=up, down=down, padding=(px0, px1, py0, py1), gain=up * up, impl=impl)
        return F.conv2d(x, w, groups=groups)

    if down > 1:
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1), impl=impl)
        return F.conv2d(x, w, stride=down, groups=groups)

    if up > 1:
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        pad = (px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up))
        return upfirdn2d(x, f, padding=pad, gain=up * up, impl=impl)

    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return F.conv2d(x, w, padding=(py0, px0), groups=groups)
    x = upfirdn2d(x, None, padding=(px0, px1, py0, py1), impl="ref")
    return F.conv2d(x, w, groups=groups)
