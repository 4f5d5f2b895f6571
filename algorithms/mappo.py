"""MAPPO (Yu et al. 2022): PPO per agent with a centralized critic V(s) on the global state."""

from __future__ import annotations

import torch

from algorithms.on_policy import OnPolicyAlgorithm, OnPolicyConfig
from environments.base import EnvSpec


class MAPPO(OnPolicyAlgorithm):
    name = "mappo"

    def critic_is_joint(self, config: OnPolicyConfig) -> bool:
        # A shared critic without agent ids sees the same state for every agent and gives every agent
        # the same value: compute it once per copy (N times fewer critic rows, the same losses and
        # gradients: the value loss against N targets is their mean either way).
        return self.joint_value or (config.critic_shares_parameters and not config.agent_id_input)

    def critic_input_dim(self, spec: EnvSpec) -> int:
        return spec.state_dim

    def critic_features(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return state.unsqueeze(-2).expand(*state.shape[:-1], self.critic_width, state.shape[-1])
