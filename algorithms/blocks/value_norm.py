"""Value normalization (MAPPO's "ValueNorm", Yu et al. 2022, sec. 4 and App. C).

The critic learns targets standardized by a running mean and variance (debiased exponential moving
averages); its outputs are de-normalized before they enter GAE. Written here because no maintained
library offers it as a standalone piece: it is 20 lines, and the buffers go into checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


class ValueNormalizer(nn.Module):
    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5, enabled: bool = True):
        super().__init__()
        self.beta, self.epsilon, self.enabled = beta, epsilon, enabled
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_mean_sq", torch.zeros(()))
        self.register_buffer("debiasing_term", torch.zeros(()))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        var = (self.running_mean_sq / debias - mean.pow(2)).clamp(min=1e-2)
        return mean, var

    @torch.no_grad()
    def update(self, targets: torch.Tensor) -> None:
        if not self.enabled:
            return
        self.running_mean.mul_(self.beta).add_(targets.mean() * (1 - self.beta))
        self.running_mean_sq.mul_(self.beta).add_(targets.pow(2).mean() * (1 - self.beta))
        self.debiasing_term.mul_(self.beta).add_(1 - self.beta)

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return values
        mean, var = self.mean_var()
        return (values - mean) / var.sqrt()

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return values
        mean, var = self.mean_var()
        return values * var.sqrt() + mean
