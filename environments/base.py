"""The batched environment contract (docs/architecture.md, "Layers"), and the one base
every native task is written on.

One object holds `n_envs` copies of a task. Every tensor is `[n_envs, n_agents, ...]` (or
`[n_envs, ...]` for the global state and episode flags). Finished copies reset themselves inside
`step`: the returned observation of such a copy is the first one of its next episode, and the
last observation/state of the finished episode are in `final_obs`/`final_state` (needed to
bootstrap values on truncation).

- `BatchedEnv`: the contract the algorithms use (`reset`, `step`, `state_dict`). Library adapters that
  batch natively (VMAS, SMAX) or through worker processes (`adapters/process_pool.py`) implement it.
- `TaskEnv`: the base of every native task (JaxMARL's "explicit state, one auto-reset wrapper"). It owns
  the step counter, the time limit (truncation, or termination when time is observed), auto-reset of
  finished copies with `final_obs`/`final_state`, episode statistics and the complete state dict; a task
  writes only its dynamics (`_fresh`, `_transition`, `_observe`).
- A task's name is its registry key (`environments.make` passes it): `spec.name` never comes from
  parameters, so a run with `--set env.n_agents=3` on `coordination/bn-cg-2` is still that task, with
  another config hash.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from coopbench.base.errors import CoopbenchError

RewardMode = Literal["team", "private"]


@dataclass(frozen=True)
class EnvSpec:
    name: str
    family: str
    n_agents: int
    obs_dim: int
    state_dim: int
    n_actions: int  # discrete actions per agent (0 for continuous)
    episode_limit: int
    reward_mode: RewardMode = "team"
    action_dim: int = 0  # continuous action dimension per agent (0 for discrete)
    action_low: float = -1.0  # continuous actions: the box every component lies in; the env clips to it
    action_high: float = 1.0
    has_action_mask: bool = False
    # Known lowest/highest team return, when the task defines them (used for normalization).
    return_bounds: tuple[float, float] | None = None
    description: str = ""

    @property
    def discrete(self) -> bool:
        return self.n_actions > 0


@dataclass
class TimeStep:
    obs: torch.Tensor  # [B, N, obs_dim]
    state: torch.Tensor  # [B, state_dim]
    avail_actions: torch.Tensor | None  # [B, N, n_actions] bool, or None
    reward: torch.Tensor  # [B, N] per-agent reward of the transition that led here (0 after reset)
    terminated: torch.Tensor  # [B] bool
    truncated: torch.Tensor  # [B] bool
    final_obs: torch.Tensor  # [B, N, obs_dim]: last obs of the episode where done, else == obs
    final_state: torch.Tensor  # [B, state_dim]
    # Statistics of episodes that ended at this step (NaN where the copy did not finish).
    episode_return: torch.Tensor  # [B] team return: sum over agents and time of per-agent rewards / N for team tasks
    episode_length: torch.Tensor  # [B]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


class CopyRandom:
    """The random draws of an environment's copies, `[n_envs, *shape]`: every native task draws through here.

    Alone, one stream (the environment's `generator`) draws for all copies. In a merged seed batch
    (environments/seed_batch.py) one object holds the copies of K seeds, B each, and K streams (each seed's own
    generator) each draw for their seed's block: seed k draws exactly what its solo environment draws, in the same
    order. A draw the solo environment makes only when one of its copies needs it (a new episode where a copy
    finished, a tie between agents) is made inside `only(copies)`, so that a seed none of whose copies needs it
    does not draw (its rows hold zeros, which the caller leaves unused)."""

    def __init__(self, generators: Sequence[torch.Generator], copies_per_stream: int, device: torch.device):
        self.generators = list(generators)
        self.copies = copies_per_stream
        self.device = device
        self._skip: list[bool] | None = None

    @contextmanager
    def only(self, copies: torch.Tensor) -> Iterator[None]:
        """Inside, draw only for the streams of which some copy in `copies` (`[n_envs]` bool) is True."""
        if len(self.generators) == 1:
            yield
            return
        self._skip = (~copies.view(len(self.generators), -1).any(1)).tolist()
        try:
            yield
        finally:
            self._skip = None

    def _draw(self, draw: Callable[[tuple[int, ...], torch.Generator], torch.Tensor], shape: tuple[int, ...],
              dtype: torch.dtype) -> torch.Tensor:
        size = (self.copies, *shape)
        if len(self.generators) == 1:
            return draw(size, self.generators[0])
        skip = self._skip or [False] * len(self.generators)
        return torch.cat([torch.zeros(size, dtype=dtype, device=self.device) if skipped else draw(size, generator)
                          for generator, skipped in zip(self.generators, skip, strict=True)])

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniforms in [0, 1) `[n_envs, *shape]`."""
        return self._draw(lambda size, g: torch.rand(size, generator=g, device=self.device), shape,
                          torch.get_default_dtype())

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normals `[n_envs, *shape]`."""
        return self._draw(lambda size, g: torch.randn(size, generator=g, device=self.device), shape,
                          torch.get_default_dtype())

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers in [low, high) `[n_envs, *shape]`."""
        return self._draw(lambda size, g: torch.randint(low, high, size, generator=g, device=self.device), shape,
                          torch.long)


class BatchedEnv(ABC):
    """Base class for every environment. Subclasses set `spec` and implement `reset` and `step`.

    `name` is the task's registry key (`environments.make` passes it); built directly, a class with a
    single registered task uses its `NAME`."""

    spec: EnvSpec
    NAME = ""

    def __init__(self, n_envs: int, seed: int, device: str | torch.device = "cpu", name: str | None = None):
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.name = name or self.NAME
        self.n_envs = n_envs
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.random = CopyRandom([self.generator], n_envs, self.device)  # a native task's draws

    @abstractmethod
    def reset(self) -> TimeStep:
        """Reset every copy and return the first TimeStep (zero rewards, no episode ended)."""

    @abstractmethod
    def step(self, actions: torch.Tensor) -> TimeStep:
        """Advance every copy by one joint action `[B, N]` (discrete) or `[B, N, action_dim]`."""

    def first_timestep(self, obs: torch.Tensor, state: torch.Tensor, avail: torch.Tensor | None = None,
                       extras: dict[str, torch.Tensor] | None = None) -> TimeStep:
        """The TimeStep `reset` returns: zero rewards, no copy done, final views equal to the first ones,
        NaN episode statistics."""
        no = torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)
        nan = torch.full((self.n_envs,), float("nan"), device=self.device)
        reward = torch.zeros(self.n_envs, self.spec.n_agents, device=self.device)
        return TimeStep(obs, state, avail, reward, no, no.clone(), obs, state, nan, nan.clone(), extras or {})

    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit after `load_state_dict` (for checkpoints)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def close(self) -> None:  # noqa: B027 - optional hook: only library adapters hold resources
        """Release library resources (processes, simulators)."""

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """Optional: a picture of copy `index` as it is now, `[H, W, 3]` uint8 (same size every call).

        `coopbench render` records these; a task without a renderer raises this CoopbenchError."""
        raise CoopbenchError(f"{self.spec.name} cannot render (no picture is defined for this task)",
                             "render a task that can: the grid worlds, the particle tasks, MPE, VMAS, MaMuJoCo "
                             "(docs: coopbench render --help); or drop --out to print the returns only")


