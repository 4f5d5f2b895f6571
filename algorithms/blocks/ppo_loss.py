"""PPO's clipped surrogate and value losses, shared by every on-policy method."""

from __future__ import annotations

import torch


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  clip_eps: float) -> torch.Tensor:
    """-E[min(r A, clip(r, 1-eps, 1+eps) A)] with r = pi/pi_old (Schulman et al. 2017, eq. 7)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -torch.minimum(unclipped, clipped).mean()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_eps: float | None = None) -> torch.Tensor:
    """Squared error to the targets; with `clip_eps`, MAPPO's clipped variant (Yu et al. 2022)."""
    error = (values - returns).pow(2)
    if clip_eps is None:
        return 0.5 * error.mean()
    clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
    return 0.5 * torch.maximum(error, (clipped - returns).pow(2)).mean()
