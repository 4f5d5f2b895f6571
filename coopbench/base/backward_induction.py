"""Backward induction over a finite horizon, written once for every exact computation on a tabular model:
the return bounds of a task (environments/tabular_model.py), and ACPI's planners (algorithms/acpi.py: a joint
policy's value, the agent-chained values of ACPO Def. 5.1, the joint optimum).

It lives in the shared base because both the environments and the algorithms layer use it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def backward_induction(reward: torch.Tensor, transitions: torch.Tensor, live: torch.Tensor, gamma: float, steps: int,
                       value_of: Callable[[int, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Q_t(s, a) = R(s, a) + gamma sum_s' P(s' | s, a) V_{t+1}(s') and V_t(s) = value_of(t, Q_t)(s) live(s), for
    t = T-1, ..., 0 with V_T = 0 (the episode has ended after T steps, and in terminal states, where live = 0).

    `reward [S, J]`, `transitions [S, J, S]`, `live [S]`. `value_of(t, q)` turns a step's action values `q [S, J]`
    into state values `[S]`: the expectation under a policy, the max (the optimum) or the min (the worst policy),
    or ACPI's chain over the agents. Returns Q `[T, S, J]` and V `[T, S]`.
    """
    q = reward.new_empty(steps, *reward.shape)
    v = reward.new_empty(steps, reward.shape[0])
    following = reward.new_zeros(reward.shape[0])
    for t in reversed(range(steps)):
        q[t] = reward + gamma * transitions @ following
        v[t] = value_of(t, q[t]) * live
        following = v[t]
    return q, v
