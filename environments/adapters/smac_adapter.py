"""SMAC and SMACv2 on StarCraft II, through the `smacv2` package (families "smac" and "smacv2").

These are the StarCraft II benchmarks; the JAX re-implementation SMAX (family "smax") is a different
environment (smax_adapter.py) and its numbers are never mixed with these.

What is needed, and what happens without it (checked at construction, all reported in one error):
- the `smacv2` package (with pysc2 and s2clientprotocol), which is not on PyPI:
  `pip install -e '.[smacv2]'` (a direct reference to the oxwhirl/smacv2 repository), or
  `pip install git+https://github.com/oxwhirl/smacv2.git`;
- the StarCraft II binary: the Linux package from Blizzard's s2client-proto downloads, unzipped into
  ~/StarCraftII or the directory named by `SC2PATH`. CORA uses SC2 4.10, LAN 4.6.2 (69232); results of
  different versions are not comparable, so the version found is recorded in the spec description;
- the map files: SMAC_Maps (from the smacv2 repository) copied to `$SC2PATH/Maps/SMAC_Maps/`.
Missing any of them raises `MissingDependencyError` naming each missing piece and its install step;
the claims that need StarCraft II are then reported as `not run` with that reason.

Tasks:
- smac/<map>: StarCraft2Env(map_name=<map>) with SMAC's defaults (difficulty 7, step_mul 8, shaped reward
  scaled so a won episode's return is at most 20), the 16 maps of INVENTORY.md.
- smacv2/<race>_<n>_vs_<m>: StarCraftCapabilityEnvWrapper on `10gen_<race>` with SMACv2's published
  configs (sc2_gen_<race>.yaml: weighted unit types, surrounded-and-reflect start positions, conic FOV off,
  unit ranges on, obs_own_pos) and n units against m enemies.

Team reward: SMAC's reward is already the team's; every agent receives it. Global state: SMAC's
`get_state()`. Masks: `get_avail_agent_actions`. Episode end: a battle won or lost is a termination; the
episode limit (`info["episode_limit"]`) is a truncation. Episode statistics add `won` (battle won).

One StarCraft II process simulates one game, so copies are stepped in worker processes by the shared pool
(environments/adapters/process_pool.py); a game cannot be snapshotted, so resuming starts fresh episodes.
"""

from __future__ import annotations

import functools
import glob
import os
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coopbench.base.errors import MissingDependencyError
from environments.adapters.process_pool import CopyEnv, CopyObs, CopyStep, PooledEnv
from environments.base import EnvSpec

PACKAGE_HINT = ("pip install -e '.[smacv2]'  (or: pip install git+https://github.com/oxwhirl/smacv2.git; it is not on "
                "PyPI)")
SC2_HINT = ("download the Linux StarCraft II package (SC2.4.10, as CORA; LAN used 4.6.2.69232) from Blizzard's "
            "s2client-proto downloads page (https://github.com/Blizzard/s2client-proto#downloads), unzip it (password "
            "'iagreetotheeula') to ~/StarCraftII or anywhere and `export SC2PATH=/path/to/StarCraftII`")
MAPS_HINT = ("copy the SMAC_Maps folder of the smacv2 repository (smacv2/env/starcraft2/maps/SMAC_Maps) to "
             "$SC2PATH/Maps/SMAC_Maps/")

# INVENTORY.md: the 14 maps of LAN, plus 8m and 3m for CORA (3s_vs_5z, 2s_vs_1sc, 2s3z are LAN's too);
# bane_vs_bane (BN) is one of LAN's. Agents, enemies and episode limit from SMAC's map registry.
SMAC_MAPS = {
    "2s3z": (5, 5, 120), "3s5z": (8, 8, 150), "1c3s5z": (9, 9, 180), "5m_vs_6m": (5, 6, 70),
    "10m_vs_11m": (10, 11, 150), "27m_vs_30m": (27, 30, 180), "3s5z_vs_3s6z": (8, 9, 170), "MMM2": (10, 12, 180),
    "2s_vs_1sc": (2, 1, 300), "3s_vs_5z": (3, 5, 250), "6h_vs_8z": (6, 8, 150), "bane_vs_bane": (24, 24, 200),
    "2c_vs_64zg": (2, 64, 400), "corridor": (6, 24, 400), "8m": (8, 8, 120), "3m": (3, 3, 60),
}

