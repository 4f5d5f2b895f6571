"""Optimistic MAPPO (Zhao et al. 2024, "Optimistic Multi-Agent Policy Gradient", ICML; CORA's baseline).

MAPPO whose actors see the advantages through a leaky ReLU: negative advantages are scaled by
eta in [0, 1) (eta = 0 clips them to zero), so an agent is not pushed away from an action whose low
return may come from its teammates' still-random behaviour (relative overgeneralization). The
critic is MAPPO's, trained on the unshaped targets. Applied after advantage normalization.
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.mappo import MAPPO
from algorithms.on_policy import OnPolicyConfig


class OptimisticMAPPOConfig(OnPolicyConfig):
    optimism_slope: float = Field(0.0, ge=0, lt=1, description="eta: the leaky-ReLU slope on negative advantages")


class OptimisticMAPPO(MAPPO):
    name = "optimistic_mappo"
    Config = OptimisticMAPPOConfig
    config: OptimisticMAPPOConfig

    def shape_advantages(self, advantages: torch.Tensor) -> torch.Tensor:
        return torch.where(advantages >= 0, advantages, self.config.optimism_slope * advantages)
