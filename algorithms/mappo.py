"""MAPPO (Yu et al. 2022): PPO per agent with a centralized critic V(s) on the global state.

Per iteration: collect T steps from every copy; GAE per agent on V(s) (Yu et al. sec. 3, App. A);
update V on the lambda-returns (normalized by ValueNorm), then every actor on PPO's clipped surrogate.
"""

from __future__ import annotations

import torch

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


class MAPPO(OnPolicyContract):
    Config = OnPolicyConfig
    config: OnPolicyConfig

    def __init__(self, spec: EnvSpec, config: OnPolicyConfig, device: torch.device, n_seeds: int | None = 1):
        # K seeds at once (docs/architecture.md, "Seed batches"); None: no seed dimension (unconverted methods' layout)
        super().__init__(spec, config, device, n_seeds)
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
        # critic on the returns, then every actor at once: PPO-Clip + entropy
        return self.backbone_update(storage, advantages, returns, lambda batch: ppo_update(self.actor, batch, cfg))

