"""Games whose only state is the step number: the matrix games (CORA 6.1, ACPO Table 1) and CORA's
differential games ("a repeated single-step game", CORA 6.2). A subclass supplies the team reward
of a joint action; the one-hot step observation is here, the clock and episode ends in `TaskEnv`.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from environments.base import TaskEnv


def step_one_hot(t: torch.Tensor, episode_length: int) -> torch.Tensor:
    """One-hot step number `[B, T]`; the post-terminal step T has the all-zero vector."""
    return torch.nn.functional.one_hot(t, episode_length + 1)[:, :episode_length].float()


class RepeatedGame(TaskEnv):
    """Every agent sees the one-hot step and gets the team reward; the episode terminates after
    `episode_length` steps (time is in the state, so the end is a termination, not a truncation)."""

    TIME_IN_OBS = True

    def __init__(self, n_envs: int, seed: int, device, n_agents: int, episode_length: int, name: str | None = None):
        super().__init__(n_envs, seed, device, episode_length, name)
        self.n_agents = n_agents

    @abstractmethod
    def team_reward(self, actions: torch.Tensor) -> torch.Tensor:
        """Team reward `[B]` of joint actions `[B, N]` (or `[B, N, 1]`) at the current steps `self.t`."""

    def _views(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = step_one_hot(t, self.episode_length)
        return state.unsqueeze(1).expand(-1, self.n_agents, -1), state

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        return *self._views(self.t), None

    def _fresh(self) -> dict[str, torch.Tensor]:
        return {}  # the step number, which the base resets, is the whole state

    def _transition(self, actions: torch.Tensor):
        return self.team_reward(actions), None
