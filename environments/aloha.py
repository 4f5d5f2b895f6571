"""BN 6.2.1 Aloha (from CASEC, Wang et al. 2022), natively batched in torch.

What the BN paper states (6.2.1, Appendix B.3 and Table 2), and the tests pin:

- 10 agents fixed on a 2 x 5 grid, agent i at (x_i, y_i) in {0, 1} x {0, ..., 4};
- each keeps a message queue and chooses at every step whether to transmit (2 actions);
- with probability 0.6 a new message joins each queue at every step;
- a successful, collision-free transmission gives the team +0.1, a collision -10 (shared);
- 25 steps per episode (Table 2); a team reward.

Where BN is silent we follow CASEC's Aloha environment (its `AlohaEnv`), which BN cites:

- actions: 0 = wait, 1 = transmit; all always available;
- queues start with one message each and hold at most 5 (`max_list_length`); arrivals beyond that
  are lost;
- an agent that transmits with a non-empty queue succeeds when no neighbour chose to transmit
  (neighbours transmitting from an empty queue still interfere, as in CASEC); it then sends one
  message (+0.1). Otherwise every such transmitter is in a collision and costs -10 (two
  neighbours colliding cost -20). Transmitting from an empty queue does nothing by itself;
- arrivals are drawn after the transmissions, then queues are clipped to the capacity;
- an agent observes its own queue length (one number, as in CASEC); the global state is every
  queue length (row-major agent order);
- neighbours: CASEC's adjacency matrix links i with i +- 1 and i +- 5, which is the 2 x 5 grid
  (Manhattan distance 1, BN's positions) plus one extra link between agents 4 and 5, the ends of
  the two rows. We default to the grid BN describes (`neighbourhood: grid`); `neighbourhood:
  casec` adds the row-wrap links (i, i + 1 across a row end) to reproduce CASEC exactly;
- the 25-step end is a truncation (time is not observed). CASEC's "battle won" (more than
  0.45 * N * T messages sent) is not a task outcome in BN and is not reported.

Per step, `extras` has `transmissions` (clean transmissions) and `collisions` (colliding
transmitters) per copy. `agent_positions` and `neighbours` expose the layout (BN's dependency
scores are negative Manhattan distances between positions).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments.base import EnvSpec, TaskEnv
from environments.gridworld import manhattan, unflatten_index

WAIT, TRANSMIT = 0, 1


class AlohaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: int = Field(2, ge=1, le=8, description="agents sit on a rows x cols grid (BN: 2 x 5)")
    cols: int = Field(5, ge=1, le=8)
    arrival_prob: float = Field(0.6, ge=0.0, le=1.0, description="chance of a new message per queue and step")
    success_reward: float = Field(0.1, ge=0.0, description="team reward per clean transmission")
    collision_penalty: float = Field(10.0, ge=0.0, description="team cost per colliding transmitter")
    episode_length: int = Field(25, ge=1, le=100_000)
    max_backlog: int = Field(5, ge=1, le=1000, description="queue capacity (CASEC: 5)")
    initial_backlog: int = Field(1, ge=0, description="messages in every queue at the start (CASEC: 1)")
    neighbourhood: Literal["grid", "casec"] = Field(
        "grid", description="grid: Manhattan distance 1; casec: plus CASEC's links across row ends")

    @model_validator(mode="after")
    def _check(self):
        if self.rows * self.cols < 2:
            raise ValueError("Aloha needs at least 2 agents (rows * cols >= 2)")
        if self.initial_backlog > self.max_backlog:
            raise ValueError("initial_backlog must be at most max_backlog")
        return self


def aloha_neighbours(rows: int, cols: int, neighbourhood: str) -> torch.Tensor:
    """`[N, N]` bool adjacency of agents numbered row-major on a rows x cols grid."""
    pos = unflatten_index(torch.arange(rows * cols), cols)
    adjacent = manhattan(pos.unsqueeze(1), pos.unsqueeze(0)) == 1
    if neighbourhood == "casec":  # CASEC's matrix also links i and i + 1 across a row end
        idx = torch.arange(rows * cols)
        adjacent |= (idx.unsqueeze(1) - idx.unsqueeze(0)).abs() == 1
    return adjacent


def max_independent_set(adjacent: torch.Tensor) -> int:
    """Most agents that can transmit at once without a collision: exact for N <= 16 (every subset as
    a bit mask, checked against every link at once), else the loose bound N."""
    n = adjacent.shape[0]
    if n > 16:
        return n
    masks = torch.arange(2**n, dtype=torch.int64)
    links = torch.triu(adjacent, diagonal=1).nonzero()  # [E, 2]
    both = ((masks.unsqueeze(1) >> links[:, 0]) & (masks.unsqueeze(1) >> links[:, 1]) & 1).any(1)
    sizes = sum((masks >> i) & 1 for i in range(n))
    return int(sizes[~both].max())


class Aloha(TaskEnv):
    Params = AlohaParams
    NAME = "aloha/bn-aloha-10"
    STATE_KEYS = ("backlog",)
    POSITIONS_IN_EXTRAS = True  # `_extras`: the grid cells (environments/registry.py EnvTraits.positions)

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = AlohaParams(**params)
        super().__init__(n_envs, seed, device, p.episode_length, name)
        self.params = p
        dev = self.device
        self.n_agents = p.rows * p.cols
        self.agent_positions = unflatten_index(torch.arange(self.n_agents), p.cols).to(dev)  # [N, 2] (x_i, y_i)
        self.neighbours = aloha_neighbours(p.rows, p.cols, p.neighbourhood).to(dev)  # [N, N] bool
        self._neighbour_matrix = self.neighbours.float()
        clean_at_once = max_independent_set(self.neighbours.cpu())
        self.spec = EnvSpec(
            name=self.name,
            family="aloha",
            n_agents=self.n_agents,
            obs_dim=1,
            state_dim=self.n_agents,
            n_actions=2,
            episode_limit=p.episode_length,
            reward_mode="team",
            return_bounds=(-p.collision_penalty * self.n_agents * p.episode_length,
                           p.success_reward * clean_at_once * p.episode_length),
            description=f"BN 6.2.1 Aloha: {self.n_agents} agents on a {p.rows}x{p.cols} grid, "
                        f"{p.episode_length} steps",
        )
        self.backlog = torch.full((n_envs, self.n_agents), p.initial_backlog, dtype=torch.long, device=dev)

    def _fresh(self) -> dict[str, torch.Tensor]:
        return {"backlog": torch.full_like(self.backlog, self.params.initial_backlog)}

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        state = self.backlog.float()
        return state.unsqueeze(-1), state, None

    def _extras(self) -> dict[str, torch.Tensor]:
        """`positions [B, N, 2]`: the fixed grid cells (BN B.3's Manhattan dependency scores)."""
        return {"positions": self.agent_positions.float().expand(self.n_envs, -1, -1)}

    def _transition(self, actions: torch.Tensor):
        p = self.params
        transmit = actions.long() == TRANSMIT  # [B, N]
        heard = transmit.float() @ self._neighbour_matrix  # neighbours that chose to transmit
        sending = transmit & (self.backlog > 0)
        clean = sending & (heard == 0)
        collided = sending & (heard > 0)
        n_clean = clean.sum(1)
        n_collided = collided.sum(1)
        team_reward = p.success_reward * n_clean - p.collision_penalty * n_collided
        arrivals = self.random.rand(*self.backlog.shape[1:]) < p.arrival_prob
        self.backlog = (self.backlog - clean.long() + arrivals.long()).clamp_(max=p.max_backlog)
        return team_reward, None, {"transmissions": n_clean, "collisions": n_collided}
