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
from algorithms.blocks.networks import agent_rows
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.rollout import RolloutStorage, learning_rewards, seed_mean
from algorithms.blocks.sequential_update import SequentialUpdateConfig, agent_actions, sequential_update
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

    def __init__(self, spec: EnvSpec, config: HATRPOConfig, device: torch.device, n_seeds: int | None = 1):
        # K seeds at once (docs/architecture.md, "Seed batches"); None: no seed dimension (the unbatched layout)
        super().__init__(spec, config, device, n_seeds)
        n, seeds = spec.n_agents, n_seeds
        # pi^i(a_i | o_i), one net each; its stream also draws each seed's agent order
        self.actor = Policy(spec, config, n, spec.obs_dim, device, agentwise=True, n_seeds=seeds)
        self.critic = ValueCritic(config, spec.state_dim, 1, n, device, seeds)  # one V(s): the joint A for every agent
        self.collector = RolloutCollector(
            config.rollout_length, config.recurrent, act=self.policy_step, critic=self.critic,
            critic_input=self.critic_input, actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: learning_rewards(reward, spec.reward_mode, config.learning_reward), n_seeds=seeds)
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

    def update_agent(self, batch: dict[str, torch.Tensor], agent: int | torch.Tensor) -> dict[str, torch.Tensor]:
        """One trust-region step on agent `agent`'s rows of the parameters (M = `batch["factor"]`); in a seed batch
        on agent `agent[k]` of each seed k, every seed with its own direction, step size and line search."""
        cfg, actor, head, seeds = self.config, self.actor, self.actor.net.head, self.n_seeds
        params = list(actor.net.parameters())
        actions, old_log_prob = agent_actions(batch, agent), agent_rows(batch["log_probs"], agent, -1)
        weighted_advantages = batch["factor"] * agent_rows(batch["advantages"], agent, -1)
        with torch.no_grad():
            old_params = actor.sequence_params(batch, agent)
        lead = () if seeds is None else (seeds,)
        index = None if seeds is None else (torch.arange(seeds, device=self.device),
                                            torch.as_tensor(agent, device=self.device))

        def rows(p: torch.Tensor) -> torch.Tensor:  # the agent's rows: [K, ...] of seed-major [K*N, ...], or its own
            return p[agent] if seeds is None else p.view(seeds, -1, *p.shape[1:])[index]

        def set_rows(p: torch.Tensor, values: torch.Tensor) -> None:
            if seeds is None:
                p[agent] = values
            else:
                p.view(seeds, -1, *p.shape[1:])[index] = values

        def surrogate() -> torch.Tensor:  # E[M r A], per seed; one learner: seed_mean's learner dimension back
            ratio = torch.exp(head.log_prob(actor.sequence_params(batch, agent), actions) - old_log_prob)
            return seed_mean((ratio * weighted_advantages).unsqueeze(-1), seeds)

        def kl() -> torch.Tensor:
            return seed_mean(head.kl(old_params, actor.sequence_params(batch, agent)).unsqueeze(-1), seeds)

        def get_flat() -> torch.Tensor:
            return torch.cat([rows(p.detach()).reshape(*lead, -1) for p in params], dim=-1)

        def set_flat(flat: torch.Tensor) -> None:
            offset = 0
            for p in params:
                size = p[0].numel()
                set_rows(p.data, flat[..., offset:offset + size].reshape(*lead, *p.shape[1:]))
                offset += size

        def flat_grad(y: torch.Tensor, create_graph: bool = False, retain_graph: bool | None = None) -> torch.Tensor:
            # y per seed: their sum's gradient is each seed's own on its rows (the seeds share no parameters)
            grads = torch.autograd.grad(y.sum(), params, create_graph=create_graph, retain_graph=retain_graph,
                                        allow_unused=True)
            return torch.cat([rows(torch.zeros_like(p) if g is None else g).reshape(*lead, -1)
                              for p, g in zip(params, grads, strict=True)], dim=-1)

        return trust_region_step(surrogate, kl, get_flat, set_flat, flat_grad, cfg.kl_threshold, cfg.cg_damping,
                                 cfg.cg_iterations, cfg.line_search_steps, cfg.accept_ratio)
