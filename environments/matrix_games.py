"""Cooperative matrix games, natively batched in torch.

A game is a payoff table per step, indexed by the joint action: `payoffs[t, a_1, ..., a_N]`.
Every agent receives the team payoff. The episode terminates after `episode_length` steps (time is
part of the state through the one-hot step observation, so the end is a termination, not a
truncation). No library ships these games; they are small enough that a torch gather is the
whole simulator. `model()` gives the exact game (`TabularModel`) to the tabular methods.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments.base import EnvSpec
from environments.repeated_game import RepeatedGame
from environments.tabular_model import TabularModel


class MatrixGame(RepeatedGame):
    def __init__(self, payoffs: torch.Tensor, episode_length: int, name: str | None, n_envs: int, seed: int,
                 device="cpu", description=""):
        # payoffs: [episode_length or 1, A, ..., A]; a single table is reused at every step.
        if payoffs.shape[0] not in (1, episode_length):
            raise ValueError("payoffs must hold one table, or one per step")
        super().__init__(n_envs, seed, device, n_agents=payoffs.dim() - 1, episode_length=episode_length, name=name)
        self.payoffs = payoffs.to(self.device, torch.float32)
        self.n_actions = payoffs.shape[1]
        per_step = self.payoffs.flatten(1)
        steps = self.episode_length if per_step.shape[0] == 1 else 1
        bounds = (float(per_step.min(1).values.sum() * steps), float(per_step.max(1).values.sum() * steps))
        self.spec = EnvSpec(
            name=self.name,
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

    def team_reward(self, actions: torch.Tensor) -> torch.Tensor:
        joint = (actions.long() * self._strides).sum(-1)
        table = self.t if self._flat_payoffs.shape[0] > 1 else torch.zeros_like(self.t)
        return self._flat_payoffs[table, joint]

    def model(self) -> TabularModel:
        """The exact game: states are the steps 0..T-1 plus an absorbing terminal state T.

        Step t moves to t+1 whatever the joint action; the reward of joint action j at step t is
        that step's payoff; the terminal state's observation is the all-zero final observation.
        """
        steps = self.episode_length
        n_joint = self._flat_payoffs.shape[1]
        transitions = torch.zeros(steps + 1, n_joint, steps + 1)
        nxt = torch.arange(1, steps + 2).clamp(max=steps)
        transitions[torch.arange(steps + 1), :, nxt] = 1.0
        table = self._flat_payoffs.cpu().expand(steps, -1)
        team = torch.cat([table, torch.zeros(1, n_joint)])  # [S, J]
        t = torch.arange(steps + 1)
        obs, state = self._views(t.to(self.device))
        initial = torch.zeros(steps + 1)
        initial[0] = 1.0
        terminal = t == steps
        return TabularModel(initial, transitions, team.unsqueeze(-1).expand(-1, -1, self.n_agents).clone(), steps,
                            (self.n_actions,) * self.n_agents, obs.cpu().clone(), state.cpu(), terminal)


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcpoMatrixGame(MatrixGame):
    """ACPO Table 1: 2 agents, 3 actions, one step; NEs (A,A), (B,B), (C,C); optimum (C,C)."""

    Params = NoParams
    NAME = "matrix/acpo-3x3"
    PAYOFFS = [[5.0, -20.0, -20.0], [-20.0, 10.0, -20.0], [-20.0, -20.0, 20.0]]

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None):
        super().__init__(torch.tensor(self.PAYOFFS).unsqueeze(0), 1, name, n_envs, seed, device,
                         description="ACPO Table 1 3x3 matrix game (one step)")
        self.params = NoParams()


class MatrixLayoutParams(BaseModel):
    """Agents, actions and steps of the CORA 6.1 matrix games, and the task seed of their tables."""

    model_config = ConfigDict(extra="forbid")
    n_agents: int = Field(3, ge=2, le=8)
    n_actions: int = Field(5, ge=2, le=32)
    episode_length: int = Field(10, ge=1)
    payoff_seed: int = Field(0, ge=0)
    table_per_step: bool = True

    @model_validator(mode="after")
    def _check_table_size(self):
        if self.n_actions**self.n_agents > 10_000_000:
            raise ValueError("n_actions ** n_agents must be at most 1e7 (the payoff table is dense)")
        return self

    def table_shape(self) -> tuple[int, ...]:
        return (self.episode_length if self.table_per_step else 1,) + (self.n_actions,) * self.n_agents


class MatrixTeamGameParams(MatrixLayoutParams):
    payoff_low: float = -10.0
    payoff_high: float = 20.0

    @model_validator(mode="after")
    def _check_payoff_range(self):
        if self.payoff_high <= self.payoff_low:
            raise ValueError("payoff_high must exceed payoff_low")
        return self


class MatrixTeamGame(MatrixGame):
    """CORA 6.1 Matrix Team Game: payoffs uniform in [low, high] drawn from the task seed."""

    Params = MatrixTeamGameParams
    NAME = "matrix/cora-mtg"

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = MatrixTeamGameParams(**params)
        task_rng = torch.Generator().manual_seed(p.payoff_seed)  # the task, not the run, fixes the table
        payoffs = p.payoff_low + (p.payoff_high - p.payoff_low) * torch.rand(p.table_shape(), generator=task_rng)
        super().__init__(payoffs, p.episode_length, name, n_envs, seed, device,
                         description="CORA 6.1 Matrix Team Game")
        self.params = p


class MultiPeakParams(MatrixLayoutParams):
    n_peaks: int = Field(5, ge=1, description="peaks per payoff table, one of them the global optimum")
    noise_low: float = -10.0
    noise_high: float = 0.0
    local_peak_low: float = 5.0
    local_peak_high: float = 15.0
    global_peak: float = 20.0

    @model_validator(mode="after")
    def _check_peaks(self):
        if not self.noise_low <= self.noise_high < self.local_peak_low <= self.local_peak_high < self.global_peak:
            raise ValueError("need noise_low <= noise_high < local_peak_low <= local_peak_high < global_peak "
                             "(peaks stand above the noise, exactly one global optimum)")
        if self.n_peaks > self.n_actions**self.n_agents:
            raise ValueError("n_peaks must be at most n_actions ** n_agents (one joint action per peak)")
        return self


def multi_peak_tables(p: MultiPeakParams) -> torch.Tensor:
    """Noise uniform in [noise_low, noise_high]; per table, `n_peaks` distinct joint actions get peaks:
    the first the global value, the rest uniform in [local_peak_low, local_peak_high]. All from the task seed."""
    task_rng = torch.Generator().manual_seed(p.payoff_seed)
    shape = p.table_shape()
    flat = p.noise_low + (p.noise_high - p.noise_low) * torch.rand(shape[0], math.prod(shape[1:]), generator=task_rng)
    positions = torch.rand(flat.shape, generator=task_rng).argsort(-1)[:, : p.n_peaks]  # distinct cells per table
    local = p.local_peak_low + (p.local_peak_high - p.local_peak_low) * torch.rand(
        shape[0], p.n_peaks - 1, generator=task_rng)
    peaks = torch.cat([torch.full((shape[0], 1), p.global_peak), local], dim=1)
    return flat.scatter(1, positions, peaks).view(shape)


class MultiPeakMatrixGame(MatrixGame):
    """CORA 6.1 Multi-Peak Matrix Team Game: negative background noise with `n_peaks` reward peaks,
    exactly one of them (the highest) the global optimum; same layout as the Matrix Team Game."""

    Params = MultiPeakParams

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = MultiPeakParams(**params)
        super().__init__(multi_peak_tables(p), p.episode_length, name, n_envs, seed,
                         device, description=f"CORA 6.1 Multi-Peak Matrix Team Game, {p.n_peaks} peaks")
        self.params = p
