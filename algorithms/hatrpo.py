"""HATRPO (Kuba et al. 2022, Alg. 1): HAPPO's sequential scheme with a trust-region step per agent.

Per iteration: collect T steps; the joint advantage A(s, a) by GAE on one V(s) for the team; update V; then
the agents one after another in a random order (`blocks/sequential_update.py`). Agent i_m maximizes
E[M * pi_i/pi_i_old * A] subject to the mean KL(pi_i_old || pi_i) <= delta: the direction from conjugate
gradient on Fisher-vector products, then a backtracking line search (`blocks/trust_region.py`). One step per
agent per iteration, on the whole batch.
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.blocks.gae import rollout_gae
from algorithms.blocks.lr_schedule import LinearAnnealing
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.rollout import RolloutStorage, learning_rewards
from algorithms.blocks.sequential_update import SequentialUpdateConfig, sequential_update
from algorithms.blocks.trust_region import trust_region_step
from algorithms.blocks.value_critic import ValueCritic
from environments.base import EnvSpec, TimeStep


class HATRPOConfig(SequentialUpdateConfig):
    kl_threshold: float = Field(0.01, gt=0, description="delta: the KL radius of each agent's step")
    cg_iterations: int = Field(10, ge=1)
    cg_damping: float = Field(0.1, ge=0)
    line_search_steps: int = Field(10, ge=1)
    accept_ratio: float = Field(0.5, ge=0, le=1)


class HATRPO(OnPolicyContract):
    Config = HATRPOConfig
    config: HATRPOConfig

    def __init__(self, spec: EnvSpec, config: HATRPOConfig, device: torch.device):
        super().__init__(spec, config, device)
        n = spec.n_agents
        self.actor = Policy(spec, config, n, spec.obs_dim, device, agentwise=True)  # pi^i(a_i | o_i), one net each
        self.critic = ValueCritic(config, spec.state_dim, 1, n, device)  # one V(s): every agent's A is the joint A
        self.collector = RolloutCollector(
            config.rollout_length, config.recurrent, act=self.policy_step, critic=self.critic,
            critic_input=self.critic_input, actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: learning_rewards(reward, spec.reward_mode, config.learning_reward))
        self.schedule = LinearAnnealing(config.lr_annealing)

    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        return self.actor.step(timestep.obs, timestep.avail_actions, memory, timestep.done, deterministic)

    def critic_input(self, obs: torch.Tensor, state: torch.Tensor, step: PolicyStep | None) -> torch.Tensor:
        return state.unsqueeze(-2)

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg = self.config
        advantages, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)  # the joint A(s, a), by GAE on V(s)
        # critic on the returns, then agents in turn, M-weighted
        return self.backbone_update(storage, advantages, returns,
                                    lambda batch: sequential_update(self.actor, batch, self.update_agent))

    def update_agent(self, batch: dict[str, torch.Tensor], agent: int) -> dict[str, float]:
        """One trust-region step on agent `agent`'s rows of the parameters (M = `batch["factor"]`)."""
        cfg, actor, head = self.config, self.actor, self.actor.net.head
        params = list(actor.net.parameters())
        actions, old_log_prob = batch["actions"].select(2, agent), batch["log_probs"].select(2, agent)
        weighted_advantages = batch["factor"] * batch["advantages"].select(2, agent)
        with torch.no_grad():
            old_params = actor.sequence_params(batch, agent)

        def surrogate() -> torch.Tensor:
            ratio = torch.exp(head.log_prob(actor.sequence_params(batch, agent), actions) - old_log_prob)
            return (ratio * weighted_advantages).mean()

        def kl() -> torch.Tensor:
            return head.kl(old_params, actor.sequence_params(batch, agent)).mean()

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

