"""AS 5.1 Exchange: 3 agents, 3 boxes of food on a 5x5 grid, private rewards, 300 steps; natively
batched in torch.

What AS states: "Three agents interact with three boxes, each containing food for a specific agent.
However, a box can only be opened by another agent at a cost of 5 reward points. The food's intended
recipient gains 10 reward points. Every agent loses 0.01 reward points per time step, with a maximum
of 300 steps per episode." The environment is 5x5; "the state comprises the positions of agents and
food items, randomly initialized each episode"; "agents can move in four directions, open a box, or
stay still"; the cooperative optimum totals about 6 and the selfish (no box opened) -9 (AS 5.3).

Our choices where the text is silent:
- Box k holds agent k's food. An agent opens a box by choosing OPEN while standing on its cell; it
  can open only another agent's closed box (OPEN is masked out in `avail_actions` otherwise, and
  acts as STAY if chosen anyway). The opener pays 5 and box k's owner gains 10 at once, wherever it
  is; the box is then empty for the rest of the episode. Several agents opening one box in the same
  step: a uniformly random one of them (environment generator) opens it and pays.
- Agents may share cells (no collisions are described); moves off the grid leave the agent in
  place. Agents and boxes start on 6 distinct uniformly random cells.
- Episodes always last 300 steps (truncated; time is not observed). That is what makes the paper's
  numbers exact: 3 x 300 x -0.01 = -9 without opening, +3 x (10 - 5) = 6 with every box opened.
- Observation of agent i: the global state rotated to put agent i first: one-hot cells of the
  agents (i, i+1, ...), of the closed boxes (box i, the one with i's food, first; all-zero once
  opened), and the closed flags of the boxes in the same order. The state is the same, unrotated.
- Neighbourhood ("the dashed outline rectangles" of AS Fig. 8(b), not in the text): the chain
  0-1-2 of agent indices in `extras["neighbours"]` (`neighbourhood: all` gives every pair).

tests/scripted_policies.py plays the paper's two reference behaviours (cooperative, selfish).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments import gridworld as gw
from environments import rendering as rd
from environments.base import EnvSpec, TaskEnv

OPEN = 5


class ExchangeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_agents: int = Field(3, ge=2, le=12, description="agents, and boxes (one per agent)")
    grid_size: int = Field(5, ge=2, le=32)
    episode_length: int = Field(300, ge=1, le=100_000)
    open_cost: float = Field(5.0, ge=0.0)
    food_reward: float = Field(10.0, ge=0.0)
    step_cost: float = Field(0.01, ge=0.0)
    neighbourhood: Literal["chain", "all"] = "chain"

    @model_validator(mode="after")
    def _check(self):
        if 2 * self.n_agents > self.grid_size**2:
            raise ValueError("the grid needs a distinct cell for every agent and box (2 * n_agents <= size^2)")
        return self


class Exchange(TaskEnv):
    Params = ExchangeParams
    NAME = "gridworld/as-exchange"
    STATE_KEYS = ("pos", "boxes", "closed")
    ACTION_NAMES = ("stay", "up", "down", "left", "right", "open")

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = ExchangeParams(**params)
        super().__init__(n_envs, seed, device, p.episode_length, name)
        self.params = p
        self.n_agents = n = p.n_agents
        self.shape = (p.grid_size, p.grid_size)
        cells = p.grid_size**2
        adjacency = gw.chain_adjacency if p.neighbourhood == "chain" else gw.full_adjacency
        self.neighbours = adjacency(n, self.device)
        self._moves = torch.cat([gw.MOVES, torch.zeros(1, 2, dtype=torch.long)]).to(self.device)  # OPEN stays
        self._others = ~torch.eye(n, dtype=torch.bool, device=self.device)
        total_cost = p.step_cost * n * p.episode_length
        self.spec = EnvSpec(
            name=self.name, family="gridworld", n_agents=n, obs_dim=2 * n * cells + n,
            state_dim=2 * n * cells + n, n_actions=6, episode_limit=p.episode_length, reward_mode="private",
            has_action_mask=True, return_bounds=(-total_cost, n * (p.food_reward - p.open_cost) - total_cost),
            description="AS 5.1 Exchange: boxes of food only others can open (cost 5, food 10), -0.01/step")
        self.pos = torch.zeros(n_envs, n, 2, dtype=torch.long, device=self.device)
        self.boxes = torch.zeros_like(self.pos)
        self.closed = torch.ones(n_envs, n, dtype=torch.bool, device=self.device)
        self._all_cells = torch.ones(self.shape, dtype=torch.bool, device=self.device)
        self._cells = cells
        self._obs_index = gw.self_first_index(n, [cells, cells, 1], self.device)  # [N, obs_dim]
        self._block = torch.arange(n, device=self.device) * cells  # start of each agent's one-hot

    def _fresh(self) -> dict[str, torch.Tensor]:
        cells = gw.sample_cells(self.random, self._all_cells, 2 * self.n_agents)
        return {"pos": cells[:, :self.n_agents], "boxes": cells[:, self.n_agents:],
                "closed": torch.ones(self.n_envs, self.n_agents, dtype=torch.bool, device=self.device)}

    def openable(self) -> torch.Tensor:
        """`[B, N agents, N boxes]`: the agent stands on the box, which is closed and not its own."""
        on_box = (self.pos.unsqueeze(2) == self.boxes.unsqueeze(1)).all(-1)
        return on_box & self.closed.unsqueeze(1) & self._others

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        actions = actions.long().clamp(0, OPEN)
        # Opening uses the positions the agents chose it from (they do not move this step).
        attempts = self.openable() & (actions == OPEN).unsqueeze(2)  # [B, agent, box]
        opened = attempts.any(1)  # [B, box]
        pays = attempts.any(2)  # an agent stands on at most one box
        contested = (attempts.sum(1) > 1).any(-1)  # [B]: several agents open one box: a random one of them pays
        if bool(contested.any()):
            with self.random.only(contested):
                rank = gw.random_ranks(self.random, self.n_agents)
            ranked = torch.where(attempts, rank.unsqueeze(2), torch.full_like(rank, -1).unsqueeze(2))
            pays = (attempts & (ranked == ranked.max(1, keepdim=True).values)).any(2)
        pays = pays.float()
        reward = p.food_reward * opened.float() - p.open_cost * pays - p.step_cost
        self.closed = self.closed & ~opened
        self.pos = gw.move_targets(self.pos, actions, self._moves, shape=self.shape)
        return reward, torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, cells = self.n_agents, self._cells
        state = torch.zeros(self.n_envs, 2 * n * cells + n, device=self.device)
        state.scatter_(1, self._block + gw.flat_index(self.pos, self.shape[1]), 1.0)  # agents' cells
        state.scatter_(1, n * cells + self._block + gw.flat_index(self.boxes, self.shape[1]),
                       self.closed.float())  # closed boxes' cells
        state[:, 2 * n * cells:] = self.closed.float()
        obs = state[:, self._obs_index]  # rotated self-first: one gather
        avail = torch.ones(self.n_envs, n, 6, dtype=torch.bool, device=self.device)
        avail[..., OPEN] = self.openable().any(-1)
        return obs, state, avail

    def _extras(self) -> dict[str, torch.Tensor]:
        return {"neighbours": self.neighbours.expand(self.n_envs, -1, -1)}

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """Copy `index`: agent i a disc; box k (agent k's food) a square in a lighter shade of k's colour
        while closed, a grey ring once opened."""
        i = rd.check_index(self, index)
        markers = [(r, c, rd.lighter(rd.agent_colour(k)), "square", 0.8) if closed else (r, c, rd.WALL, "ring", 0.8)
                   for k, ((r, c), closed) in enumerate(zip(self.boxes[i].tolist(), self.closed[i].tolist(),
                                                            strict=True))]
        markers += [(r, c, rd.agent_colour(k), "disc", 0.6) for k, (r, c) in enumerate(self.pos[i].tolist())]
        return rd.grid_frame(self.shape, markers=markers, cell=32)
