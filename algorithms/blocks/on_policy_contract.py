"""The driver's contract (algorithms/base.py) for a method on the PPO backbone, written once.

A method's constructor assembles its parts as `self.actor` (Policy), `self.critic` (ValueCritic),
`self.collector` (RolloutCollector) and `self.schedule` (LinearAnnealing), plus any of its own in
`self.extra_parts` (each with state_dict/load_state_dict); it writes `policy_step` (how its agents act)
and `update` (its paper's update on a collected rollout). This class only wires those to the driver:
it decides nothing about the method (no hooks beyond the two the method must write).

Seed batches (docs/architecture.md): a method that takes `n_seeds` in its constructor, passes it on to
`super().__init__` and builds its parts with `n_seeds=self.n_seeds` trains K seeds at once (`n_seeds=1` is one
seed, on the same code path); `n_seeds` None (the default) is a method not converted yet, which the driver runs
one seed per process. `n_envs` stays per seed, `initial_memory(n)` is for n copies per seed, and `act` takes the
environment's K*n seed-major copies.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import torch

from algorithms.base import Algorithm, IterationResult
from algorithms.blocks.gae import standardize
from algorithms.blocks.on_policy_collection import Rollout
from algorithms.blocks.parts import load_parts, state_of
from algorithms.blocks.policy import PolicyStep
from algorithms.blocks.rollout import RolloutStorage, update_batch
from environments.base import BatchedEnv, EnvSpec, TimeStep
from environments.seed_batch import seed_view


class OnPolicyContract(Algorithm):
    extra_parts: tuple = ()

    def __init__(self, spec: EnvSpec, config, device: torch.device, n_seeds: int | None = None):
        super().__init__(spec, config, device)
        if n_seeds is not None and n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
        self.n_seeds = n_seeds

    @abstractmethod
    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        """Every agent acts at `timestep` (memory cleared where `timestep.done`)."""

    @abstractmethod
    def update(self, storage: RolloutStorage) -> dict[str, float]:
        """The method's update on one collected rollout; returns its statistics."""

    def train_iteration(self, env: BatchedEnv, timestep: TimeStep) -> IterationResult:
        rollout = self.collect(env, timestep)
        return rollout.result(self.update(rollout.storage))

    def collect(self, env: BatchedEnv, timestep: TimeStep) -> Rollout:
        return self.collector.collect(env, timestep)

    @property
    def n_envs(self) -> int:
        return self.config.n_envs

    @property
    def steps_per_iteration(self) -> int:
        return self.config.rollout_length * self.config.n_envs

    def set_budget(self, total_env_steps: int) -> None:
        self.schedule.set_budget(total_env_steps)

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        return self.actor.initial_memory(n_envs)

    @torch.no_grad()
    def act(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.n_seeds is None:
            step = self.policy_step(timestep, memory, deterministic)
            return step.actions, step.memory
        step = self.policy_step(seed_view(timestep, self.n_seeds), memory, deterministic)
        return step.actions.flatten(0, 1), step.memory

    def state_dict(self) -> dict:
        return state_of(self.actor, self.critic, self.collector, self.schedule, *self.extra_parts)

    def load_state_dict(self, state: dict) -> None:
        load_parts(state, self.actor, self.critic, self.collector, self.schedule, *self.extra_parts)

    def backbone_update(self, storage: RolloutStorage, advantages: torch.Tensor, returns: torch.Tensor,
                        update_actors: Callable[[dict], dict[str, float]],
                        shape: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
        """The PPO backbone's update once a method has its advantages and value targets: ValueNorm's running
        statistics (Yu et al. 2022), standardized advantages (then the method's `shape`, if any, for the actors
        only), the chunked batch, the learning-rate schedule, the critic on the returns, then `update_actors`."""
        cfg = self.config
        self.critic.normalizer.update(returns)
        if cfg.normalize_advantages:
            advantages = standardize(advantages, self.n_seeds)  # each seed over its own batch
        if shape is not None:
            advantages = shape(advantages)
        batch = update_batch(storage, advantages, returns, cfg, seeded=self.n_seeds is not None)
        self.schedule.apply((self.actor.optimizer, cfg.lr_actor), (self.critic.optimizer, cfg.lr_critic))
        losses = self.critic.update(batch, cfg)
        losses.update(update_actors(batch))
        self.schedule.advance(self.steps_per_iteration)
        return losses
