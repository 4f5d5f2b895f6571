"""MAgent2 battle, 40 v 40 (BN 6.2.2 / VAST "Battle"): the learners are the red team, blue is a fixed script.

The simulator is MAgent2's C++ GridWorld with battle_v4's own configuration (`battle.get_config`: 10 HP,
2 damage, 0.1 HP regeneration, kill reward 5, step reward -0.005, dead penalty -0.1, attack penalty
-0.1, attack-opponent reward 0.2, view radius 6, move radius 2, attack radius 1.5). battle_v4's map
generator places a square number of agents per team, so 40 v 40 uses coopbench's own start layout:
two 5 x 8 blocks (stride 2) facing each other 6 cells apart, the same placement rule battle_v4 uses.
We drive the GridWorld directly (set_action/step/get_observation), which is exactly what battle_v4's
PettingZoo `parallel_env.step` does underneath, without its per-agent dict round trip.

Blue team (fixed, deterministic, documented in config/environments/magent2/battle-40v40.yaml):
  1. if a red agent stands in one of the 8 attackable cells, attack the one with the lowest HP
     (ties: the first in view row-major order);
  2. else, if a red agent is in view (radius 6), take the move (of the 13 in move radius 2) that ends
     nearest to the nearest visible red agent;
  3. else move 2 cells toward the red side (west).

Global state: the map (walls; each team's presence and HP) followed by every red agent's cell (x, y) / map_size in
agent order (a dead agent keeps its last cell): BN 6.2.2 builds subteams from the agents' 2D positions, and the map
alone does not say which agent stands where (`positions_from_views`).

Team reward: the sum of the red agents' MAgent2 rewards at that step (every red agent receives it).
An episode ends when a team is wiped out (terminated) or after `max_cycles` steps (truncated, 100 as in
BN Table 3). Dead agents observe zeros and may only take the stay action (index 6: MAgent2's "do
nothing" is the zero move, not action 0). Episode statistics add `won` (blue wiped out, red alive) and
`kill_diff` (red survivors minus blue survivors: blue deaths minus red deaths, VAST's domain value).

One GridWorld simulates one battle, so the `n_envs` copies are stepped in worker processes by the
shared pool (environments/adapters/process_pool.py; in-process with `COOPBENCH_ENV_WORKERS=0`). The
C++ world cannot be snapshotted, so resuming starts every copy on a fresh episode (see the pool).
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from coopbench.base.errors import MissingDependencyError
from environments.adapters import install_hint
from environments.adapters.process_pool import CopyEnv, CopyObs, CopyStep, PooledEnv
from environments.base import EnvSpec

INSTALL_HINT = install_hint("magent2>=0.3.4,<0.4")
STAY = 6  # MAgent2 move actions enumerate the 13 offsets of radius 2; index 6 is (0, 0)
N_ACTIONS = 21  # 13 moves + 8 attacks
WEST = 4  # the move (-2, 0)


class BattleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_per_team: int = Field(40, ge=1, le=200)
    map_size: int = Field(32, ge=16, description="square map side (MAgent2's own density: 0.04 agents per cell)")
    max_cycles: int = Field(100, gt=0, description="episode length: 100 in BN Table 3 (Battle)")
    opponent: Literal["scripted", "random"] = Field("scripted", description="the blue team's fixed policy")
    step_reward: float = -0.005
    dead_penalty: float = -0.1
    attack_penalty: float = -0.1
    attack_opponent_reward: float = 0.2

    @model_validator(mode="after")
    def _fits(self):
        rows = -(-self.n_per_team // 5)
        if 2 * rows > self.map_size - 2 or self.map_size // 2 - 3 - 10 < 1:
            raise ValueError(f"map_size {self.map_size} too small for {self.n_per_team} agents per team in 5 columns")
        return self


def _import_magent2():
    try:
        import magent2
        from magent2.environments.battle import battle
    except ImportError as err:
        raise MissingDependencyError(f"magent2 could not be imported ({err})", INSTALL_HINT) from None
    return magent2, battle


def start_positions(p: BattleParams) -> tuple[list, list]:
    """Two blocks of 5 columns, stride 2, centred vertically, 3 cells either side of the middle."""
    rows = -(-p.n_per_team // 5)
    y0 = (p.map_size - 2 * rows) // 2
    mid = p.map_size // 2
    cells = [(c, r) for r in range(rows) for c in range(5)][: p.n_per_team]
    red = [[mid - 3 - 10 + 2 * c, y0 + 2 * r, 0] for c, r in cells]
    blue = [[mid + 3 + 2 * c, y0 + 2 * r, 0] for c, r in cells]
    return red, blue


class BattleCopy(CopyEnv):
    """One battle: MAgent2's GridWorld with battle_v4's config, our 40 v 40 layout and the blue script."""

    def __init__(self, params: dict):
        magent2, battle = _import_magent2()
        self.p = p = BattleParams(**params)
        self.n = p.n_per_team
        reward_args = dict(step_reward=p.step_reward, dead_penalty=p.dead_penalty, attack_penalty=p.attack_penalty,
                           attack_opponent_reward=p.attack_opponent_reward)
        self.world = world = magent2.GridWorld(battle.get_config(p.map_size, False, None, **reward_args),
                                               map_size=p.map_size)
        self.red, self.blue = world.get_handles()
        self.view_shape = tuple(int(x) for x in world.get_view_space(self.red))
        self.obs_dim = int(np.prod(self.view_shape))
        self.red_pos, self.blue_pos = start_positions(p)
        self.walls = np.zeros((p.map_size, p.map_size), np.float32)
        world.reset()  # the engine's map must exist before it is queried
        walls = world._get_walls_info()
        if len(walls):
            wx, wy = zip(*walls, strict=True)
            self.walls[list(wx), list(wy)] = 1.0
        self._prepare_script(world)
        self.rng = np.random.default_rng(0)
        self.frames = 0

    # -- the fixed blue policy ------------------------------------------------------------------------------
    def _prepare_script(self, world) -> None:
        attack_base, view2attack = world.get_view2attack(self.blue)
        size = self.view_shape[0]
        centre = size // 2
        rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        self._attack_action = np.where(view2attack >= 0, attack_base + view2attack, -1).reshape(-1)
        self._attackable = (view2attack >= 0).reshape(-1)
        self._offsets = np.stack([rows - centre, cols - centre], -1).reshape(-1, 2)  # (dy, dx) per view cell
        self._dist = np.hypot(*self._offsets.T)
        # MAgent2's 13 moves of radius 2, in its order: row-major in dy, then dx (index 6 is the stay)
        moves = [(dx, dy) for dy in range(-2, 3) for dx in range(-2, 3) if dx * dx + dy * dy <= 4]
        self._moves = np.array([(dy, dx) for dx, dy in moves])  # as (dy, dx) view offsets
        assert tuple(self._moves[STAY]) == (0, 0)

    def blue_actions(self, view: np.ndarray) -> np.ndarray:
        """The blue team's actions from its agents' views `[n, 13, 13, 5]` (see the module docstring)."""
        n = view.shape[0]
        if self.p.opponent == "random":
            return self.rng.integers(N_ACTIONS, size=n).astype(np.int32)
        red_here = view[..., 3].reshape(n, -1) > 0  # channel 3: the other team's presence
        red_hp = view[..., 4].reshape(n, -1)
        actions = np.full(n, WEST, np.int32)
        adjacent = red_here & self._attackable
        can_attack = adjacent.any(1)
        target = np.where(adjacent, red_hp, np.inf).argmin(1)
        actions[can_attack] = self._attack_action[target[can_attack]]
        visible = red_here.any(1) & ~can_attack
        if visible.any():
            nearest = np.where(red_here[visible], self._dist, np.inf).argmin(1)
            goal = self._offsets[nearest]
            gaps = ((goal[:, None, :] - self._moves[None]) ** 2).sum(-1)
            actions[visible] = gaps.argmin(1)
        return actions

    # -- the CopyEnv protocol ---------------------------------------------------------------------------------
    def _observe(self) -> CopyObs:
        world, n = self.world, self.n
        obs = np.zeros((n, self.obs_dim), np.float32)
        alive = np.zeros(n, bool)
        ids = world.get_agent_id(self.red)
        view, _ = world.get_observation(self.red)
        obs[ids] = view.reshape(len(ids), -1)
        alive[ids] = True
        state = np.zeros((self.p.map_size, self.p.map_size, 5), np.float32)
        state[..., 0] = self.walls
        for team, handle in enumerate((self.red, self.blue)):
            pos = world.get_pos(handle)
            if len(pos):
                team_view = view if team == 0 else world.get_observation(handle)[0]
                centre = team_view.shape[1] // 2
                state[pos[:, 0], pos[:, 1], 1 + 2 * team] = 1.0
                state[pos[:, 0], pos[:, 1], 2 + 2 * team] = team_view[:, centre, centre, 2]
        mask = np.repeat(alive[:, None], N_ACTIONS, axis=1)
        mask[:, STAY] = True
        red_pos = world.get_pos(self.red)
        if len(red_pos):
            self.cells[ids] = red_pos[:, :2] / self.p.map_size
        return CopyObs(obs, np.concatenate([state.reshape(-1), self.cells.reshape(-1)]), mask)

    def reset(self, seed: int) -> CopyObs:
        world = self.world
        world.set_seed(seed)
        self.rng = np.random.default_rng(seed)
        world.reset()
        world.add_agents(self.red, method="custom", pos=self.red_pos)
        world.add_agents(self.blue, method="custom", pos=self.blue_pos)
        self.frames = 0
        self.cells = np.zeros((self.n, 2), np.float32)  # every red agent's last cell / map_size
        return self._observe()

    def step(self, action: np.ndarray) -> CopyStep:
        world, red, blue = self.world, self.red, self.blue
        ids = world.get_agent_id(red)
        world.set_action(red, np.ascontiguousarray(action[ids], dtype=np.int32))
        world.set_action(blue, self.blue_actions(world.get_observation(blue)[0]))
        world.step()
        team_reward = float(world.get_reward(red).sum())
        red_alive, blue_alive = int(world.get_alive(red).sum()), int(world.get_alive(blue).sum())
        self.frames += 1
        ob = self._observe()
        world.clear_dead()
        terminated = red_alive == 0 or blue_alive == 0
        truncated = not terminated and self.frames >= self.p.max_cycles
        info = {"won": float(blue_alive == 0 and red_alive > 0), "kill_diff": float(red_alive - blue_alive)}
        return CopyStep(ob, np.full(self.n, team_reward, np.float32), terminated, truncated, info)

    def close(self) -> None:
        self.world = None


class Battle40v40(PooledEnv):
    """MAgent2 battle, 40 red learners against 40 scripted blue agents."""

    @staticmethod
    def positions_from_views(obs, state):
        """`[..., N, 2]`: the red agents' cells / map_size, the state's last 2N numbers (BN 6.2.2's 2D positions)."""
        n = obs.shape[-2]
        return state[..., state.shape[-1] - 2 * n:].unflatten(-1, (n, 2))

    Params = BattleParams

    def __init__(self, n_envs: int, seed: int, device="cpu", n_workers: int | None = None, name: str | None = None,
                 **params):
        _import_magent2()
        p = BattleParams(**params)
        spec = EnvSpec(
            name="magent2/battle-40v40", family="magent2", n_agents=p.n_per_team,
            obs_dim=13 * 13 * 5, state_dim=p.map_size * p.map_size * 5 + 2 * p.n_per_team, n_actions=N_ACTIONS,
            episode_limit=p.max_cycles, reward_mode="team", has_action_mask=True,
            description=f"MAgent2 battle {p.n_per_team} v {p.n_per_team}, blue team: fixed {p.opponent} policy",
        )
        super().__init__(spec, functools.partial(BattleCopy, p.model_dump()), n_envs, seed, device,
                         n_workers=n_workers, episode_info_keys=("won", "kill_diff"), name=name)
