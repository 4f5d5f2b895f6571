"""Targets and losses of Q-learning over padded episode batches.

- masked max / argmax: only over available actions (an all-unavailable row, a padding step, counts every
  action so nothing becomes -inf or NaN);
- greedy next-step values, optionally double Q (van Hasselt et al. 2016: the online network picks the action,
  the target network values it; LAN eq. 3 does exactly this with the online local advantages);
- TD(lambda) targets over an episode (PyMARL's `build_td_lambda_targets`); lambda = 0 is the one-step target
  r + gamma (1 - terminated) V(s');
- the masked mean squared TD error, and hard / soft target-network updates.

Batches are batch-first, as sampled: `[S, L, ...]` with a `filled [S, L]` mask of real transitions.
"""

from __future__ import annotations

import torch
from torch import nn


def with_fallback(avail: torch.Tensor | None, q: torch.Tensor) -> torch.Tensor:
    """`avail` as a bool mask the shape of `q`, every action allowed where none is (padding) or avail is None."""
    if avail is None:
        return torch.ones_like(q, dtype=torch.bool)
    return avail | ~avail.any(-1, keepdim=True)


def masked_argmax(q: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    if avail is None:
        return q.argmax(-1)
    return q.masked_fill(~with_fallback(avail, q), float("-inf")).argmax(-1)


def masked_max(q: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    if avail is None:
        return q.max(-1).values
    return q.masked_fill(~with_fallback(avail, q), float("-inf")).max(-1).values


def gather_actions(q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """`q [..., A]` at `actions [...]`."""
    return q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def greedy_next(target_q: torch.Tensor, online_q: torch.Tensor, avail: torch.Tensor | None,
                double_q: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The target network's value of the greedy action, and that action.

    Double Q: the greedy action is the online network's (`online_q`, detached by the caller), valued by the
    target network; otherwise the target network's own max."""
    actions = masked_argmax(online_q if double_q else target_q, avail)
    return gather_actions(target_q, actions), actions


def lambda_returns(rewards: torch.Tensor, terminated: torch.Tensor, filled: torch.Tensor,
                   next_values: torch.Tensor, gamma: float, td_lambda: float) -> torch.Tensor:
    """TD(lambda) targets of every transition `t`, `[S, L, *extra]`.

    `rewards`, `next_values` (the target's value of the state after transition t): `[S, L, *extra]`;
    `terminated`, `filled`: `[S, L]`. G_t = r_t + gamma (1 - d_t) [(1 - lambda) V_{t+1} + lambda G_{t+1}],
    where the last transition of an episode bootstraps from V alone (G_{t+1} := V_{t+1}).
    lambda = 0: the one-step target."""
    extra = (1,) * (next_values.dim() - 2)
    continues = (~terminated).to(next_values.dtype).view(*terminated.shape, *extra)
    if td_lambda == 0.0:
        return rewards + gamma * continues * next_values
    has_next = torch.zeros_like(filled)
    has_next[:, :-1] = filled[:, 1:]
    has_next = has_next.view(*filled.shape, *extra)
    returns = torch.zeros_like(next_values)
    following = next_values[:, -1]
    for t in reversed(range(rewards.shape[1])):
        ahead = torch.where(has_next[:, t], td_lambda * following + (1 - td_lambda) * next_values[:, t],
                            next_values[:, t])
        returns[:, t] = rewards[:, t] + gamma * continues[:, t] * ahead
        following = returns[:, t]
    return returns


def masked_mse(error: torch.Tensor, filled: torch.Tensor, n_seeds: int | None = None) -> torch.Tensor:
    """Mean of error^2 over real transitions (`filled [S, L]`, broadcast over any trailing dims of `error`).
    With `n_seeds` K (a seed batch's `[K * S, L, ...]`, seed-major): each seed's own mean, `[K]`, every sum along
    that seed's contiguous row."""
    mask = filled.to(error.dtype).view(*filled.shape, *(1,) * (error.dim() - 2)).expand_as(error)
    if n_seeds is None:
        return (error.pow(2) * mask).sum() / mask.sum().clamp(min=1.0)
    return ((error.pow(2) * mask).reshape(n_seeds, -1).sum(1)
            / mask.reshape(n_seeds, -1).sum(1).clamp(min=1.0))


def seed_masked_mean(x: torch.Tensor, filled: torch.Tensor, n_seeds: int) -> torch.Tensor:
    """Each seed's mean of `x [K * S, L]` over its real transitions, `[K]` (a statistic, e.g. LAN's mean V)."""
    mask = filled.to(x.dtype)
    return (x * mask).reshape(n_seeds, -1).sum(1) / mask.reshape(n_seeds, -1).sum(1).clamp(min=1.0)


@torch.no_grad()
def hard_update(target: nn.Module, online: nn.Module) -> None:
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.copy_(o)


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- (1 - tau) target + tau online, every tensor in one foreach call (the same kernel
    per tensor as a loop of `lerp_`, bitwise, without a Python call per tensor)."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)
