"""MAPPO (Yu et al. 2022): PPO per agent with a centralized critic V(s) on the global state."""

from __future__ import annotations

import torch

from algorithms.on_policy import OnPolicyAlgorithm
from environments.base import EnvSpec


class MAPPO(OnPolicyAlgorithm):
    name = "mappo"

    def critic_input_dim(self, spec: EnvSpec) -> int:
        return spec.state_dim

    def critic_features(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return state.unsqueeze(-2).expand(*state.shape[:-1], self.critic_width, state.shape[-1])
