"""Centralized PPO: one PPO learner over the joint action space (AS paper, Fig. 6's reference point).

A single policy pi(a_1..a_N | s) on the global state picks one of prod_i |A_i| joint actions; one
critic V(s); it learns from the team reward (the sum of private rewards on private-reward tasks).
Only feasible for small teams: construction fails above `max_joint_actions`.
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.blocks.networks import CategoricalHead
from algorithms.on_policy import OnPolicyAlgorithm, OnPolicyConfig
from coopbench.base.errors import CoopbenchError
from environments.base import EnvSpec, TimeStep


class CentralizedPPOConfig(OnPolicyConfig):
    max_joint_actions: int = Field(4096, ge=1, description="refuse tasks whose joint action space is larger")


class CentralizedPPO(OnPolicyAlgorithm):
    name = "centralized_ppo"
    Config = CentralizedPPOConfig
    config: CentralizedPPOConfig

    def __init__(self, spec: EnvSpec, config: CentralizedPPOConfig, device: torch.device):
        if not spec.discrete:
            raise CoopbenchError(f"centralized_ppo needs discrete actions; {spec.name} has continuous ones",
                                 "run it on a discrete-action task")
        joint = spec.n_actions ** spec.n_agents
        if joint > config.max_joint_actions:
            raise CoopbenchError(
                f"centralized_ppo: {spec.name} has {spec.n_actions}^{spec.n_agents} = {joint} joint actions, "
                f"above max_joint_actions={config.max_joint_actions}",
                "use it on a task with fewer agents or actions, or raise max_joint_actions (memory grows with it)")
        # Row k: the agents' actions of joint action k (mixed radix, agent 0 most significant).
        radix = spec.n_actions ** torch.arange(spec.n_agents - 1, -1, -1)
        self.joint_to_actions = (torch.arange(joint).unsqueeze(1) // radix % spec.n_actions).to(device)
        super().__init__(spec, config, device)

    def learner_count(self, spec: EnvSpec) -> int:
        return 1

    def actor_input_dim(self, spec: EnvSpec) -> int:
        return spec.state_dim

    def actor_features(self, timestep: TimeStep) -> torch.Tensor:
        return timestep.state.unsqueeze(-2)

    def critic_input_dim(self, spec: EnvSpec) -> int:
        return spec.state_dim

    def critic_features(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return state.unsqueeze(-2)

    def policy_head(self, n_groups: int, features: int) -> CategoricalHead:
        return CategoricalHead(n_groups, features, self.joint_to_actions.shape[0])

    def actor_avail(self, timestep: TimeStep) -> torch.Tensor | None:
        if timestep.avail_actions is None:
            return None
        # Joint action k is available iff every agent's part of it is: [B, N, A] -> [B, 1, K].
        agents = torch.arange(self.spec.n_agents, device=self.device)
        per_agent = timestep.avail_actions[:, agents, self.joint_to_actions]  # [B, K, N]
        return per_agent.all(-1).unsqueeze(1)

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return self.joint_to_actions[actions[:, 0]]

    def learning_rewards(self, reward: torch.Tensor) -> torch.Tensor:
        if self.spec.reward_mode == "private":
            return reward.sum(dim=-1, keepdim=True)
        return reward[:, :1]  # team tasks give every agent the team reward
