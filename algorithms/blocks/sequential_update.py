"""The sequential update of Kuba et al. 2022 (HAPPO Alg. 2, HATRPO Alg. 1), written once for both.

Each iteration the agents update one after another in a random order i_1..i_n. Agent i_m maximizes its
surrogate of the joint advantage A(s, a) weighted by M = prod_{k<m} pi_new(a_k)/pi_old(a_k), the ratios of
the agents already updated this iteration (their eq. 11). How one agent is updated (PPO's clip for HAPPO,
a trust-region step for HATRPO) is the method's `update_agent`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field, model_validator

from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.policy import Policy


class SequentialUpdateConfig(OnPolicyConfig):
    share_parameters: bool = Field(False, description="must be false: agents are updated one at a time")

    @model_validator(mode="after")
    def _separate_actors(self):
        if self.share_parameters:
            raise ValueError("share_parameters must be false: HAPPO/HATRPO update each agent's own policy in turn "
                             "(Kuba et al. 2022); set share_parameters: false")
        return self


def sequential_update(policy: Policy, batch: dict[str, torch.Tensor],
                      update_agent: Callable[[dict[str, torch.Tensor], int], dict[str, float]]) -> dict[str, float]:
    """Update the agents in a random order; `update_agent(batch, i)` sees M as `batch["factor"]` `[C, S]`.
    Returns the agents' mean statistics."""
    n = policy.n_learners
    factor = torch.ones_like(batch["log_probs"].select(2, 0))  # M, per sample: [C, S]
    stats: dict[str, float] = {}
    for agent in torch.randperm(n).tolist():
        batch["factor"] = factor
        for key, value in update_agent(batch, agent).items():
            stats[key] = stats.get(key, 0.0) + value / n
        with torch.no_grad():  # M *= pi_new(a_i) / pi_old(a_i) of the agent just updated
            new_log_prob = policy.net.head.log_prob(policy.sequence_params(batch, agent),
                                                    batch["actions"].select(2, agent))
            factor = factor * torch.exp(new_log_prob - batch["log_probs"].select(2, agent))
    del batch["factor"]
    return stats
