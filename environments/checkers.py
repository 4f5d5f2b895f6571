"""LAN 5.3 Checkers (VDN 4.2's credit-assignment gridworld), natively batched in torch.

What the LAN paper states (section 5.3, Figure 5), and the tests pin:

- two agents; apples (+10 to the first agent, +1 to the second) and lemons (-10 / -1); the agents
  receive the sum of both rewards (a team reward);
- each agent observes its location and the 3x3 window around it;
- the episode ends when no apple is left, or after 100 steps;
- the second agent has to eat the lemons that block the first agent's way to the apples.

Where the paper is silent we follow ma-gym's `Checkers` (ma-gym 0.0.14, the implementation the
LAN/VDN line of work uses), so that, for the same actions, trajectories are identical to ma-gym's
(`benchmarks/checkers_vs_magym.py --check-only` verifies this against ma-gym itself):

- the map is 3 x 8: columns 0-5 hold a checkerboard of fruit (rows 0 and 2: apples in the even
  columns, lemons in the odd ones; row 1 the other way round; 9 apples, 9 lemons), columns 6-7
  are empty; the first agent starts at (0, 6), the second at (2, 6); no randomness at all, so the
  environment seed changes nothing;
- actions 0..4 = down, left, up, right, no-op; a move off the map or into the other agent's cell
  fails (the agent stays). The agents move one after the other, the first agent first: the second
  agent may enter the cell the first one just left, but not the one it just entered;
- an agent eats the fruit of the cell it enters; every agent also pays a step cost of -0.01 per
  step (team: -0.02);
- observation (47 floats, ma-gym's layout): [row / 3, col / 7] rounded to two decimals (ma-gym
  divides the row by the number of rows, not rows - 1), then the 3x3 window row by row, each cell
  one-hot over (lemon, apple, first agent, second agent, wall); cells off the map are all zero
  (ma-gym's wall channel is never set: the map has no walls). Option `clock` appends
  step / max_steps, as ma-gym's clock variant does;
- the 100-step end is a truncation (time is not observed) unless `clock` is set, when it is a
  termination; eating the last apple is a termination.

The global state (for centralized critics) is the whole map, one-hot per cell over (lemon, apple,
first agent, second agent), row-major (96 floats), plus step / max_steps when `clock` is set.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from environments import rendering as rd
from environments.base import EnvSpec, TaskEnv
from environments.gridworld import DOWN, LEFT, MOVES, RIGHT, STAY, UP, flat_index, unflatten_index

HEIGHT, WIDTH = 3, 8
FRUIT_COLS = 6
START = ((0, 6), (2, 6))  # first agent, second agent (row, col)
EMPTY, LEMON, APPLE, AGENT_1, AGENT_2, OFF_MAP = range(6)  # cell codes of the board
N_APPLES = HEIGHT * FRUIT_COLS // 2
# Fruit value per agent: FRUIT_VALUE[agent, code] for code EMPTY, LEMON, APPLE.
FRUIT_VALUE = ((0.0, -10.0, 10.0), (0.0, -1.0, 1.0))
# ma-gym's action order (down, left, up, right, no-op) mapped onto gridworld.MOVES.
ACTION_TO_MOVE = (DOWN, LEFT, UP, RIGHT, STAY)
WINDOW_CHANNELS = 5  # lemon, apple, first agent, second agent, wall
# The board is kept padded by one OFF_MAP cell on every side and flattened row-major, so a position is
# one int64 (its padded cell number), a move adds a constant and a 3x3 window is one gather.
PADDED_WIDTH = WIDTH + 2
PADDED_CELLS = (HEIGHT + 2) * PADDED_WIDTH


def padded_cell(pos: torch.Tensor) -> torch.Tensor:
    """Padded cell number of map positions `[..., 2]` (row, col)."""
    return flat_index(pos + 1, PADDED_WIDTH)


class CheckersParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_steps: int = Field(100, ge=1, le=100_000, description="episode limit (LAN 5.3: 100)")
    step_cost: float = Field(-0.01, ge=-1.0, le=0.0, description="reward every agent pays per step (ma-gym)")
    clock: bool = Field(False, description="append step / max_steps to observation and state (ma-gym's clock)")


def initial_board() -> torch.Tensor:
    """The flat padded board of cell codes at the start, `[PADDED_CELLS]`: the fruit checkerboard
    inside an OFF_MAP border. Agents are not on it (they are drawn in when observing)."""
    rows = torch.arange(HEIGHT).unsqueeze(1)
    cols = torch.arange(FRUIT_COLS).unsqueeze(0)
    board = torch.full((HEIGHT + 2, PADDED_WIDTH), OFF_MAP, dtype=torch.long)
    board[1:-1, 1:-1] = EMPTY
    board[1:-1, 1:1 + FRUIT_COLS] = torch.where((rows + cols) % 2 == 0, APPLE, LEMON)
    return board.flatten()


def sequential_moves(cell: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ma-gym's move order for two agents: the first agent moves unless its target holds the second
    agent; then the second moves unless its target holds the first agent (at its new cell).
    `cell`, `target` `[B, 2]` cell numbers (targets already kept on the map); returns the new cells.
    (gridworld.resolve_moves is simultaneous, which differs, e.g. when the first agent follows the
    second, so Checkers keeps this sequential rule to itself.)"""
    first = torch.where(target[:, 0] == cell[:, 1], cell[:, 0], target[:, 0])
    second = torch.where(target[:, 1] == first, cell[:, 1], target[:, 1])
    return torch.stack([first, second], dim=1)


