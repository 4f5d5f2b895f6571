"""AS 5.1 Cooperative Predation: N predators on a line chase one prey; a per-step N-player
cooperate-or-defect dilemma with private rewards; natively batched in torch.

What AS states: positions of the prey `x_tar` and of the agents are random in X = [0, 30] each
episode; the state is `s_t = [x_1 - x_tar, ..., x_N - x_tar]` (continuous); actions {-1, +1} move
left/right; "all predators cooperating (approaching the prey) results in each gaining a reward of
-1. Universal defection (not approaching) leads to a -3 reward for each predator. In mixed
scenarios, predators actively pursuing the prey receive a -4 reward, while non-participating
predators gain 0"; neighbours are the agents "within a normalized distance of 0.1"; 30 steps; 8
agents (20 and 30 for the scalability study). AS 5.3 (Fig. 7) calls the two actions "moving
towards the target" and "moving away from the target".

Our choices where the text is silent:
- An agent approaches when its move points towards the prey (`action * (x_tar - x_i) > 0`), judged
  at its position before the move; the rewards above are paid every step from that classification.
- The prey does not move; agents move by exactly 1 and are clipped to [0, 30]; nothing ends an
  episode early (no capture rule is given), so every episode lasts 30 steps (truncated: time is not
  observed).
- Actions: 0 = -1 (left), 1 = +1 (right).
- Observation of agent i: the state scaled by 1/30, rotated to put agent i first
  (`[x_i - x_tar, x_{i+1} - x_tar, ...] / 30`); the state is the unrotated scaled vector.
- Neighbours (`extras["neighbours"]`, `[B, N, N]`, per step): `|x_i - x_j| / 30 <= 0.1`, i != j.

Note on the payoffs as stated: with k of N agents approaching, the team gets -N (k = N), -3N
(k = 0) or -4k (otherwise), so for N >= 5 "exactly one pursuer" (-4) beats "all pursue" (-N). The
normalization in the config uses the paper's two reference behaviours (all defect = 0, all pursue
= 1); `spec.return_bounds` holds the true extremes.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from environments import rendering as rd
from environments.base import EnvSpec, TaskEnv


class CooperativePredationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_agents: int = Field(8, ge=1, le=256, description="8 in AS's main runs, 20 and 30 for scalability")
    domain: float = Field(30.0, gt=0.0, description="positions lie in [0, domain]")
    step_size: float = Field(1.0, gt=0.0)
    episode_length: int = Field(30, ge=1, le=100_000)
    neighbour_radius: float = Field(0.1, ge=0.0, le=1.0, description="as a fraction of the domain")
    reward_all_pursue: float = -1.0
    reward_all_defect: float = -3.0
    reward_pursuer_mixed: float = -4.0
    reward_defector_mixed: float = 0.0


class CooperativePredation(TaskEnv):
    Params = CooperativePredationParams
    STATE_KEYS = ("pos", "prey")
    ACTION_NAMES = ("left", "right")

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = CooperativePredationParams(**params)
        super().__init__(n_envs, seed, device, p.episode_length, name)
        self.params = p
        self.n_agents = n = p.n_agents
        per_step = [self.team_reward_of(k) for k in range(n + 1)]
        self.spec = EnvSpec(
            name=self.name, family="gridworld", n_agents=n, obs_dim=n, state_dim=n,
            n_actions=2, episode_limit=p.episode_length, reward_mode="private",
            return_bounds=(min(per_step) * p.episode_length, max(per_step) * p.episode_length),
            description=f"AS 5.1 Cooperative Predation, {n} predators on [0, {p.domain:g}], -1/-3/-4/0 dilemma")
        self._direction = torch.tensor([-1.0, 1.0], device=self.device)
        self.pos = torch.zeros(n_envs, n, device=self.device)
        self.prey = torch.zeros(n_envs, device=self.device)

    def team_reward_of(self, pursuers: int) -> float:
        """The team's (summed) reward of one step in which `pursuers` of the N agents approach."""
        p, n = self.params, self.params.n_agents
        if pursuers == n:
            return n * p.reward_all_pursue
        if pursuers == 0:
            return n * p.reward_all_defect
        return pursuers * p.reward_pursuer_mixed + (n - pursuers) * p.reward_defector_mixed

    def _fresh(self) -> dict[str, torch.Tensor]:
        draws = self.random.rand(self.n_agents + 1)
        draws = draws * self.params.domain
        return {"pos": draws[:, 1:].contiguous(), "prey": draws[:, 0].contiguous()}

    def approaching(self, actions: torch.Tensor) -> torch.Tensor:
        """`[B, N]` bool: the action moves the agent towards the prey."""
        return self._direction[actions] * (self.prey.unsqueeze(1) - self.pos) > 0

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        actions = actions.long().clamp(0, 1)
        pursue = self.approaching(actions)
        n_pursue = pursue.sum(1, keepdim=True)
        mixed = torch.where(pursue, p.reward_pursuer_mixed, p.reward_defector_mixed)
        reward = torch.where(n_pursue == self.n_agents, p.reward_all_pursue,
                             torch.where(n_pursue == 0, p.reward_all_defect, mixed))
        self.pos = (self.pos + p.step_size * self._direction[actions]).clamp(0.0, p.domain)
        return reward, torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        state = (self.pos - self.prey.unsqueeze(1)) / self.params.domain
        # Self-first rotation as sliding windows over [state, state]: obs[b, i, k] = state[b, (i + k) % N].
        doubled = torch.cat([state, state], dim=1)
        obs = doubled.unfold(1, self.n_agents, 1)[:, :self.n_agents].contiguous()
        return obs, state, None

    def _extras(self) -> dict[str, torch.Tensor]:
        gap = (self.pos.unsqueeze(2) - self.pos.unsqueeze(1)).abs_()
        near = gap <= self.params.neighbour_radius * self.params.domain
        near.diagonal(dim1=1, dim2=2).fill_(False)
        return {"neighbours": near}

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """Copy `index`: the line [0, domain] left to right, agent k a disc on its own lane (k from the top),
        the prey a red vertical line."""
        i = rd.check_index(self, index)
        n, domain = self.n_agents, self.params.domain
        margin = 0.03 * domain
        height = 20 + 12 * n
        points = [(x, n - 1 - k, 0.4, rd.agent_colour(k)) for k, x in enumerate(self.pos[i].tolist())]
        image = rd.points_frame(points, (-margin, domain + margin, -1.0, float(n)), size=(height, 480))
        col = round((float(self.prey[i]) + margin) * (480 - 1) / (domain + 2 * margin))
        image[:, max(col - 1, 0):col + 2] = rd.APPLE
        return image
