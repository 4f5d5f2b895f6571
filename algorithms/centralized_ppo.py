"""Centralized PPO: one PPO learner over the joint action space (AS paper, Fig. 6's reference point).

A single policy pi(a_1..a_N | s) on the global state picks one of prod_i |A_i| joint actions; one
critic V(s); it learns from the team reward (the sum of private rewards on private-reward tasks).
Only feasible for small teams: construction fails above `max_joint_actions`.

Seed batches (docs/architecture.md): built with `n_seeds` K, the parts hold K seeds and tensors carry a leading seed
dimension, `[(K,) B, ...]`; the joint-action mapping and the team reward act on the trailing dimensions only.
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.blocks.gae import rollout_gae
from algorithms.blocks.lr_schedule import LinearAnnealing
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.ppo_loss import ppo_update
from algorithms.blocks.rollout import RolloutStorage
from algorithms.blocks.value_critic import ValueCritic
from coopbench.base.errors import CoopbenchError
from environments.base import EnvSpec, TimeStep


class CentralizedPPOConfig(OnPolicyConfig):
    max_joint_actions: int = Field(4096, ge=1, description="refuse tasks whose joint action space is larger")


class JointActions:
    """The action mapping: joint action k <-> the agents' actions (mixed radix, agent 0 most significant)."""

    def __init__(self, spec: EnvSpec, device: torch.device):
        joint = spec.n_actions ** spec.n_agents
        radix = spec.n_actions ** torch.arange(spec.n_agents - 1, -1, -1)
        self.table = (torch.arange(joint).unsqueeze(1) // radix % spec.n_actions).to(device)  # [K, N]
        self.agents = torch.arange(spec.n_agents, device=device)

    @property
    def count(self) -> int:
        return self.table.shape[0]

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """`[..., 1]` joint actions -> the environment's `[..., N]`."""
        return self.table[actions[..., 0]]

    def avail(self, avail_actions: torch.Tensor | None) -> torch.Tensor | None:
        """Joint action k is available iff every agent's part of it is: `[..., N, A] -> [..., 1, K]`."""
        if avail_actions is None:
            return None
        return avail_actions[..., self.agents, self.table].all(-1).unsqueeze(-2)  # [..., K, N] -> [..., 1, K]


def team_reward(reward: torch.Tensor, reward_mode: str) -> torch.Tensor:
    """`[..., 1]`: the sum of private rewards, or the team reward every agent already gets."""
    return reward.sum(dim=-1, keepdim=True) if reward_mode == "private" else reward[..., :1]


class CentralizedPPO(OnPolicyContract):
    Config = CentralizedPPOConfig
    config: CentralizedPPOConfig

    def __init__(self, spec: EnvSpec, config: CentralizedPPOConfig, device: torch.device,
                 n_seeds: int | None = 1):
        if not spec.discrete:
            raise CoopbenchError(f"centralized_ppo needs discrete actions; {spec.name} has continuous ones",
                                 "run it on a discrete-action task")
        joint = spec.n_actions ** spec.n_agents
        if joint > config.max_joint_actions:
            raise CoopbenchError(
                f"centralized_ppo: {spec.name} has {spec.n_actions}^{spec.n_agents} = {joint} joint actions, "
                f"above max_joint_actions={config.max_joint_actions}",
                "use it on a task with fewer agents or actions, or raise max_joint_actions (memory grows with it)")
        # K seeds at once (docs/architecture.md, "Seed batches"); None: no seed dimension (the unbatched layout)
        super().__init__(spec, config, device, n_seeds)
        self.joint = JointActions(spec, device)
        self.actor = Policy(spec, config, 1, spec.state_dim, device, n_actions=self.joint.count,
                            n_seeds=n_seeds)  # pi(a | s)
        self.critic = ValueCritic(config, spec.state_dim, 1, 1, device, n_seeds)  # V(s)
        self.collector = RolloutCollector(
            config.rollout_length, config.recurrent, act=self.policy_step, critic=self.critic,
            critic_input=lambda obs, state, step: state.unsqueeze(-2), env_actions=self.joint.env_actions,
            actor_memory=self.initial_memory(config.n_envs), rewards=lambda r: team_reward(r, spec.reward_mode),
            n_seeds=n_seeds)
        self.schedule = LinearAnnealing(config.lr_annealing)

    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        return self.actor.step(timestep.state.unsqueeze(-2), self.joint.avail(timestep.avail_actions), memory,
                               timestep.done, deterministic)

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg = self.config
        advantages, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)  # the learner's GAE on V(s)
        # critic on the returns, then every actor at once: PPO-Clip + entropy
        return self.backbone_update(storage, advantages, returns, lambda batch: ppo_update(self.actor, batch, cfg))

    def act(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # The contract's act (the seed view of a batch's K*B copies and back): joint actions `[(K*)B, 1]`
        joint, memory = super().act(timestep, memory, deterministic)
        return self.joint.env_actions(joint), memory  # joint action k -> the agents' actions
