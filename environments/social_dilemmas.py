"""AS 5.1 Cleanup (11x18) and Harvest (7x38): Sequential Social Dilemmas with private rewards,
natively batched in torch.

AS builds both tasks on Christoffersen et al. (2023, "Get It in Writing"), whose simplified grid
versions of the Sequential Social Dilemma games (Leibo et al. 2017; Hughes et al. 2018) we follow:

- Each agent's reward is +1 per apple it eats (it walks onto the apple), nothing else: no fining
  beam (Christoffersen's `disable_firing=True`; AS: "only eating an apple yields a non-zero
  reward"), cleaning is free.
- Moves are absolute (up/down/left/right/stay). Two agents never share a cell: a mover that enters
  the cell of an agent that stays, or swaps with another agent, bumps; several movers entering one
  cell: a uniformly random one (environment generator) gets it.
- Harvest: apples regrow only on the map's apple cells, with probability 0, 0.005, 0.02, 0.05 per
  step when 0, 1, 2, >= 3 apples lie in the 8 surrounding cells (SSD's `APPLE_RADIUS = 2` test
  `j^2 + k^2 <= 2`), never under an agent: over-harvesting a patch stops its regrowth.
- Cleanup: apples grow on the orchard cells with probability `0.05 * (1 - density / 0.4)` while
  the river's waste density is below the depletion threshold 0.4, and not at all above it; while
  below it, one clean river cell turns to waste per step with probability `1 - 0.5^k` (k clean river
  cells; SSD tries them in random order with 0.5 each and stops at the first). The cleaning beam
  (action CLEAN) removes the waste on 3 parallel lines of the start cell plus 5 cells ahead in the
  agent's facing direction, each stopped by walls (Christoffersen's simplified Cleanup); agents turn
  with TURN_CW / TURN_CCW. The map starts polluted beyond the threshold (22 of 48 river cells),
  so no apple grows until someone cleans.
- Observations: the unrotated (2r+1)^2 window around the agent (r = 7: the 15x15 view of both
  sources), one 0/1 layer per object type, flattened as [row, col, channel]; cells outside the map
  read as wall. Harvest: wall, orchard (the cells where apples grow), apple, other agents. Cleanup:
  wall, river (where waste can lie), stream, orchard, waste, apple, other agents, beam (cells swept
  by a cleaning beam this step, which the sources draw on the map), then the agent's own facing
  (one-hot 4), which the window does not show. The sources' RGB views show the same objects (their
  river and stream share a colour); the orchard layers are ours. The global state is the apple (and
  waste) layers plus one position layer per agent (and Cleanup's facings).
- Episodes last 100 steps and are truncated (time is not observed).

AS words the two laws loosely ("spawn rate inversely proportional to the waste density"; "at a rate
proportional to the number of apples around"); the SSD laws above are what its cited source runs:
decreasing linearly to zero at the threshold, and a step function of the neighbour count.

The maps are ours: AS gives only their sizes. Cleanup is rows 4-12 of the SSD Cleanup map (river on
the left, stream in the middle rows, orchard on the right) inside a wall; Harvest is 9 plus-shaped
apple patches (45 apples) in a 5x36 field inside a wall.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments import gridworld as gw
from environments import rendering as rd
from environments.base import EnvSpec, TaskEnv

CLEANUP_MAP = (
    "@@@@@@@@@@@@@@@@@@",
    "@RRRRR  P    BBBB@",
    "@RRRRR    P BBBBB@",
    "@HHHHH       BBBB@",
    "@RRRRR      BBBBB@",
    "@HHHHHHSSSSSSBBBB@",
    "@HHHHHHSSSSSSBBBB@",
    "@RRRRR   P P BBBB@",
    "@HHHHH   P  BBBBB@",
    "@RRRRRR    P BBBB@",
    "@@@@@@@@@@@@@@@@@@",
)  # @ wall, P spawn point, B orchard (apple) cell, H river cell starting with waste, R clean river, S stream

HARVEST_MAP = (
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
    "@P A   P   A   P   A   P   A   P  A P@",
    "@ AAA     AAA     AAA     AAA    AAA @",
    "@  A   A   A   A   A   A   A   A  A P@",
    "@     AAA     AAA     AAA     AAA    @",
    "@P     A   P   A   P   A   P   A    P@",
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
)  # @ wall, P spawn point, A apple cell (starts with an apple)


class _DilemmaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    episode_length: int = Field(100, ge=1, le=100_000)
    view_radius: int = Field(7, ge=1, le=20, description="the observation window is (2r+1) x (2r+1)")
    neighbourhood: Literal["all", "chain"] = Field(
        "all", description="communication graph in extras['neighbours']: every pair, or the line 0-1-...-(N-1)")


class HarvestParams(_DilemmaParams):
    n_agents: int = Field(4, ge=1, le=12, description="at most the 12 spawn points")
    spawn_probs: list[float] = Field(default_factory=lambda: [0.0, 0.005, 0.02, 0.05], min_length=4, max_length=4,
                                     description="regrowth probability for 0, 1, 2, >=3 neighbouring apples")

    @model_validator(mode="after")
    def _check(self):
        if not all(0.0 <= p <= 1.0 for p in self.spawn_probs):
            raise ValueError("spawn_probs must lie in [0, 1]")
        return self


class CleanupParams(_DilemmaParams):
    n_agents: int = Field(4, ge=1, le=6, description="at most the 6 spawn points")
    depletion_threshold: float = Field(0.4, gt=0.0, le=1.0, description="waste density that stops apple growth")
    restoration_threshold: float = Field(0.0, ge=0.0, lt=1.0, description="density below which apples grow fastest")
    apple_respawn_prob: float = Field(0.05, ge=0.0, le=1.0)
    waste_spawn_prob: float = Field(0.5, ge=0.0, le=1.0)
    beam_length: int = Field(5, ge=1, le=20, description="cells the cleaning beam reaches ahead of its start")

    @model_validator(mode="after")
    def _check(self):
        if self.restoration_threshold >= self.depletion_threshold:
            raise ValueError("restoration_threshold must be below depletion_threshold")
        return self


class _SocialDilemma(TaskEnv):
    """Shared machinery: map layers, moves, eating, observation windows."""

    MAP: tuple[str, ...]
    MAP_SHAPE: tuple[int, int]
    CHANNELS: tuple[str, ...]
    N_ACTIONS: int
    DESCRIPTION: str
    STATE_KEYS = ("pos", "apples")

    def __init__(self, params, n_envs: int, seed: int, device="cpu", name: str | None = None):
        super().__init__(n_envs, seed, device, params.episode_length, name)
        self.params = params
        self.n_agents = params.n_agents
        self.radius = params.view_radius
        self.height, self.width = self.MAP_SHAPE
        self._layers = {ch: m.to(self.device) for ch, m in gw.parse_ascii_map(self.MAP).items()}
        self._zero = torch.zeros(self.MAP_SHAPE, dtype=torch.bool, device=self.device)
        self.walls = self._layers.get("@", self._zero)
        self.spawn_cells = self._layers.get("P", self._zero)
        self._rows = torch.arange(n_envs, device=self.device).unsqueeze(1)
        size = 2 * self.radius + 1
        self._window_dim = size * size * len(self.CHANNELS)
        adjacency = gw.full_adjacency if params.neighbourhood == "all" else gw.chain_adjacency
        self.neighbours = adjacency(self.n_agents, self.device)  # [N, N], static
        self.spec = EnvSpec(
            name=self.name, family="social_dilemma", n_agents=self.n_agents, obs_dim=self.obs_dim,
            state_dim=self.state_dim, n_actions=self.N_ACTIONS, episode_limit=self.episode_length,
            reward_mode="private", has_action_mask=False, return_bounds=None, description=self.DESCRIPTION)
        # Observation grid (channels-last, padded by the view radius): static channels are written
        # once, the dynamic ones every step.
        static = torch.stack([self._static_layer(ch) if ch in self.STATIC else self._zero
                              for ch in self.CHANNELS]).to(torch.uint8)
        pad = [1 if ch == "wall" else 0 for ch in self.CHANNELS]  # outside the map reads as wall
        self._grid = gw.padded_grid(static, self.radius, pad).expand(n_envs, -1, -1, -1).contiguous()
        self._inner = gw.inner_view(self._grid, self.radius)
        self.pos = torch.zeros(n_envs, self.n_agents, 2, dtype=torch.long, device=self.device)
        self.apples = torch.zeros(n_envs, self.height, self.width, dtype=torch.bool, device=self.device)

    # --- per-task hooks ---------------------------------------------------------------------------
    def _static_layer(self, channel: str) -> torch.Tensor:
        symbols = {"wall": "@", "orchard": self.ORCHARD, "river": "HR", "stream": "S"}[channel]
        layer = self._zero.clone()
        for symbol in symbols:
            layer |= self._layers.get(symbol, self._zero)
        return layer

    @property
    def obs_dim(self) -> int:
        return self._window_dim

    @property
    def state_dim(self) -> int:
        return self.height * self.width * (1 + self.n_agents)

    @abstractmethod
    def _initial_apples(self) -> torch.Tensor: ...

    @abstractmethod
    def _after_moves(self, actions: torch.Tensor) -> None:
        """Task-specific effects after moving and eating (turns, beams) and regrowth."""

    def _dynamic_layers(self) -> dict[str, torch.Tensor]:
        """Observed layers that change (besides "agent")."""
        return {"apple": self.apples}

    def _state_layers(self) -> dict[str, torch.Tensor]:
        """Map layers in the global state (before the agents' position layers)."""
        return {"apple": self.apples}

    def _write_extra_obs(self, out: torch.Tensor) -> None:
        """Fill the observation features after the window, `out` `[B, N, obs_dim - window]`."""

    def _write_extra_state(self, out: torch.Tensor) -> None:
        """Fill the state features after the position layers (`out` is zero on entry)."""

    # --- TaskEnv hooks ---------------------------------------------------------------------
    def _fresh(self) -> dict[str, torch.Tensor]:
        return {"pos": gw.sample_cells(self.random, self.spawn_cells, self.n_agents),
                "apples": self._initial_apples().expand(self.n_envs, -1, -1).clone()}

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions = actions.long().clamp(0, self.N_ACTIONS - 1)  # out-of-range actions act as their nearest
        target = gw.move_targets(self.pos, self._move_of_action[actions], gw.MOVES.to(self.device), walls=self.walls)
        self.pos = gw.resolve_moves(self.pos, target, self.random)
        rows, cols = self.pos[..., 0], self.pos[..., 1]
        reward = self.apples[self._rows, rows, cols].float()  # eat the apple you stand on
        self.apples[self._rows, rows, cols] = False
        self._after_moves(actions)
        return reward, torch.zeros(self.n_envs, dtype=torch.bool, device=self.device)

    def _extras(self) -> dict[str, torch.Tensor]:
        return {"neighbours": self.neighbours.expand(self.n_envs, -1, -1)}

    def _occupied(self) -> torch.Tensor:
        return gw.occupancy(self.pos, (self.height, self.width)) > 0

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        n_envs, n_agents, cells = self.n_envs, self.n_agents, self.height * self.width
        for channel, layer in self._dynamic_layers().items():
            self._inner[..., self.CHANNELS.index(channel)] = layer
        agent_channel = self.CHANNELS.index("agent")
        self._inner[..., agent_channel] = self._occupied()
        windows = gw.egocentric_windows(self._grid, self.pos, self.radius)  # [B, N, K, K, C] uint8
        windows[:, :, self.radius, self.radius, agent_channel] = 0  # the "agent" layer shows the others
        # One conversion pass, straight into the observation buffer (the windows are most of the cost).
        obs = torch.empty(n_envs, n_agents, self.obs_dim, device=self.device)
        obs[..., :self._window_dim].view(windows.shape).copy_(windows)
        self._write_extra_obs(obs[..., self._window_dim:])
        state = torch.zeros(n_envs, self.state_dim, device=self.device)
        offset = 0
        for layer in self._state_layers().values():
            state[:, offset:offset + cells] = layer.view(n_envs, cells)
            offset += cells
        positions = state[:, offset:offset + n_agents * cells].view(n_envs, n_agents, cells)
        positions.scatter_(2, gw.flat_index(self.pos, self.width).unsqueeze(-1), 1.0)
        self._write_extra_state(state[:, offset + n_agents * cells:])
        return obs, state, None

    # Map layers in the picture, bottom to top: static ones by name, dynamic ones by attribute.
    RENDER_LAYERS: tuple[tuple[str, tuple[int, int, int]], ...] = ()

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """Copy `index`: walls dark grey, the task's map layers (`RENDER_LAYERS`), apples red discs,
        agents discs in their colours."""
        i = rd.check_index(self, index)
        layers = [(self.walls.cpu().numpy(), rd.WALL)]
        for name, colour in self.RENDER_LAYERS:
            layer = self._static_layer(name) if name in self.STATIC else getattr(self, name)[i]
            layers.append((layer.cpu().numpy(), colour))
        apples = self.apples[i].nonzero().tolist()
        markers = [(r, c, rd.APPLE, "disc", 0.45) for r, c in apples]
        markers += [(r, c, rd.agent_colour(k), "disc", 0.8) for k, (r, c) in enumerate(self.pos[i].tolist())]
        return rd.grid_frame((self.height, self.width), layers, markers, cell=20)

    def _regrow(self, probability: torch.Tensor) -> None:
        """Apples appear on the free apple cells (no apple, no agent) with `probability`: `[B, K]` per
        apple cell (in `self._apple_index` order) or `[B, 1]`. One draw per apple cell and step."""
        apples = self.apples.view(self.n_envs, -1)
        free = ~apples[:, self._apple_index] & ~self._occupied().view(self.n_envs, -1)[:, self._apple_index]
        draw = self.random.rand(self._apple_index.numel())
        apples[:, self._apple_index] |= free & (draw < probability)


class Harvest(_SocialDilemma):
    """AS 5.1 Harvest 7x38: apples regrow in proportion to the apples around them; 100 steps.

    Actions: 0 stay, 1 up, 2 down, 3 left, 4 right (the sources' turn actions only aim the fining
    beam, which AS's Harvest does not have, so they are left out).
    """

    Params = HarvestParams
    MAP = HARVEST_MAP
    MAP_SHAPE = (len(HARVEST_MAP), len(HARVEST_MAP[0]))
    ORCHARD = "A"
    CHANNELS = ("wall", "orchard", "apple", "agent")  # 4 one-byte layers: gathered as one word per cell
    STATIC = ("wall", "orchard")
    N_ACTIONS = 5
    RENDER_LAYERS = (("orchard", rd.ORCHARD),)
    NAME = "social_dilemma/as-harvest"
    DESCRIPTION = "AS 5.1 Harvest 7x38, private rewards (+1 per apple), 100 steps"
    ACTION_NAMES = ("stay", "up", "down", "left", "right")

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = HarvestParams(**params)
        super().__init__(p, n_envs, seed, device, name)
        self._move_of_action = torch.arange(5, device=self.device)
        self.apple_cells = self._layers["A"]
        self._apple_index = self.apple_cells.flatten().nonzero().squeeze(1)
        self._spawn_probs = torch.tensor(p.spawn_probs, device=self.device)

    def _initial_apples(self) -> torch.Tensor:
        return self.apple_cells

    def _after_moves(self, actions: torch.Tensor) -> None:
        near = gw.neighbour_counts(self.apples, radius=1).view(self.n_envs, -1)[:, self._apple_index]
        self._regrow(self._spawn_probs[near.clamp(max=3)])


class Cleanup(_SocialDilemma):
    """AS 5.1 Cleanup 11x18: apples grow only while the river is clean enough; 100 steps.

    Actions: 0 stay, 1 up, 2 down, 3 left, 4 right, 5 turn clockwise, 6 turn counter-clockwise,
    7 clean (the eight actions of Christoffersen et al.'s Cleanup with firing disabled).
    """

    Params = CleanupParams
    MAP = CLEANUP_MAP
    MAP_SHAPE = (len(CLEANUP_MAP), len(CLEANUP_MAP[0]))
    ORCHARD = "B"
    CHANNELS = ("wall", "river", "stream", "orchard", "waste", "apple", "agent", "beam")  # 8 bytes: one word
    STATIC = ("wall", "river", "stream", "orchard")
    N_ACTIONS = 8
    TURN_CW, TURN_CCW, CLEAN = 5, 6, 7
    RENDER_LAYERS = (("river", rd.WATER), ("stream", rd.STREAM), ("orchard", rd.ORCHARD), ("waste", rd.WASTE),
                     ("beam", rd.BEAM))
    NAME = "social_dilemma/as-cleanup"
    DESCRIPTION = "AS 5.1 Cleanup 11x18, private rewards (+1 per apple), 100 steps"
    ACTION_NAMES = ("stay", "up", "down", "left", "right", "turn_cw", "turn_ccw", "clean")

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = CleanupParams(**params)
        super().__init__(p, n_envs, seed, device, name)
        self._move_of_action = torch.tensor([0, 1, 2, 3, 4, 0, 0, 0], device=self.device)
        self.apple_cells = self._layers["B"]
        self._apple_index = self.apple_cells.flatten().nonzero().squeeze(1)
        self._beams = gw.beam_table(self.walls, p.beam_length)
        self.river_cells = self._layers["H"] | self._layers["R"]  # where waste can be
        self.initial_waste = self._layers["H"]
        self.river_area = int(self.river_cells.sum())
        self.orientation = torch.zeros(n_envs, self.n_agents, dtype=torch.long, device=self.device)
        self.waste = torch.zeros(n_envs, self.height, self.width, dtype=torch.bool, device=self.device)
        self.beam = torch.zeros_like(self.waste)  # cells the cleaning beams swept this step (observed)

    STATE_KEYS = ("pos", "apples", "orientation", "waste", "beam")

    @property
    def obs_dim(self) -> int:
        return self._window_dim + 4

    @property
    def state_dim(self) -> int:
        return self.height * self.width * (2 + self.n_agents) + 4 * self.n_agents

    def _initial_apples(self) -> torch.Tensor:
        return self._zero

    def _fresh(self) -> dict[str, torch.Tensor]:
        fresh = super()._fresh()
        fresh["orientation"] = self.random.randint(0, 4, self.n_agents)
        fresh["waste"] = self.initial_waste.expand(self.n_envs, -1, -1).clone()
        fresh["beam"] = torch.zeros_like(fresh["waste"])
        return fresh

    def _dynamic_layers(self) -> dict[str, torch.Tensor]:
        return {"apple": self.apples, "waste": self.waste, "beam": self.beam}

    def _state_layers(self) -> dict[str, torch.Tensor]:
        return {"apple": self.apples, "waste": self.waste}

    def _write_extra_obs(self, out: torch.Tensor) -> None:
        out.zero_().scatter_(-1, self.orientation.unsqueeze(-1), 1.0)  # own facing, one-hot

    def _write_extra_state(self, out: torch.Tensor) -> None:
        out.view(self.n_envs, self.n_agents, 4).scatter_(-1, self.orientation.unsqueeze(-1), 1.0)

    def waste_density(self) -> torch.Tensor:
        """Fraction of the river cells holding waste, `[B]`."""
        return self.waste.flatten(1).sum(-1).float() / self.river_area

    def spawn_probabilities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(apple, waste) spawn probabilities `[B]` at the current waste density (SSD's rule)."""
        p = self.params
        density = self.waste_density()
        polluted = density >= p.depletion_threshold
        scale = 1.0 - (density - p.restoration_threshold) / (p.depletion_threshold - p.restoration_threshold)
        apple = p.apple_respawn_prob * scale.clamp(max=1.0)
        apple = torch.where(polluted, torch.zeros_like(apple), apple)
        waste = torch.where(polluted, torch.zeros_like(density), torch.full_like(density, p.waste_spawn_prob))
        return apple, waste

    def _after_moves(self, actions: torch.Tensor) -> None:
        turn = (actions == self.TURN_CW).long() - (actions == self.TURN_CCW).long()
        self.orientation = (self.orientation + turn) % 4
        self.beam = gw.beam_hits(self._beams, self.pos, self.orientation, actions == self.CLEAN,
                                 self.width).view_as(self.waste)
        self.waste &= ~self.beam
        apple_prob, waste_prob = self.spawn_probabilities()
        self._regrow(apple_prob.unsqueeze(1))
        # At most one new waste cell: one appears with probability 1 - (1 - p)^k over the k clean river
        # cells, on a uniformly random one of them (SSD tries them in random order, p each, and stops at
        # the first success, which has exactly this law).
        clean = (self.river_cells.flatten() & ~self.waste.view(self.n_envs, -1))
        n_clean = clean.sum(-1)
        draws = self.random.rand(2)
        spawn = (draws[:, 0] < 1.0 - (1.0 - waste_prob) ** n_clean) & (n_clean > 0)
        pick = (draws[:, 1] * n_clean).long().clamp(max=self.river_area - 1)  # which clean cell, 0-based
        choice = (clean.cumsum(-1) > pick.unsqueeze(1)).to(torch.uint8).argmax(-1)
        self.waste.view(self.n_envs, -1)[self._rows.squeeze(1), choice] |= spawn
