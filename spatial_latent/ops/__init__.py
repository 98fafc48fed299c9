"""Low-level ops: reference PyTorch implementations, with CUDA kernels used for CUDA tensors."""

from .bias_act import bias_act, bias_act_reference
from .conv2d_resample import conv2d_resample
from .modconv import demodulation_map, modulated_conv2d
from .upfirdn2d import downsample2d, make_filter, upfirdn2d, upfirdn2d_reference, upsample2d

__all__ = [
    "bias_act",
    "bias_act_reference",
    "conv2d_resample",
    "demodulation_map",
    "downsample2d",
    "make_filter",
    "modulated_conv2d",
    "upfirdn2d",
    "upfirdn2d_reference",
    "upsample2d",
]
