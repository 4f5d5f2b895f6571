"""IPPO (de Witt et al. 2020): PPO per agent with a decentralized critic V(o_i) on local observations."""

from __future__ import annotations

import torch

from algorithms.on_policy import OnPolicyAlgorithm
from environments.base import EnvSpec


class IPPO(OnPolicyAlgorithm):
    name = "ippo"

    def critic_input_dim(self, spec: EnvSpec) -> int:
        return spec.obs_dim

    def critic_features(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return obs
