"""A plain Adam optimizer (Kingma & Ba) over a list of tensors, with a state dict for resuming.

``torch.optim.Adam`` would do, but constructing any ``torch.optim`` optimizer imports
``torch._dynamo``, several seconds on a small CPU machine for every command-line run. This is the
textbook algorithm (no weight decay, no amsgrad), deterministic and checkpointable.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


class Adam:
    """Adam on ``params`` (tensors with ``requires_grad``); ``lr`` may be changed between steps."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.step_count = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        b1, b2 = self.betas
        c1 = 1 - b1**self.step_count
        c2 = 1 - b2**self.step_count
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / c1)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_count, "lr": self.lr, "m": [t.clone() for t in self.m], "v": [t.clone() for t in self.v]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["m"]) != len(self.params) or any(a.shape != p.shape for a, p in zip(state["m"], self.params)):
            raise ValueError("optimizer state does not match the parameters")
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])
        self.m = [t.to(p) for t, p in zip(state["m"], self.params)]
        self.v = [t.to(p) for t, p in zip(state["v"], self.params)]
