"""Games whose only state is the step number: the matrix games (CORA 6.1, ACPO Table 1) and CORA's
differential games ("a repeated single-step game", CORA 6.2). A subclass supplies the team reward
of a joint action; the clock, the one-hot step observation, episode ends and statistics are here.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from environments.base import BatchedEnv, EpisodeTracker, TimeStep


def step_one_hot(t: torch.Tensor, episode_length: int) -> torch.Tensor:
    """One-hot step number `[B, T]`; the post-terminal step T has the all-zero vector."""
    return torch.nn.functional.one_hot(t, episode_length + 1)[:, :episode_length].float()


class RepeatedGame(BatchedEnv):
    """Every agent sees the one-hot step and gets the team reward; the episode terminates after
    `episode_length` steps (time is in the state, so the end is a termination, not a truncation)."""

    def __init__(self, n_envs: int, seed: int, device, n_agents: int, episode_length: int):
        super().__init__(n_envs, seed, device)
        self.n_agents = n_agents
        self.episode_length = episode_length
        self.t = torch.zeros(n_envs, dtype=torch.long, device=self.device)
        self.tracker = EpisodeTracker(n_envs, self.device)

    @abstractmethod
    def team_reward(self, actions: torch.Tensor) -> torch.Tensor:
        """Team reward `[B]` of joint actions `[B, N]` (or `[B, N, 1]`) at the current steps `self.t`."""

    def _observe(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = step_one_hot(t, self.episode_length)
        return state.unsqueeze(1).expand(-1, self.n_agents, -1), state

    def reset(self) -> TimeStep:
        self.t.zero_()
        self.tracker.reset()
        obs, state = self._observe(self.t)
        return self.first_timestep(obs, state)

    def step(self, actions: torch.Tensor) -> TimeStep:
        team_reward = self.team_reward(actions)
        self.t = self.t + 1
        terminated = self.t >= self.episode_length
        final_obs, final_state = self._observe(self.t)
        episode_return, episode_length = self.tracker.update(team_reward, terminated)
        self.t = torch.where(terminated, torch.zeros_like(self.t), self.t)
        obs, state = self._observe(self.t)
        reward = team_reward.unsqueeze(1).expand(-1, self.n_agents)
        return TimeStep(obs, state, None, reward, terminated, torch.zeros_like(terminated),
                        final_obs, final_state, episode_return, episode_length)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "t": self.t.clone(), "tracker": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.t.copy_(state["t"])
        self.tracker.load_state_dict(state["tracker"])
