"""AS 5.1 Cooperative Navigation: 3 agents on a 5x5 grid, each heading for its own landmark, with
private rewards; natively batched in torch.

What AS states: built on Zhang et al. (2018b) with "the same observation and action
configurations"; each agent must approach a landmark; agents "earn rewards based on their proximity
to targets but incur a -1 penalty upon collisions"; agents "can only exchange information with
adjacent counterparts"; 100 steps; 3 agents; a 5x5 environment (AS Fig. 8(a), not in the text).

Our choices where the text is silent (Zhang et al.'s task is MPE's cooperative navigation, in which
every agent sees the global state and moves with 5 discrete actions; bodies overlap and are
penalised when they do):
- Agent i's landmark is landmark i. Agents and landmarks start on distinct uniformly random cells.
- Actions: 0 stay, 1 up, 2 down, 3 left, 4 right; a move off the grid leaves the agent in place.
  Agents may share a cell (as MPE bodies overlap); that is the collision.
- Reward of agent i per step: `-d_i / (2 (size - 1)) - penalty * c_i`, with d_i the Manhattan
  distance from agent i to its landmark (so the proximity term lies in [-1, 0]) and c_i the number
  of other agents in its cell after the move (MPE counts each colliding pair).
- Observation of agent i: the global state rotated to put agent i first: one-hot cells of the
  agents (i, i+1, ...) then of their landmarks (i's own first). The state is the same, unrotated.
- Neighbourhood ("adjacent counterparts", the dashed groups of AS Fig. 8): the chain 0-1-2 of
  agent indices, in `extras["neighbours"]` (`neighbourhood: all` gives every pair).
- 100 steps, truncated (time is not observed).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments import gridworld as gw
from environments import rendering as rd
from environments.base import EnvSpec, TaskEnv


class CooperativeNavigationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_agents: int = Field(3, ge=1, le=16)
    grid_size: int = Field(5, ge=2, le=32)
    episode_length: int = Field(100, ge=1, le=100_000)
    collision_penalty: float = Field(1.0, ge=0.0)
    neighbourhood: Literal["chain", "all"] = "chain"

    @model_validator(mode="after")
    def _check(self):
        if 2 * self.n_agents > self.grid_size**2:
            raise ValueError("the grid needs a distinct cell for every agent and landmark (2 * n_agents <= size^2)")
        return self


class CooperativeNavigation(TaskEnv):
    Params = CooperativeNavigationParams
    NAME = "gridworld/as-coop-navigation"
    STATE_KEYS = ("pos", "landmarks")
    ACTION_NAMES = ("stay", "up", "down", "left", "right")

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = CooperativeNavigationParams(**params)
        super().__init__(n_envs, seed, device, p.episode_length, name)
        self.params = p
        self.n_agents = p.n_agents
        self.shape = (p.grid_size, p.grid_size)
        cells = p.grid_size**2
        adjacency = gw.chain_adjacency if p.neighbourhood == "chain" else gw.full_adjacency
        self.neighbours = adjacency(self.n_agents, self.device)
        self._moves = gw.MOVES.to(self.device)
        self._distance_scale = 1.0 / (2 * (p.grid_size - 1))
        self.spec = EnvSpec(
            name=self.name, family="gridworld", n_agents=self.n_agents,
            obs_dim=2 * self.n_agents * cells, state_dim=2 * self.n_agents * cells, n_actions=5,
            episode_limit=p.episode_length, reward_mode="private",
            description="AS 5.1 Cooperative Navigation: own landmark, proximity reward, -1 per collision")
        self.pos = torch.zeros(n_envs, self.n_agents, 2, dtype=torch.long, device=self.device)
        self.landmarks = torch.zeros_like(self.pos)
        self._all_cells = torch.ones(self.shape, dtype=torch.bool, device=self.device)
        self._cells = cells
        self._obs_index = gw.self_first_index(self.n_agents, [cells, cells], self.device)  # [N, obs_dim]
        self._block = torch.arange(2 * self.n_agents, device=self.device) * cells  # one-hot block starts

    def _fresh(self) -> dict[str, torch.Tensor]:
        cells = gw.sample_cells(self.random, self._all_cells, 2 * self.n_agents)
        return {"pos": cells[:, :self.n_agents], "landmarks": cells[:, self.n_agents:]}

    def rewards(self) -> torch.Tensor:
        """Per-agent reward of the current configuration, `[B, N]`."""
        proximity = -gw.manhattan(self.pos, self.landmarks).float() * self._distance_scale
        return proximity - self.params.collision_penalty * gw.shared_cell_counts(self.pos).float()

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions = actions.long().clamp(0, 4)
        self.pos = gw.move_targets(self.pos, actions, self._moves, shape=self.shape)
        return self.rewards(), torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        state = torch.zeros(self.n_envs, 2 * self.n_agents * self._cells, device=self.device)
        cells = gw.flat_index(torch.cat([self.pos, self.landmarks], dim=1), self.shape[1])
        state.scatter_(1, self._block + cells, 1.0)  # one-hot cells of the agents, then of the landmarks
        return state[:, self._obs_index], state, None

    def _extras(self) -> dict[str, torch.Tensor]:
        return {"neighbours": self.neighbours.expand(self.n_envs, -1, -1)}

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """Copy `index`: agent i a disc, its landmark a square in a lighter shade of its colour."""
        i = rd.check_index(self, index)
        markers = [(r, c, rd.lighter(rd.agent_colour(k)), "square", 0.8)
                   for k, (r, c) in enumerate(self.landmarks[i].tolist())]
        markers += [(r, c, rd.agent_colour(k), "disc", 0.6) for k, (r, c) in enumerate(self.pos[i].tolist())]
        return rd.grid_frame(self.shape, markers=markers, cell=32)