class Checkers(TaskEnv):
    Params = CheckersParams
    NAME = "gridworld/lan-checkers"
    STATE_KEYS = ("board", "cell", "apples")
    n_agents = 2

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = CheckersParams(**params)
        super().__init__(n_envs, seed, device, p.max_steps, name)
        self.params = p
        dev = self.device
        self.max_steps = p.max_steps
        self.step_cost = p.step_cost
        self.clock = p.clock
        self.TIME_IN_OBS = p.clock  # time is observed: the limit is part of the task (a termination)
        obs_dim = 2 + 9 * WINDOW_CHANNELS + int(p.clock)
        state_dim = HEIGHT * WIDTH * 4 + int(p.clock)
        best = N_APPLES * FRUIT_VALUE[0][APPLE]  # the first agent eats every apple; costs only lower it
        worst = N_APPLES * FRUIT_VALUE[0][LEMON] + self.n_agents * p.step_cost * p.max_steps
        self.spec = EnvSpec(
            name=self.name,
            family="gridworld",
            n_agents=self.n_agents,
            obs_dim=obs_dim,
            state_dim=state_dim,
            n_actions=5,
            episode_limit=p.max_steps,
            reward_mode="team",
            return_bounds=(worst, best),
            description="LAN 5.3 / VDN 4.2 Checkers: 3x8 map of apples and lemons, 2 agents, 3x3 view plus position",
        )
        # Static tables.
        self._move_offset = flat_index(MOVES[list(ACTION_TO_MOVE)], PADDED_WIDTH).to(dev)  # [5] cell-number deltas
        self._start_board = initial_board().to(dev)
        self._on_map = self._start_board != OFF_MAP
        self._start_cell = padded_cell(torch.tensor(START)).to(dev)  # [2]
        self._agent_codes = torch.tensor([AGENT_1, AGENT_2], device=dev)
        self._value_index_offset = torch.tensor([0, 3], device=dev)  # agent a's value of code k: flat[3a + k]
        self._fruit_value = torch.tensor(FRUIT_VALUE, device=dev).flatten()
        rows, cols = torch.meshgrid(torch.arange(-1, 2), torch.arange(-1, 2), indexing="ij")
        self._window_offset = flat_index(torch.stack([rows, cols], -1).view(9, 2), PADDED_WIDTH).to(dev)  # row-major
        inner = torch.arange(HEIGHT * WIDTH)
        self._inner_cells = padded_cell(unflatten_index(inner, WIDTH)).to(dev)  # [24] the map, row-major
        # The code each one-hot channel (lemon, apple, agent 1, agent 2, wall) stands for; no cell has the
        # wall code (-1): EMPTY and OFF_MAP cells are all zero, as in ma-gym. The state uses the first four.
        self._channel_codes = torch.tensor([LEMON, APPLE, AGENT_1, AGENT_2, -1], device=dev)
        # Position features of every padded cell exactly as ma-gym computes them (Python round, then float32).
        where = torch.zeros(PADDED_CELLS, 2)
        where[self._inner_cells.cpu()] = torch.tensor([[round(r / HEIGHT, 2), round(c / (WIDTH - 1), 2)]
                                                       for r in range(HEIGHT) for c in range(WIDTH)])
        self._pos_table = where.to(dev)
        # Mutable state.
        self.board = self._start_board.expand(n_envs, -1).clone()  # [B, PADDED_CELLS] codes, no agents
        self.cell = self._start_cell.expand(n_envs, -1).clone()  # [B, 2] padded cell number of each agent
        self.apples = torch.full((n_envs,), N_APPLES, dtype=torch.long, device=dev)  # apples left

    @property
    def positions(self) -> torch.Tensor:
        """(row, col) of every agent on the map, `[B, 2, 2]`."""
        return unflatten_index(self.cell, PADDED_WIDTH) - 1

    # --- observations -------------------------------------------------------------------------------

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        board, cell, t = self.board, self.cell, self.t
        n = board.shape[0]
        full = board.scatter(1, cell, self._agent_codes.expand(n, -1))  # the agents drawn in
        window = full.gather(1, (cell.unsqueeze(-1) + self._window_offset).view(n, 18)).view(n, 2, 9)
        # (table lookups are written as index_select/take and comparisons: much faster than tensor[index] on CPU)
        view = (window.unsqueeze(-1) == self._channel_codes).flatten(2).float()  # [B, 2, 45]: row by row, channels last
        grid = full.index_select(1, self._inner_cells)  # [B, 24]
        state = (grid.unsqueeze(-1) == self._channel_codes[:4]).flatten(1).float()  # [B, 96]
        where = self._pos_table.index_select(0, cell.flatten()).view(n, self.n_agents, 2)
        parts = [where, view]
        if self.clock:
            time = (t.float() / self.max_steps).unsqueeze(1)
            parts.append(time.unsqueeze(1).expand(n, self.n_agents, 1))
            state = torch.cat([state, time], dim=1)
        return torch.cat(parts, dim=-1), state, None

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """Copy `index`: apples red and lemons yellow (small discs), the two agents discs in their colours."""
        i = rd.check_index(self, index)
        board = self.board[i].view(HEIGHT + 2, PADDED_WIDTH)[1:-1, 1:-1].cpu().numpy()
        fruit = {APPLE: rd.APPLE, LEMON: rd.LEMON}
        markers = [(r, c, fruit[int(board[r, c])], "disc", 0.4)
                   for r in range(HEIGHT) for c in range(WIDTH) if int(board[r, c]) in fruit]
        markers += [(r, c, rd.agent_colour(k), "disc", 0.75) for k, (r, c) in enumerate(self.positions[i].tolist())]
        return rd.grid_frame((HEIGHT, WIDTH), markers=markers, cell=32)

    # --- dynamics -----------------------------------------------------------------------------------

    def _fresh(self) -> dict[str, torch.Tensor]:  # no randomness: every episode starts the same
        return {"board": self._start_board.expand(self.n_envs, -1).clone(),
                "cell": self._start_cell.expand(self.n_envs, -1).clone(),
                "apples": torch.full_like(self.apples, N_APPLES)}

    def _transition(self, actions: torch.Tensor):
        target = self.cell + self._move_offset.take(actions.long())
        target = torch.where(self._on_map.take(target), target, self.cell)  # off the map: stay
        self.cell = sequential_moves(self.cell, target)
        eaten = self.board.gather(1, self.cell)  # [B, 2]: EMPTY, LEMON or APPLE (an agent's own cell is EMPTY)
        self.board = self.board.scatter(1, self.cell, 0)
        team_reward = self._fruit_value.take(eaten + self._value_index_offset).sum(1) + self.n_agents * self.step_cost
        self.apples = self.apples - (eaten == APPLE).sum(1)
        return team_reward, self.apples == 0  # eating the last apple ends the task
