"""HAPPO (Kuba et al. 2022, "Trust Region Policy Optimisation in Multi-Agent Reinforcement Learning", Alg. 2).

Each iteration the agents update one after another in a random order i_1..i_n. Agent i_m maximizes
PPO's clipped surrogate of the joint advantage A(s, a) weighted by M = prod_{k<m} pi_new(a_k)/pi_old(a_k),
the ratios of the agents already updated this iteration (their eq. 11 / HAPPO's objective). The critic
is one V(s) for the team (`joint_value`), so every agent's advantage is the joint advantage.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from pydantic import Field, model_validator

from algorithms.blocks.adam import AgentwiseAdam
from algorithms.blocks.ppo_loss import ppo_clip_loss
from algorithms.mappo import MAPPO
from algorithms.on_policy import OnPolicyConfig


class SequentialUpdateConfig(OnPolicyConfig):
    share_parameters: bool = Field(False, description="must be false: agents are updated one at a time")

    @model_validator(mode="after")
    def _separate_actors(self):
        if self.share_parameters:
            raise ValueError("share_parameters must be false: HAPPO/HATRPO update each agent's own policy in turn "
                             "(Kuba et al. 2022); set share_parameters: false")
        return self


class SequentialUpdate(MAPPO):
    """What HAPPO and HATRPO share: the team critic, per-agent optimizers, the random order and M."""

    Config = SequentialUpdateConfig
    joint_value = True

    def make_actor_optimizer(self) -> AgentwiseAdam:
        return AgentwiseAdam(self.policy.parameters(), self.n_learners, lr=self.config.lr_actor, eps=1e-5)

    def update_actor(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        factor = torch.ones_like(batch["log_probs"].select(2, 0))  # M, per sample: [C, S]
        stats: dict[str, float] = {}
        for agent in torch.randperm(self.n_learners).tolist():
            batch["factor"] = factor
            for key, value in self.update_agent(batch, agent).items():
                stats[key] = stats.get(key, 0.0) + value / self.n_learners
            with torch.no_grad():  # M *= pi_new(a_i) / pi_old(a_i) of the agent just updated
                new_log_prob = self.policy.head.log_prob(self.sequence_params(batch, agent),
                                                         batch["actions"].select(2, agent))
                factor = factor * torch.exp(new_log_prob - batch["log_probs"].select(2, agent))
        del batch["factor"]
        return stats

    @abstractmethod
    def update_agent(self, batch: dict[str, torch.Tensor], agent: int) -> dict[str, float]:
        """Update one agent's policy on `batch` (M is `batch["factor"]`); return its statistics."""


class HAPPO(SequentialUpdate):
    name = "happo"

    def update_agent(self, batch: dict[str, torch.Tensor], agent: int) -> dict[str, float]:
        cfg, head = self.config, self.policy.head
        totals, count = {"policy_loss": 0.0, "entropy": 0.0}, 0
        for mb in self.minibatches(batch):
            params = self.sequence_params(mb, agent)
            entropy = head.entropy(params).mean()
            # M > 0, so min(r M A, clip(r) M A) is PPO's clipped objective on the advantage M A.
            loss = ppo_clip_loss(head.log_prob(params, mb["actions"].select(2, agent)),
                                 mb["log_probs"].select(2, agent), mb["factor"] * mb["advantages"].select(2, agent),
                                 cfg.clip_eps)
            self.clipped_step(self.actor_optimizer, self.policy, loss - cfg.entropy_coef * entropy, agent=agent)
            totals["policy_loss"] += loss.item()
            totals["entropy"] += entropy.item()
            count += 1
        return {k: v / count for k, v in totals.items()}
