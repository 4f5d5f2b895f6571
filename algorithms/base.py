"""The algorithm contract the run driver talks to."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pydantic import BaseModel

from environments.base import BatchedEnv, EnvSpec, TimeStep


@dataclass
class IterationResult:
    timestep: TimeStep  # where collection stopped; the next iteration continues from it
    env_steps: int  # environment steps consumed (summed over batched copies)
    episode_returns: torch.Tensor  # team returns of training episodes that finished, [K]
    losses: dict[str, float] = field(default_factory=dict)
    # A seed-batched method (`n_seeds` K, docs/architecture.md "Seed batches"): each seed's own result (its env
    # steps, returns, losses); the fields above are then the batch's (all copies, all returns, mean losses).
    seeds: list[IterationResult] = field(default_factory=list)


def seed_results(timestep: TimeStep, returns: list[torch.Tensor], ended: list[torch.Tensor], n_seeds: int,
                 steps_per_seed: int, losses: dict[str, list[float]] | None = None) -> IterationResult:
    """The driver's result of an iteration over seed-major copies: `returns` and `ended` hold each step's
    `episode_return` and `done` `[K * B]`; each seed's finished episodes are listed in time order, then copy order
    (as its solo run lists them), with its `steps_per_seed` and its entry of every `losses` list (`[K]` each; the
    batch's losses are their means). One seed: its own result."""
    returns_k = torch.stack(returns).cpu().view(len(returns), n_seeds, -1).transpose(0, 1)
    ended_k = torch.stack(ended).cpu().view(len(ended), n_seeds, -1).transpose(0, 1)
    losses = losses or {}
    parts = [IterationResult(timestep, steps_per_seed, r[d], {name: v[k] for name, v in losses.items()})
             for k, (r, d) in enumerate(zip(returns_k, ended_k, strict=True))]
    if n_seeds == 1:
        return parts[0]
    return IterationResult(timestep, n_seeds * steps_per_seed, torch.cat([p.episode_returns for p in parts]),
                           {name: sum(v) / len(v) for name, v in losses.items()}, parts)


class Algorithm(ABC):
    """A method: its constructor assembles its parts (algorithms/blocks); the registry names it and its family."""

    Config: ClassVar[type[BaseModel]]  # hyperparameters, validated (extra keys forbidden)

    def __init__(self, spec: EnvSpec, config: BaseModel, device: torch.device):
        self.spec = spec
        self.config = config
        self.device = device

    @property
    @abstractmethod
    def n_envs(self) -> int:
        """How many batched environment copies training collects from."""

    @property
    @abstractmethod
    def steps_per_iteration(self) -> int:
        """Environment steps (summed over copies) one `train_iteration` consumes."""

    def set_budget(self, total_env_steps: int) -> None:  # noqa: B027 - optional: only schedules need it
        """The run's budget, told once before training (for schedules such as learning-rate annealing)."""

    @abstractmethod
    def initial_memory(self, n_envs: int) -> torch.Tensor | None:
        """What `act` remembers between steps for `n_envs` fresh copies (None when it is memoryless)."""

    @abstractmethod
    def act(self, timestep: TimeStep, memory: torch.Tensor | None,
            deterministic: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Joint actions `[B, N]` for every copy (greedy when `deterministic`) and the next memory.

        Where `timestep.done`, the copy's observation starts a new episode: its memory is cleared first.
        """

    @abstractmethod
    def train_iteration(self, env: BatchedEnv, timestep: TimeStep) -> IterationResult:
        """Collect experience from `env` starting at `timestep`, then update."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Networks and optimizer states: tensors and plain containers only (weights_only loads)."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...
