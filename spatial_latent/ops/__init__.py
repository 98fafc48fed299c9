"""Low-level ops: reference PyTorch implementations, with CUDA kernels used for CUDA tensors.

Modules: :mod:`.fir` (``upfirdn2d``, ``upsample2d``, ``downsample2d``, ``make_filter``),
:mod:`.activation` (``bias_act``), :mod:`.conv` (``conv2d_resample``), :mod:`.modconv`
(``modulated_conv2d``), :mod:`.cuda_build` (building the kernels and choosing them per call).
Module names differ from the functions exported here, so ``spatial_latent.ops.fir`` is always
the module and ``spatial_latent.ops.upfirdn2d`` always the function.
"""

from .activation import bias_act, bias_act_reference
from .conv import conv2d_resample
from .modconv import modulated_conv2d
from .fir import downsample2d, make_filter, upfirdn2d, upfirdn2d_reference, upsample2d

__all__ = [
    "bias_act",
    "bias_act_reference",
    "conv2d_resample",
    "downsample2d",
    "make_filter",
    "modulated_conv2d",
    "upfirdn2d",
    "upfirdn2d_reference",
    "upsample2d",
]