def team_return(reward: torch.Tensor, reward_mode: RewardMode) -> torch.Tensor:
    """Per-step team reward `[B]` from per-agent rewards `[B, N]`.

    Team tasks give every agent the team reward, so the team reward is any agent's (the mean);
    private-reward tasks sum the agents' own rewards (AS 5.1).
    """
    return reward.mean(dim=-1) if reward_mode == "team" else reward.sum(dim=-1)


class EpisodeTracker:
    """Running team return and length of every copy; reports and clears them when copies finish."""

    def __init__(self, n_envs: int, device: torch.device, dtype: torch.dtype = torch.float32):
        # float64 where the rewards come as Python floats (the process pool's libraries)
        self.returns = torch.zeros(n_envs, device=device, dtype=dtype)
        self.lengths = torch.zeros(n_envs, dtype=torch.long, device=device)

    def update(self, team_reward: torch.Tensor, done: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # in place, few ops: this runs on every step of every environment
        self.returns += team_reward
        self.lengths += 1
        running = ~done
        finished_return = self.returns.masked_fill(running, float("nan"))
        finished_length = self.lengths.to(self.returns.dtype).masked_fill_(running, float("nan"))
        self.returns.masked_fill_(done, 0.0)
        self.lengths.masked_fill_(done, 0)
        return finished_return, finished_length

    def reset(self) -> None:
        self.returns.zero_()
        self.lengths.zero_()

    def state_dict(self) -> dict:
        return {"returns": self.returns.clone(), "lengths": self.lengths.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.returns.copy_(state["returns"])
        self.lengths.copy_(state["lengths"])


def where_done(done: torch.Tensor, fresh: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """`fresh` for finished copies (`done` `[B]`), `current` elsewhere; any trailing shape."""
    return torch.where(done.view(-1, *([1] * (current.dim() - 1))), fresh, current)


class TaskEnv(BatchedEnv):
    """The base of every native task: the bookkeeping is here, a task writes only its dynamics.

    A task sets `spec` (with `name=self.name`), lists its per-copy state tensors (attributes, first dim B)
    in `STATE_KEYS`, and implements:
    - `_fresh()`: `{key: tensor}` of a new episode for every copy (only the finished copies' rows are
      kept, so draw for all copies: the generator's consumption then never depends on which copies
      finished);
    - `_transition(actions)`: advance every copy; return `(reward, terminated)` or `(reward, terminated,
      info)`: the reward is `[B]` for a team reward (every agent gets it, and it is the team return's
      increment) or `[B, N]` per agent; `terminated` `[B]` bool, the true end of the task (None: never);
      `info` a dict of per-step `TimeStep.extras` (e.g. collisions);
    - `_observe()`: `(obs [B, N, obs_dim], state [B, state_dim], avail [B, N, A] bool or None)` of the
      current state;
    - optionally `_extras()`: `TimeStep.extras` that describe the current state (e.g. neighbourhoods),
      also in the first TimeStep.
    Every random draw goes through `self.random` (`CopyRandom`: `rand`, `randn`, `randint`, `[n_envs, ...]`), never
    `self.generator` directly, and a draw made only when some copy needs it sits inside `self.random.only(copies)`:
    then a seed batch can step several seeds' copies as one object of this task (environments/seed_batch.py).

    The step counter `t` is kept here. Reaching `episode_length` is a truncation unless the task sets
    `TIME_IN_OBS = True` (the step number is observed, so the end is part of the MDP). Episode statistics
    use the team reward (`team_return` of per-agent rewards with the spec's reward mode). `state_dict`
    holds the generator, `t`, the tracker and every `STATE_KEYS` tensor: a restored task continues
    bit for bit.
    """

    STATE_KEYS: tuple[str, ...] = ()
    TIME_IN_OBS = False
    # A seed batch steps the K seeds' copies as one object of this task (environments/seed_batch.py): rows are
    # computed independently of how many there are (tests/test_seed_batch_env.py checks every task)
    SEED_MERGE = True

    def __init__(self, n_envs: int, seed: int, device, episode_length: int, name: str | None = None):
        super().__init__(n_envs, seed, device, name)
        if not self.name:
            raise ValueError(f"{type(self).__name__} serves several tasks: build it with environments.make(<task>) "
                             "or pass name=<registry key>")
        self.episode_length = episode_length
        self.t = torch.zeros(n_envs, dtype=torch.long, device=self.device)
        self.tracker = EpisodeTracker(n_envs, self.device)

    # --- what a task writes ---------------------------------------------------------------------------
    @abstractmethod
    def _fresh(self) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def _transition(self, actions: torch.Tensor) -> tuple: ...

    @abstractmethod
    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...

    def _extras(self) -> dict[str, torch.Tensor]:
        return {}

    # --- the bookkeeping ------------------------------------------------------------------------------
    def _start(self, done: torch.Tensor | None = None) -> None:
        """Begin new episodes: in every copy (`done` None) or in the copies where `done`."""
        for key, value in self._fresh().items():
            setattr(self, key, value if done is None else where_done(done, value, getattr(self, key)))
        self.t = torch.zeros_like(self.t) if done is None else torch.where(done, torch.zeros_like(self.t), self.t)

    def reset(self) -> TimeStep:
        self.tracker.reset()
        self._start()
        obs, state, avail = self._observe()
        return self.first_timestep(obs, state, avail, self._extras())

    def step(self, actions: torch.Tensor) -> TimeStep:
        reward, terminated, *info = self._transition(actions.to(self.device))
        self.t = self.t + 1
        limit = self.t >= self.episode_length
        if terminated is None:
            terminated = torch.zeros_like(limit)
        if self.TIME_IN_OBS:
            terminated, truncated = terminated | limit, torch.zeros_like(limit)
        else:
            truncated = limit & ~terminated
        done = terminated | truncated
        if reward.dim() == 1:  # the team reward: every agent's, and the team return's increment
            team, reward = reward, reward.unsqueeze(1).expand(-1, self.spec.n_agents)
        else:
            team = team_return(reward, self.spec.reward_mode)
        obs, state, avail = self._observe()
        episode_return, episode_length = self.tracker.update(team, done)
        final_obs, final_state = obs, state
        if bool(done.any()):
            with self.random.only(done):  # (in a merged seed batch: the seeds with a finished copy draw)
                self._start(done)
            obs, state, avail = self._observe()
        extras = self._extras()
        if info:
            extras = {**extras, **info[0]}
        return TimeStep(obs, state, avail, reward, terminated, truncated, final_obs, final_state,
                        episode_return, episode_length, extras)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "t": self.t.clone(), "tracker": self.tracker.state_dict(),
                **{key: getattr(self, key).clone() for key in self.STATE_KEYS}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.t = state["t"].clone().to(self.device)
        self.tracker.load_state_dict(state["tracker"])
        for key in self.STATE_KEYS:
            setattr(self, key, state[key].clone().to(self.device))