# SMACv2's published scenario configs (smacv2/examples/configs/sc2_gen_<race>.yaml).
SMACV2_RACES = {
    "protoss": {"map_name": "10gen_protoss", "unit_types": ["stalker", "zealot", "colossus"],
                "weights": [0.45, 0.45, 0.1], "exception_unit_types": None},
    "terran": {"map_name": "10gen_terran", "unit_types": ["marine", "marauder", "medivac"],
               "weights": [0.45, 0.45, 0.1], "exception_unit_types": ["medivac"]},
    "zerg": {"map_name": "10gen_zerg", "unit_types": ["zergling", "hydralisk", "baneling"],
             "weights": [0.45, 0.45, 0.1], "exception_unit_types": ["baneling"]},
}
SMACV2_ENV_ARGS = dict(
    continuing_episode=False, difficulty="7", move_amount=2, obs_all_health=True, obs_instead_of_state=False,
    obs_last_action=False, obs_own_health=True, obs_pathing_grid=False, obs_terrain_height=False,
    obs_timestep_number=False, reward_death_value=10, reward_defeat=0, reward_negative_scale=0.5,
    reward_only_positive=True, reward_scale=True, reward_scale_rate=20, reward_sparse=False, reward_win=200,
    conic_fov=False, use_unit_ranges=True, min_attack_range=2, obs_own_pos=True, num_fov_actions=12,
    state_last_action=True, state_timestep_number=False, step_mul=8, heuristic_ai=False, debug=False,
    prob_obs_enemy=0, replay_dir="", replay_prefix="",
)


class SmacParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    difficulty: str = Field("7", pattern="^[1-9A]$", description="built-in AI difficulty (SMAC: 7, very hard)")
    game_version: str | None = Field(None, description="SC2 version to launch (None: the latest installed)")


def sc2_path() -> str:
    return os.environ.get("SC2PATH") or os.path.expanduser("~/StarCraftII")


def installed_sc2_versions(path: str) -> list[str]:
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(path, "Versions", "Base*")))


def missing_requirements(map_file: str = "3m") -> MissingDependencyError | None:
    """One error listing everything SMAC/SMACv2 lacks here (package, binary, map), or None when all is there.

    The claims stage can call this to report StarCraft II claims as `not run` with `str(error)` as the reason.
    """
    missing, fixes = [], []
    try:
        import smacv2.env  # noqa: F401
    except ImportError as err:
        missing.append(f"the smacv2 package ({err})")
        fixes.append(PACKAGE_HINT)
    path = sc2_path()
    source = "SC2PATH" if os.environ.get("SC2PATH") else "SC2PATH is unset, default"
    if not installed_sc2_versions(path):
        missing.append(f"the StarCraft II binary (no {path}/Versions/Base*; {source} {path})")
        fixes.append(SC2_HINT)
    elif not os.path.exists(os.path.join(path, "Maps", "SMAC_Maps", f"{map_file}.SC2Map")):
        missing.append(f"the SMAC map {map_file}.SC2Map (not in {path}/Maps/SMAC_Maps)")
        fixes.append(MAPS_HINT)
    return MissingDependencyError("; ".join(missing), "; then ".join(fixes)) if missing else None


def check_requirements(map_file: str) -> None:
    error = missing_requirements(map_file)
    if error is not None:
        raise error


