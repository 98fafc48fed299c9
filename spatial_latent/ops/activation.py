"""Fused bias + activation + gain + clamp, as StyleGAN2 applies after every layer.

``bias_act(x, b, act='lrelu')`` computes ``clamp(act(x + b) * gain, -clamp, clamp)``. The
reference path is plain PyTorch; CUDA tensors may use a compiled kernel.
"""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType
from typing import Callable

import torch
import torch.nn.functional as F

from .cuda_build import ExtensionLoader, check_impl, select_kernel

# The one piece of module state: builds the kernel on the first CUDA call, never at import.
_loader = ExtensionLoader("spatial_latent_bias_act", ["bias_act.cpp", "bias_act.cu"])


@dataclasses.dataclass(frozen=True)
class Activation:
    """An activation with its default slope ``alpha`` and the gain that preserves variance."""

    fn: Callable[[torch.Tensor, float], torch.Tensor]
    alpha: float
    gain: float
    cuda_code: int  # index used by the CUDA kernel


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0, 1),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2), 2),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2), 3),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0, 4),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0, 5),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0, 6),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0, 7),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0, 8),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 9),
}


def resolve_activation(act: str, alpha: float | None, gain: float | None) -> tuple[Activation, float, float]:
    """Look up ``act`` and fill in its default ``alpha`` and ``gain``."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    return spec, float(spec.alpha if alpha is None else alpha), float(spec.gain if gain is None else gain)


def bias_act_reference(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Reference implementation. ``x``: any shape; ``b``: ``[x.shape[dim]]`` added along ``dim``."""
    spec, alpha, gain = resolve_activation(act, alpha, gain)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {tuple(b.shape)} does not match dim {dim} of x {tuple(x.shape)}")
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.fn(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


class _BiasActCuda(torch.autograd.Function):
    """The fused CUDA kernel with its gradient.

    First-order gradients use the same kernel in gradient mode: it recomputes ``s = x + b`` and
    returns ``dy * act'(s) * gain`` where the clamp was inactive (``|act(s)*gain| <= clamp``,
    as ``torch.clamp`` passes it); ``db`` sums that over every dimension but ``dim``.
    Higher-order gradients (``create_graph=True``) re-run :func:`bias_act_reference` under
    autograd instead, so they are exact but not fused.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        b: torch.Tensor | None,
        mod: ModuleType,
        dim: int,
        act: str,
        alpha: float,
        gain: float,
        clamp: float,
    ) -> torch.Tensor:
        xc = x.contiguous()
        y = mod.bias_act(xc, _kernel_bias(b, xc), _empty(xc), dim, ACTIVATIONS[act].cuda_code, alpha, gain, clamp, False)
        ctx.save_for_backward(x, b)  # the inputs themselves, so double backward can reach them
        ctx.mod, ctx.dim, ctx.act, ctx.alpha, ctx.gain, ctx.clamp = mod, dim, act, alpha, gain, clamp
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, dy: torch.Tensor):  # type: ignore[override]
        x, b = ctx.saved_tensors
        need_x, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx = db = None
        clamp = ctx.clamp if ctx.clamp >= 0 else None
        if torch.is_grad_enabled():
            # create_graph=True: differentiate the reference so that the result is differentiable.
            wanted = [t for t, need in ((x, need_x), (b, need_b)) if need]
            if wanted:
                y = bias_act_reference(x, b, dim=ctx.dim, act=ctx.act, alpha=ctx.alpha, gain=ctx.gain, clamp=clamp)
                grads = list(torch.autograd.grad(y, wanted, dy, create_graph=True, allow_unused=True))
                dx = grads.pop(0) if need_x else None
                db = grads.pop(0) if need_b else None
            return dx, db, None, None, None, None, None, None
        if need_x or need_b:
            xc = x.contiguous()
            ds = ctx.mod.bias_act(
                xc, _kernel_bias(b, xc), dy.to(xc.dtype).contiguous(), ctx.dim, ACTIVATIONS[ctx.act].cuda_code,
                ctx.alpha, ctx.gain, ctx.clamp, True,
            )
            dx = ds if need_x else None
            if need_b:
                db = ds.sum(dim=[d for d in range(ds.ndim) if d != ctx.dim]).to(b.dtype)
        return dx, db, None, None, None, None, None, None


def _empty(x: torch.Tensor) -> torch.Tensor:
    """An empty tensor standing for "no tensor" in the kernel's signature."""
    return x.new_empty([0])


def _kernel_bias(b: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """``b`` as the kernel wants it: contiguous, x's dtype (as the reference casts it), or empty."""
    if b is None:
        return _empty(x)
    return b.detach().to(x.dtype).contiguous()


def _bias_problem(x: torch.Tensor, b: torch.Tensor | None, dim: int) -> str | None:
    """Why the kernel cannot add the bias ``b`` (``[x.shape[dim]]``) along ``dim``, or ``None``."""
    if b is not None and not (0 <= dim < x.ndim and b.ndim == 1 and b.shape[0] == x.shape[dim] and b.device == x.device):
        return f"bias of shape {tuple(b.shape)} on {b.device} does not fit dim {dim} of x {tuple(x.shape)}"
    return None


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Dispatching entry point: the CUDA kernel for CUDA tensors when it builds, else the reference.

    ``x`` any shape, ``b`` ``[x.shape[dim]]`` -> a tensor shaped like ``x`` (arguments as in
    :func:`bias_act_reference`); ``impl`` is ``'auto'``, ``'ref'`` or
    ``'cuda'`` (``'cuda'`` raises if the kernel is unavailable). Differentiable in ``x`` and ``b``
    on either path.
    """
    check_impl("bias_act", impl)
    _, alpha_v, gain_v = resolve_activation(act, alpha, gain)  # validates act early
    mod = select_kernel("bias_act", _loader, x, impl, lambda: _bias_problem(x, b, dim))
    if mod is None:
        return bias_act_reference(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    clamp_v = float(clamp) if clamp is not None and clamp >= 0 else -1.0  # < 0: no clamp
    return _BiasActCuda.apply(x, b, mod, dim, act, alpha_v, gain_v, clamp_v)
