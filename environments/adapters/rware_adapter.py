"""Multi-Robot Warehouse (the `rware` package) on the batched contract.

Tasks: ACPO's grid `rware-{tiny,small}-{2,4,8,12}ag-hard-v2` (500 steps), built with
`gymnasium.make(<id>)` exactly as registered by rware, and the 16-robot warehouse of BN's VAST
experiment (`rware/warehouse-16ag`, see below). One rware environment simulates one warehouse, so
copies run in worker processes (environments/adapters/process_pool.py), except a single copy: by default
(no `n_workers`, no `$COOPBENCH_ENV_WORKERS`) it is stepped in this process. A worker cannot overlap one
copy's step with anything, so it would only add two pipe round trips per step (rware is pure Python, nothing
to isolate); QMIX on rware/tiny-2ag-hard with one copy collects ~12% more env steps per CPU second in-process
(benchmarks/README.md). Results do not depend on where copies run (process_pool's seeding).

What the adapter decides, and why:
- Team reward: rware's "individual" reward gives +1 to the robot that delivers a requested shelf.
  ACPO's return "is the number of items collected and delivered successfully", so the team reward
  is the sum over robots, given to every robot; an episode's return is the number of deliveries.
- Episode end: rware signals the 500-step limit as `terminated=True`; it is a time limit, so the
  adapter reports it as a truncation (values bootstrap through it). No registered task ends
  otherwise.
- Global state: rware has none (only a rendered image); the state is the concatenation of the
  robots' observations.
- Actions: Discrete(5) (noop, forward, left, right, toggle load), all always available (no mask).
- Resume: exact (robot positions, directions and loads, shelf positions, request queue, counters
  and the copy's generator are snapshotted).

The 16-robot warehouse: BN (section 6.3, Table 3) runs VAST on "Warehouse" with N = 16 robots and
50-step episodes, following VAST (Phan et al., 2021), whose Warehouse[16] is a 9x13 grid. VAST's
domain is its own (dropoff tasks, -0.5 for bumping into a robot, -0.01 per step), not rware; here
the task is rware on a 9x13 layout with 16 robots, 50 steps, 3 goals and a hard request queue (8).
Same size, robot count and horizon; rware's rules and rewards (no move penalties), so BN's Warehouse
numbers are not directly comparable with returns on this task.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from coopbench.base.errors import MissingDependencyError
from environments.adapters import install_hint
from environments.adapters.process_pool import WORKERS_ENV_VAR, CopyEnv, CopyObs, CopyStep, PooledEnv
from environments.base import EnvSpec

INSTALL_HINT = install_hint("rware>=2.0,<2.1")
DIFFICULTY_SUFFIX = {"easy": "-easy", "normal": "", "hard": "-hard"}

# 9 rows x 13 columns: shelf pairs (X) between highways (.), goals (g) in the middle of the bottom row.
WAREHOUSE_16_LAYOUT = """
.............
.XX.XX.XX.XX.
.XX.XX.XX.XX.
.XX.XX.XX.XX.
.............
.XX.XX.XX.XX.
.XX.XX.XX.XX.
.............
.....ggg.....
"""


def import_rware():
    try:
        import gymnasium
        import rware  # noqa: F401 - registers the rware-* ids with gymnasium
    except ImportError:
        raise MissingDependencyError("rware (Multi-Robot Warehouse)", INSTALL_HINT) from None
    return gymnasium


class RwareParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: Literal["tiny", "small", "medium", "large"] = "tiny"
    n_agents: int = Field(2, ge=1, le=19, description="robots (rware registers 1..19)")
    difficulty: Literal["easy", "normal", "hard"] = Field("hard", description="request queue = N x (2, 1, 0.5)")
    max_steps: int = Field(500, ge=1, description="episode length (a truncation)")
    sensor_range: int = Field(1, ge=1)
    layout: str | None = Field(None, description="custom rware layout (X shelf, . corridor, g goal); replaces size")

    def env_id(self) -> str:
        return f"rware-{self.size}-{self.n_agents}ag{DIFFICULTY_SUFFIX[self.difficulty]}-v2"

    def overrides(self) -> dict:
        """Keyword arguments that differ from the registered id's."""
        out = {}
        if self.max_steps != 500:
            out["max_steps"] = self.max_steps
        if self.sensor_range != 1:
            out["sensor_range"] = self.sensor_range
        if self.layout is not None:
            out["layout"] = self.layout
        return out


def make_warehouse(env_id: str, overrides: dict):
    """The library environment this adapter drives: `gymnasium.make(<rware id>, **overrides)`."""
    gymnasium = import_rware()
    return gymnasium.make(env_id, **overrides)


