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

from algorithms.blocks.networks import agent_rows
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.policy import Policy
from algorithms.blocks.ppo_loss import ACTOR_FIELDS


class SequentialUpdateConfig(OnPolicyConfig):
    share_parameters: bool = Field(False, description="must be false: agents are updated one at a time")

    @model_validator(mode="after")
    def _separate_actors(self):
        if self.share_parameters:
            raise ValueError("share_parameters must be false: HAPPO/HATRPO update each agent's own policy in turn "
                             "(Kuba et al. 2022); set share_parameters: false")
        return self


def sequential_update(policy: Policy, batch: dict[str, torch.Tensor],
                      update_agent: Callable[[dict[str, torch.Tensor], int | torch.Tensor], dict[str, torch.Tensor]]
                      ) -> dict[str, float | list[float]]:
    """Update the agents in a random order; `update_agent(batch, i)` sees M as `batch["factor"]` `[C, (K,) S]` and
    returns its statistics as tensors (`[K]` in a seed batch). Returns the agents' mean statistics (one per seed).

    In a seed batch every seed draws its own order from its own stream, so seed k updates the agents in the order
    it would alone; the loop runs over the N positions, and at position m `i` is the `[K]` tensor of each seed's
    m-th agent (`networks.agent_rows` gathers their rows)."""
    n = policy.n_learners
    # Alg. 2: a random permutation i_1..i_n per iteration (the global RNG in the unbatched layout, n_seeds None)
    orders = torch.randperm(n).tolist() if policy.streams is None else policy.streams.permutations(n).T
    fields = {k: v for k, v in batch.items() if k in ACTOR_FIELDS}  # only what the actors read is shuffled
    factor = torch.ones_like(batch["log_probs"].select(-1, 0))  # M, per sample: [C, (K,) S]
    stats: dict[str, torch.Tensor] = {}
    for agent in orders:
        for key, value in update_agent({**fields, "factor": factor}, agent).items():
            stats[key] = stats.get(key, 0.0) + value / n
        with torch.no_grad():  # M *= pi_new(a_i) / pi_old(a_i) of the agent just updated
            new_log_prob = policy.net.head.log_prob(policy.sequence_params(fields, agent), agent_actions(fields, agent))
            factor = factor * torch.exp(new_log_prob - agent_rows(fields["log_probs"], agent, -1))
    return {key: value.tolist() for key, value in stats.items()}


def agent_actions(batch: dict[str, torch.Tensor], agent: int | torch.Tensor) -> torch.Tensor:
    """Agent `agent`'s stored actions: `[C, (K,) S]` discrete, `[C, (K,) S, action_dim]` continuous."""
    actions = batch["actions"]
    return agent_rows(actions, agent, -1 if actions.dim() == batch["log_probs"].dim() else -2)
