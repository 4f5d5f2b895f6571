"""CORA 6.2 differential games: a sum of Gaussian fields over the agents' joint continuous action.

Each agent picks a scalar x_i in [-5, 5]; the team reward is (CORA Eq. 11, with the joint action in
N dimensions for the N-agent games of Fig. 2 and Fig. 8)

    R(x) = sum_k h_k * exp(-||x - c_k||^2 / sigma_k^2),   h_k in [5, 10],  sigma_k in [1, 2],

with centers, heights and widths drawn from the task seed (`field_seed`). The paper: "The
environment state itself does not evolve and can be regarded as a repeated single-step game." So
the observation carries nothing but the step: like the matrix games, a one-hot step number (the
single constant [1] for one-step episodes), with the all-zero vector after the last step, and the
episode end is a termination.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments.base import EnvSpec
from environments.repeated_game import RepeatedGame


class DifferentialGameParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_agents: int = Field(2, ge=1, le=16)
    n_fields: int = Field(5, ge=1, le=64, description="Gaussian fields (CORA: 'several'; not given)")
    height_low: float = Field(5.0, gt=0)
    height_high: float = Field(10.0, gt=0)
    sigma_low: float = Field(1.0, gt=0)
    sigma_high: float = Field(2.0, gt=0)
    center_range: float = Field(4.0, ge=0, description="centers uniform in [-center_range, center_range]^N")
    action_bound: float = Field(5.0, gt=0, description="every action lies in [-action_bound, action_bound]")
    field_seed: int = Field(14, ge=0, description="the task seed (default: that of differential/cora-2agent)")
    episode_length: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self):
        if self.height_high < self.height_low or self.sigma_high < self.sigma_low:
            raise ValueError("height_low <= height_high and sigma_low <= sigma_high are required")
        if self.center_range > self.action_bound:
            raise ValueError("center_range must not exceed action_bound (field centers lie in the action box)")
        return self


def _field_value(x: torch.Tensor, centers: torch.Tensor, heights: torch.Tensor, inv_sigma2: torch.Tensor):
    """R(x) `[B]` for joint actions `[B, N]`."""
    sq = (x.unsqueeze(1) - centers).square().sum(-1)  # [B, F]
    return torch.exp(-sq * inv_sigma2) @ heights


def field_maximum(centers: torch.Tensor, heights: torch.Tensor, sigmas: torch.Tensor, bound: float,
                  starts: torch.Tensor, iterations: int = 500) -> tuple[float, torch.Tensor]:
    """The highest value of R over the box, by mean-shift ascent (float64) from every center and `starts`.

    For a sum of Gaussians the fixed-point step x <- sum_k w_k c_k / sum_k w_k with
    w_k = h_k / sigma_k^2 * exp(-||x - c_k||^2 / sigma_k^2) never decreases R and stops at stationary
    points; every mode lies in the convex hull of the centers, which is inside the box.
    """
    c, h, inv = centers.double(), heights.double(), sigmas.double().pow(-2)
    x = torch.cat([c, starts.double()])
    for _ in range(iterations):
        w = h * inv * torch.exp(-(x.unsqueeze(1) - c).square().sum(-1) * inv)  # [M, F]
        x = (w @ c) / w.sum(-1, keepdim=True).clamp_min(1e-300)
    x = x.clamp(-bound, bound)
    values = _field_value(x, c, h, inv)
    best = int(values.argmax())
    return float(values[best]), x[best].float()


class DifferentialGame(RepeatedGame):
    Params = DifferentialGameParams
    # exp over [B, fields] rounds its last partial SIMD block in scalar code: a seed's rows would round by where they
    # fall in a merged batch (and the merge would save little: one cheap step per seed)
    SEED_MERGE = False

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = DifferentialGameParams(**params)
        super().__init__(n_envs, seed, device, n_agents=p.n_agents, episode_length=p.episode_length, name=name)
        self.params = p
        self.bound = p.action_bound
        task_rng = torch.Generator().manual_seed(p.field_seed)  # the task, not the run, fixes the fields
        centers = (2 * torch.rand(p.n_fields, p.n_agents, generator=task_rng) - 1) * p.center_range
        heights = p.height_low + (p.height_high - p.height_low) * torch.rand(p.n_fields, generator=task_rng)
        sigmas = p.sigma_low + (p.sigma_high - p.sigma_low) * torch.rand(p.n_fields, generator=task_rng)
        starts = (2 * torch.rand(256, p.n_agents, generator=task_rng) - 1) * p.action_bound
        self.max_reward, self.optimum = field_maximum(centers, heights, sigmas, p.action_bound, starts)
        self.centers = centers.to(self.device)
        self.heights = heights.to(self.device)
        self.sigmas = sigmas.to(self.device)
        self._inv_sigma2 = self.sigmas.pow(-2)
        self.spec = EnvSpec(
            name=self.name,
            family="differential",
            n_agents=p.n_agents,
            obs_dim=p.episode_length,
            state_dim=p.episode_length,
            n_actions=0,
            episode_limit=p.episode_length,
            reward_mode="team",
            action_dim=1,
            action_low=-p.action_bound,
            action_high=p.action_bound,
            # R > 0 everywhere, so 0 bounds it below; the top is the field's maximum at every step.
            return_bounds=(0.0, self.max_reward * p.episode_length),
            description=f"CORA 6.2 differential game, {p.n_agents} agents, {p.n_fields} Gaussian fields",
        )

    def reward(self, actions: torch.Tensor) -> torch.Tensor:
        """Team reward `[B]` of joint actions `[B, N]` or `[B, N, 1]` (clipped to the action box)."""
        x = actions.reshape(actions.shape[0], self.n_agents).to(self.device, torch.float32)
        return _field_value(x.clamp(-self.bound, self.bound), self.centers, self.heights, self._inv_sigma2)

    team_reward = reward  # the reward does not depend on the step
