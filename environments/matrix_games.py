"""Cooperative matrix games, natively batched in torch.

A game is a payoff table per step, indexed by the joint action: `payoffs[t, a_1, ..., a_N]`.
Every agent receives the team payoff. The episode terminates after `episode_length` steps (time is
part of the state through the one-hot step observation, so the end is a termination, not a
truncation). No library ships these games; they are small enough that a torch gather is the
whole simulator.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments.base import BatchedEnv, EnvSpec, EpisodeTracker, TimeStep


class MatrixGame(BatchedEnv):
    def __init__(self, payoffs: torch.Tensor, episode_length: int, name: str, n_envs: int, seed: int,
                 device="cpu", description=""):
        super().__init__(n_envs, seed, device)
        # payoffs: [episode_length or 1, A, ..., A]; a single table is reused at every step.
        if payoffs.shape[0] not in (1, episode_length):
            raise ValueError("payoffs must hold one table, or one per step")
        self.payoffs = payoffs.to(self.device, torch.float32)
        self.n_agents = payoffs.dim() - 1
        self.n_actions = payoffs.shape[1]
        self.episode_length = episode_length
        per_step = self.payoffs.flatten(1)
        steps = self.episode_length if per_step.shape[0] == 1 else 1
        bounds = (float(per_step.min(1).values.sum() * steps), float(per_step.max(1).values.sum() * steps))
        self.spec = EnvSpec(
            name=name,
            family="matrix",
            n_agents=self.n_agents,
            obs_dim=self.episode_length,
            state_dim=self.episode_length,
            n_actions=self.n_actions,
            episode_limit=self.episode_length,
            reward_mode="team",
            return_bounds=bounds,
            description=description,
        )
        self._flat_payoffs = per_step  # [tables, A^N]
        # Strides that turn a joint action [B, N] into a flat index of the table (row-major).
        self._strides = torch.tensor(
            [self.n_actions ** (self.n_agents - 1 - i) for i in range(self.n_agents)], device=self.device
        )
        self.t = torch.zeros(n_envs, dtype=torch.long, device=self.device)
        self.tracker = EpisodeTracker(n_envs, self.device)

    def _observe(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # One-hot step number; the post-terminal step T has the all-zero observation.
        state = torch.nn.functional.one_hot(t, self.episode_length + 1)[:, : self.episode_length].float()
        obs = state.unsqueeze(1).expand(-1, self.n_agents, -1)
        return obs, state

    def reset(self) -> TimeStep:
        self.t.zero_()
        self.tracker.reset()
        obs, state = self._observe(self.t)
        zeros = torch.zeros(self.n_envs, device=self.device, dtype=torch.bool)
        nan = torch.full((self.n_envs,), float("nan"), device=self.device)
        return TimeStep(obs, state, None, torch.zeros(self.n_envs, self.n_agents, device=self.device),
                        zeros, zeros.clone(), obs, state, nan, nan.clone())

    def step(self, actions: torch.Tensor) -> TimeStep:
        joint = (actions.long() * self._strides).sum(-1)
        table = self.t if self._flat_payoffs.shape[0] > 1 else torch.zeros_like(self.t)
        team_reward = self._flat_payoffs[table, joint]
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

    def model(self) -> dict[str, torch.Tensor]:
        """The exact game for tabular methods: the payoff table of each step and the horizon."""
        return {"payoffs": self.payoffs.clone(), "episode_length": torch.tensor(self.episode_length)}


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcpoMatrixGame(MatrixGame):
    """ACPO Table 1: 2 agents, 3 actions, one step; NEs (A,A), (B,B), (C,C); optimum (C,C)."""

    Params = NoParams
    PAYOFFS = [[5.0, -20.0, -20.0], [-20.0, 10.0, -20.0], [-20.0, -20.0, 20.0]]

    def __init__(self, n_envs: int, seed: int, device="cpu"):
        super().__init__(torch.tensor(self.PAYOFFS).unsqueeze(0), 1, "matrix/acpo-3x3", n_envs, seed, device,
                         description="ACPO Table 1 3x3 matrix game (one step)")


class MatrixTeamGameParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_agents: int = Field(3, ge=2, le=8)
    n_actions: int = Field(5, ge=2, le=32)
    episode_length: int = Field(10, ge=1)
    payoff_low: float = -10.0
    payoff_high: float = 20.0
    payoff_seed: int = Field(0, ge=0)
    table_per_step: bool = True

    @model_validator(mode="after")
    def _check(self):
        if self.payoff_high <= self.payoff_low:
            raise ValueError("payoff_high must exceed payoff_low")
        if self.n_actions**self.n_agents > 10_000_000:
            raise ValueError("n_actions ** n_agents must be at most 1e7 (the payoff table is dense)")
        return self


class MatrixTeamGame(MatrixGame):
    """CORA 6.1 Matrix Team Game: payoffs uniform in [low, high] drawn from the task seed."""

    Params = MatrixTeamGameParams

    def __init__(self, n_envs: int, seed: int, device="cpu", **params):
        p = MatrixTeamGameParams(**params)
        task_rng = torch.Generator().manual_seed(p.payoff_seed)  # the task, not the run, fixes the table
        tables = p.episode_length if p.table_per_step else 1
        shape = (tables,) + (p.n_actions,) * p.n_agents
        payoffs = p.payoff_low + (p.payoff_high - p.payoff_low) * torch.rand(shape, generator=task_rng)
        super().__init__(payoffs, p.episode_length, "matrix/cora-mtg", n_envs, seed, device,
                         description="CORA 6.1 Matrix Team Game")
