"""The environment of a seed batch (docs/architecture.md, "Seed batches"): K copies of a task's batched
environment, one per seed, seen as one `BatchedEnv` of K*B copies, seed-major (copies k*B .. (k+1)*B - 1 are
seed k's). Each seed's environment is exactly the one its solo run builds (`make(task, n_envs=B, seed=k)`), so
its random stream, and therefore every observation it produces, is the solo run's.

Stepping loops over the K environments: a native task draws from one torch.Generator per object (one stream), and
giving one object K streams would change how every task draws. The loop is K calls per step; K = 1 returns the
environment's own TimeStep untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import torch

from environments.base import BatchedEnv, EnvSpec, TimeStep

_FIELDS = tuple(f.name for f in fields(TimeStep))  # read once: `fields()` per step is a measurable cost


def _map(timestep: TimeStep, fn) -> TimeStep:
    values = {}
    for name in _FIELDS:
        value = getattr(timestep, name)
        if name == "extras":
            values[name] = {key: fn(x) for key, x in value.items()}
        else:
            values[name] = None if value is None else fn(value)
    return TimeStep(**values)


def seed_view(timestep: TimeStep, n_seeds: int) -> TimeStep:
    """The TimeStep of K*B seed-major copies with every tensor viewed `[K, B, ...]` (no copy)."""
    return _map(timestep, lambda x: x.unflatten(0, (n_seeds, -1)))


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """The parts along dim 0, keeping a broadcast layout: where every part is expanded along a dim (stride 0, e.g. a
    team reward `[B]` seen as `[B, N]`), so is the result. Why: a reduction over such a dim (the team reward's mean
    over agents) rounds differently on an expanded row than on a copied one, and a batch seed must see its solo run's
    layout to compute its solo run's values bitwise."""
    expanded = [d for d in range(1, parts[0].dim()) if all(p.stride(d) == 0 for p in parts)]
    if not expanded:
        return torch.cat(parts)
    base = torch.cat([p[tuple(slice(0, 1) if d in expanded else slice(None) for d in range(p.dim()))] for p in parts])
    return base.expand(-1, *parts[0].shape[1:])


def join(timesteps: list[TimeStep]) -> TimeStep:
    """The K seeds' TimeSteps as one of K*B copies (seed-major)."""
    if len(timesteps) == 1:
        return timesteps[0]
    first = timesteps[0]
    values = {}
    for name in _FIELDS:
        parts = [getattr(t, name) for t in timesteps]
        if name == "extras":
            values[name] = {key: _cat([p[key] for p in parts]) for key in first.extras}
        else:
            values[name] = None if parts[0] is None else _cat(parts)
    return TimeStep(**values)


def split(timestep: TimeStep, n_seeds: int) -> list[TimeStep]:
    """One TimeStep per seed, from one of K*B seed-major copies."""
    if n_seeds == 1:
        return [timestep]
    return [_map(timestep, lambda x, k=k: x.unflatten(0, (n_seeds, -1))[k]) for k in range(n_seeds)]


class SeedBatch(BatchedEnv):
    """K environments, one per seed, as one of K*B copies. `envs[k]` is seed k's (its state is in seed k's
    checkpoint)."""

    def __init__(self, envs: list[BatchedEnv]):  # not BatchedEnv.__init__: its generator would be unused
        if not envs or len({e.n_envs for e in envs}) != 1:
            raise ValueError("a seed batch needs one or more environments with the same number of copies")
        self.envs = envs
        self.spec: EnvSpec = envs[0].spec
        self.name = envs[0].name
        self.n_seeds = len(envs)
        self.copies_per_seed = envs[0].n_envs
        self.n_envs = self.n_seeds * self.copies_per_seed
        self.device = envs[0].device

    def __getattr__(self, name: str):
        # The exact model (`env.model()`, the tabular planners' input) is the game's, the same for every seed; it is
        # the one task-specific method an algorithm calls. Anything else is per seed: not forwarded.
        if name == "model" and "envs" in self.__dict__:
            return getattr(self.envs[0], name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def reset(self) -> TimeStep:
        return join([env.reset() for env in self.envs])

    def step(self, actions: torch.Tensor, active: Sequence[bool] | None = None) -> TimeStep:
        """Every seed's environment steps on its block of `actions` (K*B rows). With `active` (one flag per seed),
        only the active seeds' do: the others are not touched (no step, no random draw; a method whose seeds finish
        a round at different steps lets the finished ones wait) and the TimeStep holds the active seeds' copies
        only, seed-major; `actions` still has every seed's rows (the waiting seeds' are ignored)."""
        if active is None and self.n_seeds == 1:
            return self.envs[0].step(actions)
        on = [True] * self.n_seeds if active is None else active
        return join([env.step(a) for env, a, k in zip(self.envs, actions.chunk(self.n_seeds), on, strict=True) if k])

    def state_dict(self) -> dict:
        raise TypeError("a seed batch is checkpointed per seed: save envs[k].state_dict() in seed k's checkpoint")

    def load_state_dict(self, state: dict) -> None:
        raise TypeError("a seed batch is restored per seed: envs[k].load_state_dict(seed k's state)")

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def render_rgb(self, index: int = 0):
        return self.envs[index // self.copies_per_seed].render_rgb(index % self.copies_per_seed)
