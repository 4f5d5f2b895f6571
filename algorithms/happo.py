"""HAPPO (Kuba et al. 2022, "Trust Region Policy Optimisation in Multi-Agent Reinforcement Learning", Alg. 2).

Per iteration: collect T steps; the joint advantage A(s, a) by GAE on one V(s) for the team; update V; then
the agents one after another in a random order i_1..i_n (`blocks/sequential_update.py`). Agent i_m
maximizes PPO's clipped surrogate of A(s, a) weighted by M = prod_{k<m} pi_new(a_k)/pi_old(a_k), the ratios
of the agents already updated this iteration (their eq. 11 / HAPPO's objective).
"""

from __future__ import annotations

import torch

from algorithms.blocks.gae import rollout_gae
from algorithms.blocks.lr_schedule import LinearAnnealing
from algorithms.blocks.networks import agent_rows
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.ppo_loss import clipped_step, ppo_clip_loss
from algorithms.blocks.rollout import RolloutStorage, learning_rewards, minibatches, seed_mean
from algorithms.blocks.sequential_update import SequentialUpdateConfig, agent_actions, sequential_update
from algorithms.blocks.value_critic import ValueCritic
from environments.base import EnvSpec, TimeStep


class HAPPO(OnPolicyContract):
    Config = SequentialUpdateConfig
    config: SequentialUpdateConfig

    def __init__(self, spec: EnvSpec, config: SequentialUpdateConfig, device: torch.device, n_seeds: int | None = 1):
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
        """PPO's clipped surrogate for one agent on M A (M = `batch["factor"]`), its own Adam rows only; in a seed
        batch agent `agent[k]` of seed k, each seed's loss its own (`seed_mean`)."""
        cfg, actor, head, seeds = self.config, self.actor, self.actor.net.head, self.n_seeds
        totals, count = {"policy_loss": 0.0, "entropy": 0.0}, 0
        for mb in minibatches(batch, cfg.ppo_epochs, cfg.num_minibatches, actor.streams):
            params = actor.sequence_params(mb, agent)
            # one learner: [C, (K,) S] gets its learner dimension back, where seed_mean expects the seeds
            entropy = seed_mean(head.entropy(params).unsqueeze(-1), seeds)
            # M > 0, so min(r M A, clip(r) M A) is PPO's clipped objective on the advantage M A.
            loss = ppo_clip_loss(head.log_prob(params, agent_actions(mb, agent)).unsqueeze(-1),
                                 agent_rows(mb["log_probs"], agent, -1).unsqueeze(-1),
                                 (mb["factor"] * agent_rows(mb["advantages"], agent, -1)).unsqueeze(-1),
                                 cfg.clip_eps, seeds)
            clipped_step(actor.optimizer, actor.net, loss - cfg.entropy_coef * entropy, cfg.max_grad_norm, seeds,
                         agent=agent)
            totals["policy_loss"] += loss.detach()
            totals["entropy"] += entropy.detach()
            count += 1
        return {k: v / count for k, v in totals.items()}