class WarehouseCopy(CopyEnv):
    supports_snapshot = True

    def __init__(self, env_id: str, overrides: dict):
        self.env = make_warehouse(env_id, overrides)
        self.raw = self.env.unwrapped
        self.n_agents = self.raw.n_agents

    def _observe(self, obs) -> CopyObs:
        stacked = np.stack(obs).astype(np.float32, copy=False)
        return CopyObs(stacked, stacked.reshape(-1))

    def reset(self, seed: int) -> CopyObs:
        obs, _ = self.env.reset(seed=seed)
        return self._observe(obs)

    def step(self, action: np.ndarray) -> CopyStep:
        obs, rewards, done, truncated, _ = self.env.step(action.tolist())
        team = float(sum(rewards))
        time_limit = bool(self.raw.max_steps) and self.raw._cur_steps >= self.raw.max_steps
        terminated = bool(done) and not time_limit
        truncated = bool(truncated) or (bool(done) and time_limit)
        return CopyStep(self._observe(obs), team, terminated, truncated)

    def get_state(self) -> dict:
        r = self.raw
        robots = [[a.x, a.y, a.dir.value, -1 if a.carrying_shelf is None else a.carrying_shelf.id - 1,
                   int(a.has_delivered)] for a in r.agents]
        return {
            "robots": np.array(robots, dtype=np.int64),
            "shelves": np.array([[s.x, s.y] for s in r.shelfs], dtype=np.int64),
            "requests": np.array([s.id - 1 for s in r.request_queue], dtype=np.int64),
            "steps": int(r._cur_steps),
            "inactive": int(r._cur_inactive_steps),
            "rng": r.np_random.bit_generator.state,
        }

    def set_state(self, state: dict) -> None:
        from rware.warehouse import Direction

        self.env.reset(seed=0)  # rebuilds the robot and shelf objects (ids 1..N in list order)
        r = self.raw
        for shelf, (x, y) in zip(r.shelfs, state["shelves"].tolist(), strict=True):
            shelf.x, shelf.y = x, y
        for robot, (x, y, direction, load, delivered) in zip(r.agents, state["robots"].tolist(), strict=True):
            robot.x, robot.y, robot.dir = x, y, Direction(direction)
            robot.carrying_shelf = None if load < 0 else r.shelfs[load]
            robot.has_delivered = bool(delivered)
        r.request_queue = [r.shelfs[k] for k in state["requests"].tolist()]
        r._cur_steps, r._cur_inactive_steps = int(state["steps"]), int(state["inactive"])
        r.np_random.bit_generator.state = state["rng"]
        r._recalc_grid()

    def close(self) -> None:
        self.env.close()


class Warehouse(PooledEnv):
    """RWARE: N robots deliver requested shelves; team reward = deliveries by all robots."""

    @staticmethod
    def positions_from_views(obs, state):
        """`[..., N, 2]`: a robot's observation starts with its grid cell (x, y) (BN 6.2.2's 2D positions)."""
        return obs[..., :2]

    Params = RwareParams
    NAME = "rware/custom"

    def __init__(self, n_envs: int, seed: int, device="cpu", n_workers: int | None = None, name: str | None = None,
                 **params):
        p = self.Params(**params)
        if n_workers is None and n_envs == 1 and not os.environ.get(WORKERS_ENV_VAR):
            n_workers = 0  # one copy: in-process (module docstring)
        env_id, overrides = p.env_id(), p.overrides()
        probe = make_warehouse(env_id, overrides)  # dimensions from the library itself
        obs_dim = int(probe.unwrapped.observation_space[0].shape[0])
        n_actions = int(probe.unwrapped.action_space[0].n)
        grid = probe.unwrapped.grid_size
        probe.close()
        spec = EnvSpec(
            name=self.NAME,
            family="rware",
            n_agents=p.n_agents,
            obs_dim=obs_dim,
            state_dim=p.n_agents * obs_dim,
            n_actions=n_actions,
            episode_limit=p.max_steps,
            reward_mode="team",
            return_bounds=None,
            description=(f"RWARE {env_id}{' (custom layout)' if p.layout else ''}, grid {grid[0]}x{grid[1]}, "
                         f"{p.max_steps} steps; team reward = deliveries; state = concatenated observations"),
        )
        super().__init__(spec, functools.partial(WarehouseCopy, env_id, overrides), n_envs, seed, device,
                         n_workers=n_workers, name=name)


def _task(name: str, class_name: str, **defaults) -> type[Warehouse]:
    """A registered task: `Warehouse` whose parameters default to the task's."""
    base = RwareParams.model_fields
    fields = {key: (base[key].annotation, FieldInfo.merge_field_infos(base[key], default=value))
              for key, value in defaults.items()}
    params = create_model(f"{class_name}Params", __base__=RwareParams, **fields)
    cls = type(class_name, (Warehouse,), {"Params": params, "NAME": name, "__module__": __name__,
                                          "__doc__": f"{name}: {defaults}"})
    return cls


RwareTiny2 = _task("rware/tiny-2ag-hard", "RwareTiny2", size="tiny", n_agents=2)
RwareTiny4 = _task("rware/tiny-4ag-hard", "RwareTiny4", size="tiny", n_agents=4)
RwareTiny8 = _task("rware/tiny-8ag-hard", "RwareTiny8", size="tiny", n_agents=8)
RwareTiny12 = _task("rware/tiny-12ag-hard", "RwareTiny12", size="tiny", n_agents=12)
RwareSmall2 = _task("rware/small-2ag-hard", "RwareSmall2", size="small", n_agents=2)
RwareSmall4 = _task("rware/small-4ag-hard", "RwareSmall4", size="small", n_agents=4)
RwareSmall8 = _task("rware/small-8ag-hard", "RwareSmall8", size="small", n_agents=8)
RwareSmall12 = _task("rware/small-12ag-hard", "RwareSmall12", size="small", n_agents=12)
RwareWarehouse16 = _task("rware/warehouse-16ag", "RwareWarehouse16", n_agents=16, max_steps=50,
                         layout=WAREHOUSE_16_LAYOUT)