def smacv2_capability_config(race: str, n_units: int, n_enemies: int) -> dict:
    r = SMACV2_RACES[race]
    team_gen = {"dist_type": "weighted_teams", "unit_types": r["unit_types"], "weights": r["weights"],
                "observe": True}
    if r["exception_unit_types"]:
        team_gen["exception_unit_types"] = r["exception_unit_types"]
    return {"n_units": n_units, "n_enemies": n_enemies, "team_gen": team_gen,
            "start_positions": {"dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32}}


def make_starcraft(kind: str, task: dict, params: dict, seed: int | None = None):
    """The library environment: StarCraft2Env (SMAC maps) or StarCraftCapabilityEnvWrapper (SMACv2)."""
    p = SmacParams(**params)
    if kind == "smac":
        from smacv2.env import StarCraft2Env
        return StarCraft2Env(map_name=task["map"], difficulty=p.difficulty, game_version=p.game_version, seed=seed)
    from smacv2.env.starcraft2.wrapper import StarCraftCapabilityEnvWrapper
    args = {**SMACV2_ENV_ARGS, "difficulty": p.difficulty, "game_version": p.game_version, "seed": seed,
            "map_name": SMACV2_RACES[task["race"]]["map_name"],
            "capability_config": smacv2_capability_config(task["race"], task["n_units"], task["n_enemies"])}
    return StarCraftCapabilityEnvWrapper(**args)


class StarCraftCopy(CopyEnv):
    """One StarCraft II game (one SC2 process). The game is (re)launched with the episode's seed."""

    def __init__(self, kind: str, task: dict, params: dict):
        self.kind, self.task, self.params = kind, task, params
        self.env: Any = None
        self._seed: int | None = None

    def _ensure(self, seed: int) -> None:
        # SC2 takes its random seed at launch; relaunching per episode would cost seconds, so a copy launches
        # once, with the seed of its first episode, and later episodes follow from the game's own stream.
        if self.env is None:
            self.env = make_starcraft(self.kind, self.task, self.params, seed=seed)
            self.n_agents = self.env.n_agents

    def _observe(self) -> CopyObs:
        env = self.env
        obs = np.asarray(env.get_obs(), dtype=np.float32)
        state = np.asarray(env.get_state(), dtype=np.float32)
        avail = np.asarray([env.get_avail_agent_actions(i) for i in range(self.n_agents)], dtype=bool)
        return CopyObs(obs, state, avail)

    def reset(self, seed: int) -> CopyObs:
        self._ensure(seed)
        self.env.reset()
        return self._observe()

    def step(self, action: np.ndarray) -> CopyStep:
        reward, done, info = self.env.step([int(a) for a in action])
        truncated = bool(done) and bool(info.get("episode_limit", False))
        terminated = bool(done) and not truncated
        won = float(bool(info.get("battle_won", False)))
        return CopyStep(self._observe(), np.full(self.n_agents, float(reward), np.float32), terminated, truncated,
                        {"won": won})

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


class StarCraftTask(PooledEnv):
    """A SMAC map or SMACv2 scenario on StarCraft II; subclasses fix the task."""

    Params = SmacParams
    KIND: ClassVar[str] = "smac"
    TASK: ClassVar[dict] = {}

    @classmethod
    def task_name(cls) -> str:
        t = cls.TASK
        return f"smac/{t['map']}" if cls.KIND == "smac" else f"smacv2/{t['race']}_{t['n_units']}_vs_{t['n_enemies']}"

    def __init__(self, n_envs: int, seed: int, device="cpu", n_workers: int | None = None, name: str | None = None,
                 **params):
        p = SmacParams(**params)
        map_file = self.TASK["map"] if self.KIND == "smac" else "32x32_flat"
        check_requirements(map_file)
        probe = make_starcraft(self.KIND, self.TASK, p.model_dump())
        info = probe.get_env_info()  # does not launch the game
        limit = int(info["episode_limit"])
        probe.close()
        versions = installed_sc2_versions(sc2_path())
        spec = EnvSpec(
            name=self.task_name(), family=self.KIND, n_agents=int(info["n_agents"]), obs_dim=int(info["obs_shape"]),
            state_dim=int(info["state_shape"]), n_actions=int(info["n_actions"]), episode_limit=limit,
            reward_mode="team", has_action_mask=True, return_bounds=(0.0, 20.0),
            description=(f"{'SMAC' if self.KIND == 'smac' else 'SMACv2'} {self.task_name().split('/')[1]} "
                         f"on StarCraft II ({', '.join(versions) or 'version unknown'} at {sc2_path()}), "
                         f"difficulty {p.difficulty}"),
        )
        super().__init__(spec, functools.partial(StarCraftCopy, self.KIND, dict(self.TASK), p.model_dump()), n_envs,
                         seed, device, n_workers=n_workers, episode_info_keys=("won",), name=name)


def _class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("/", "_").split("_"))


def _task(kind: str, **task) -> type[StarCraftTask]:
    cls = type("", (StarCraftTask,), {"KIND": kind, "TASK": task, "__module__": __name__})
    cls.__name__ = cls.__qualname__ = _class_name(cls.task_name())
    cls.__doc__ = f"{cls.task_name()} on StarCraft II."
    return cls


SMAC_CLASSES = {m: _task("smac", map=m) for m in SMAC_MAPS}
SMACV2_CLASSES = {
    f"{race}_{n}_vs_{m}": _task("smacv2", race=race, n_units=n, n_enemies=m)
    for race, n, m in (("protoss", 5, 5), ("zerg", 5, 5), ("protoss", 10, 11), ("terran", 10, 11), ("zerg", 10, 11))
}
globals().update({cls.__name__: cls for cls in (*SMAC_CLASSES.values(), *SMACV2_CLASSES.values())})
