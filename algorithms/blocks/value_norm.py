"""Value normalization (MAPPO's "ValueNorm", Yu et al. 2022, sec. 4 and App. C).

The critic learns targets standardized by a running mean and variance (debiased exponential moving
averages); its outputs are de-normalized before they enter GAE. Written here because no maintained
library offers it as a standalone piece: it is 20 lines, and the buffers go into checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


class ValueNormalizer(nn.Module):
    """One set of statistics, or with `n_seeds` K one per seed of a seed batch (buffers `[K]`; values and targets
    then carry the seed dimension third from last, `[..., K, batch, learners]`)."""

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5, enabled: bool = True,
                 n_seeds: int | None = None):
        super().__init__()
        self.beta, self.epsilon, self.enabled, self.n_seeds = beta, epsilon, enabled, n_seeds
        shape = () if n_seeds is None else (n_seeds,)
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_mean_sq", torch.zeros(shape))
        self.register_buffer("debiasing_term", torch.zeros(shape))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        var = (self.running_mean_sq / debias - mean.pow(2)).clamp(min=1e-2)
        if self.n_seeds is not None:  # broadcast against [..., K, batch, learners]
            return mean.view(-1, 1, 1), var.view(-1, 1, 1)
        return mean, var

    @torch.no_grad()
    def update(self, targets: torch.Tensor) -> None:
        if not self.enabled:
            return
        if self.n_seeds is None:
            mean, mean_sq = targets.mean(), targets.pow(2).mean()
        else:  # each seed's own targets
            per_seed = targets.movedim(-3, 0).reshape(self.n_seeds, -1)
            mean, mean_sq = per_seed.mean(1), per_seed.pow(2).mean(1)
        self.running_mean.mul_(self.beta).add_(mean * (1 - self.beta))
        self.running_mean_sq.mul_(self.beta).add_(mean_sq * (1 - self.beta))
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
