"""RMSprop as PyMARL's learners use it (`torch.optim.RMSprop(lr, alpha, eps)`, no momentum, not centered),
written out so that, like `adam.Adam`, it avoids `torch.optim.Optimizer`'s 1.5 s `torch._dynamo` import.

square_avg <- alpha square_avg + (1 - alpha) g^2;  p <- p - lr g / (sqrt(square_avg) + eps)
(tests/test_replay.py checks it against torch.optim.RMSprop.)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class RMSprop:
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, alpha: float = 0.99, eps: float = 1e-5):
        self.params = list(params)
        if not self.params:
            raise ValueError("RMSprop got an empty parameter list")
        self.lr, self.alpha, self.eps = float(lr), float(alpha), float(eps)
        self.square_avg = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for p, avg in zip(self.params, self.square_avg, strict=True):
            if p.grad is None:
                continue
            avg.mul_(self.alpha).addcmul_(p.grad, p.grad, value=1 - self.alpha)
            p.addcdiv_(p.grad, avg.sqrt().add_(self.eps), value=-self.lr)

    def state_dict(self) -> dict:
        return {"square_avg": [a.clone() for a in self.square_avg]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["square_avg"]) != len(self.params):
            raise ValueError(f"optimizer state holds {len(state['square_avg'])} parameters, "
                             f"this model {len(self.params)}")
        for a, saved in zip(self.square_avg, state["square_avg"], strict=True):
            a.copy_(saved)
