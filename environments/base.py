"""The batched environment contract (DESIGN.md, "The batched environment contract").

One object holds `n_envs` copies of a task. Every tensor is `[n_envs, n_agents, ...]` (or
`[n_envs, ...]` for the global state and episode flags). Finished copies reset themselves inside
`step`: the returned observation of such a copy is the first one of its next episode, and the
last observation/state of the finished episode are in `final_obs`/`final_state` (needed to
bootstrap values on truncation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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


class BatchedEnv(ABC):
    """Base class for every environment. Subclasses set `spec` and implement the three methods."""

    spec: EnvSpec

    def __init__(self, n_envs: int, seed: int, device: str | torch.device = "cpu"):
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.n_envs = n_envs
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

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

    def __init__(self, n_envs: int, device: torch.device):
        self.returns = torch.zeros(n_envs, device=device)
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
