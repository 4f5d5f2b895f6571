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
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.ppo_loss import clipped_step, ppo_clip_loss
from algorithms.blocks.rollout import RolloutStorage, learning_rewards, minibatches
from algorithms.blocks.sequential_update import SequentialUpdateConfig, sequential_update
from algorithms.blocks.value_critic import ValueCritic
from environments.base import EnvSpec, TimeStep


class HAPPO(OnPolicyContract):
    Config = SequentialUpdateConfig
    config: SequentialUpdateConfig

    def __init__(self, spec: EnvSpec, config: SequentialUpdateConfig, device: torch.device):
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
        """PPO's clipped surrogate for one agent on M A (M = `batch["factor"]`), its own Adam rows only."""
        cfg, head = self.config, self.actor.net.head
        totals, count = {"policy_loss": 0.0, "entropy": 0.0}, 0
        for mb in minibatches(batch, cfg.ppo_epochs, cfg.num_minibatches):
            params = self.actor.sequence_params(mb, agent)
            entropy = head.entropy(params).mean()
            # M > 0, so min(r M A, clip(r) M A) is PPO's clipped objective on the advantage M A.
            loss = ppo_clip_loss(head.log_prob(params, mb["actions"].select(2, agent)),
                                 mb["log_probs"].select(2, agent), mb["factor"] * mb["advantages"].select(2, agent),
                                 cfg.clip_eps)
            clipped_step(self.actor.optimizer, self.actor.net, loss - cfg.entropy_coef * entropy, cfg.max_grad_norm,
                         agent=agent)
            totals["policy_loss"] += loss.item()
            totals["entropy"] += entropy.item()
            count += 1
        return {k: v / count for k, v in totals.items()}

