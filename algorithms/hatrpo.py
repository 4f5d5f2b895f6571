"""HATRPO (Kuba et al. 2022, Alg. 1): the sequential scheme of HAPPO with a trust-region step per agent.

Agent i_m maximizes E[M * pi_i/pi_i_old * A] subject to the mean KL(pi_i_old || pi_i) <= delta: the
direction from conjugate gradient on Fisher-vector products, then a backtracking line search
(algorithms/trust_region.py). One step per agent per iteration, on the whole batch.
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.blocks.trust_region import trust_region_step
from algorithms.happo import SequentialUpdate, SequentialUpdateConfig


class HATRPOConfig(SequentialUpdateConfig):
    kl_threshold: float = Field(0.01, gt=0, description="delta: the KL radius of each agent's step")
    cg_iterations: int = Field(10, ge=1)
    cg_damping: float = Field(0.1, ge=0)
    line_search_steps: int = Field(10, ge=1)
    accept_ratio: float = Field(0.5, ge=0, le=1)


class HATRPO(SequentialUpdate):
    name = "hatrpo"
    Config = HATRPOConfig
    config: HATRPOConfig

    def update_agent(self, batch: dict[str, torch.Tensor], agent: int) -> dict[str, float]:
        cfg, head = self.config, self.policy.head
        params = list(self.policy.parameters())
        actions, old_log_prob = batch["actions"].select(2, agent), batch["log_probs"].select(2, agent)
        weighted_advantages = batch["factor"] * batch["advantages"].select(2, agent)
        with torch.no_grad():
            old_params = self.sequence_params(batch, agent)

        def surrogate() -> torch.Tensor:
            ratio = torch.exp(head.log_prob(self.sequence_params(batch, agent), actions) - old_log_prob)
            return (ratio * weighted_advantages).mean()

        def kl() -> torch.Tensor:
            return head.kl(old_params, self.sequence_params(batch, agent)).mean()

        def get_flat() -> torch.Tensor:
            return torch.cat([p.detach()[agent].reshape(-1) for p in params])

        def set_flat(flat: torch.Tensor) -> None:
            offset = 0
            for p in params:
                row = p.data[agent]
                row.copy_(flat[offset:offset + row.numel()].view_as(row))
                offset += row.numel()

        def flat_grad(y: torch.Tensor, create_graph: bool = False, retain_graph: bool | None = None) -> torch.Tensor:
            grads = torch.autograd.grad(y, params, create_graph=create_graph, retain_graph=retain_graph,
                                        allow_unused=True)
            return torch.cat([(torch.zeros_like(p[agent]) if g is None else g[agent]).reshape(-1)
                              for p, g in zip(params, grads, strict=True)])

        return trust_region_step(surrogate, kl, get_flat, set_flat, flat_grad, cfg.kl_threshold, cfg.cg_damping,
                                 cfg.cg_iterations, cfg.line_search_steps, cfg.accept_ratio)
