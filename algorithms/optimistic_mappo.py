"""Optimistic MAPPO (Zhao et al. 2024, "Optimistic Multi-Agent Policy Gradient", ICML; CORA's baseline).

MAPPO whose actors see the advantages through a leaky ReLU: negative advantages are scaled by
eta in [0, 1) (eta = 0 clips them to zero), so an agent is not pushed away from an action whose low
return may come from its teammates' still-random behaviour (relative overgeneralization). The
critic is MAPPO's, trained on the unshaped targets. Applied after advantage normalization.
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.blocks.gae import rollout_gae
from algorithms.blocks.lr_schedule import LinearAnnealing
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.ppo_loss import ppo_update
from algorithms.blocks.rollout import RolloutStorage, learning_rewards
from algorithms.blocks.value_critic import ValueCritic
from environments.base import EnvSpec, TimeStep


class OptimisticMAPPOConfig(OnPolicyConfig):
    optimism_slope: float = Field(0.0, ge=0, lt=1, description="eta: the leaky-ReLU slope on negative advantages")


def optimistic(advantages: torch.Tensor, slope: float) -> torch.Tensor:
    """The leaky ReLU of the advantages, slope eta below zero (Zhao et al. 2024's optimistic advantages)."""
    return torch.where(advantages >= 0, advantages, slope * advantages)


class OptimisticMAPPO(OnPolicyContract):
    Config = OptimisticMAPPOConfig
    config: OptimisticMAPPOConfig

    def __init__(self, spec: EnvSpec, config: OptimisticMAPPOConfig, device: torch.device, n_seeds: int | None = 1):
        super().__init__(spec, config, device, n_seeds)  # K seeds at once (docs/architecture.md, "Seed batches")
        n, seeds = spec.n_agents, n_seeds
        self.actor = Policy(spec, config, n, spec.obs_dim, device, n_seeds=seeds)  # pi(a_i | o_i), ids if shared
        # A shared critic without agent ids sees the same state for every agent and gives every agent the same
        # value: compute it once per copy (N times fewer critic rows, the same losses and gradients: the value
        # loss against N targets is their mean either way).
        joint = config.critic_shares_parameters and not config.agent_id_input
        self.critic = ValueCritic(config, spec.state_dim, 1 if joint else n, n, device, seeds)  # V(s)
        self.collector = RolloutCollector(
            config.rollout_length, config.recurrent, act=self.policy_step, critic=self.critic,
            critic_input=self.critic_input, actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: learning_rewards(reward, spec.reward_mode, config.learning_reward), n_seeds=seeds)
        self.schedule = LinearAnnealing(config.lr_annealing)

    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        return self.actor.step(timestep.obs, timestep.avail_actions, memory, timestep.done, deterministic)

    def critic_input(self, obs: torch.Tensor, state: torch.Tensor, step: PolicyStep | None) -> torch.Tensor:
        width = self.critic.width  # the global state for each value row
        return self.critic.inputs(state.unsqueeze(-2).expand(*state.shape[:-1], width, state.shape[-1]))

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg = self.config
        advantages, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)  # each agent's GAE on V(s)
        # critic on the returns, then every actor at once on the optimistic advantages (the actors' view; V learns
        # the unshaped returns): PPO-Clip + entropy
        return self.backbone_update(storage, advantages, returns, lambda batch: ppo_update(self.actor, batch, cfg),
                                    shape=lambda a: optimistic(a, cfg.optimism_slope))

