"""Generalized advantage estimation (Schulman et al. 2016; CORA eq. 2), batched over everything but time."""

from __future__ import annotations

import torch

from algorithms.blocks.rollout import RolloutStorage


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets for a rollout of T steps; tensors are `[T, ...]`.

    `next_values[t]` is V of the state reached by step t: the next stored state, or, where the
    episode ended, the final state of that episode. `terminated[t]` zeroes that bootstrap (a true
    end); `episode_end[t]` (terminated or truncated) stops the recursion from crossing into the
    next episode. A truncated step therefore bootstraps from V(final state) but does not chain.
    """
    not_terminated = (~terminated).to(rewards.dtype)
    continues = (~episode_end).to(rewards.dtype)
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages, advantages + values


def rollout_gae(storage: RolloutStorage, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE for every learner of a collected rollout, `[T, (K,) B, L]`: each on its own reward and value."""
    n_learners = storage["rewards"].shape[-1]
    broadcast = lambda flag: flag.unsqueeze(-1).expand(*flag.shape, n_learners)  # noqa: E731
    return compute_gae(storage["rewards"], storage["values"], storage["next_values"],
                       broadcast(storage["terminated"]), broadcast(storage["episode_end"]), gamma, lam)


def standardize(advantages: torch.Tensor, n_seeds: int | None = None) -> torch.Tensor:
    """Advantages with zero mean and unit standard deviation over the whole batch (`normalize_advantages`); in a
    seed batch (`n_seeds`, advantages `[T, K, B, L]`) over each seed's own batch."""
    if n_seeds is None:
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    per_seed = advantages.movedim(-3, 0).reshape(n_seeds, -1)
    mean, std = per_seed.mean(1).view(-1, 1, 1), per_seed.std(1).view(-1, 1, 1)
    return (advantages - mean) / (std + 1e-8)
