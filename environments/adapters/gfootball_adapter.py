"""Google Research Football academy scenarios (CORA 6.6), one controlled left player per agent.

gfootball is built from source (`make gfootball`, see mk/gfootball.mk); it uses the old
gym 4-tuple API (`obs, reward, done, info`), which its own gym wrappers cannot run under gym 0.26.
So the adapter drives `gfootball.env.football_env.FootballEnv` directly with the `raw` observation
(one dict per controlled player) and converts it itself:

- observation: gfootball's `simple115v2` vector (`Simple115StateWrapper.convert_observation` with
  fixed positions) of each controlled player; 115 floats.
- global state: the same vector with the 11-slot "active player" one-hot replaced by the set of all
  controlled players (every other field of simple115v2 is already global and in the left team's frame).
- actions: gfootball's default action set (19 discrete actions), no mask.
- reward: `rewards="scoring"` gives +1 (-1) to every controlled player when the left (right) team
  scores; `"scoring,checkpoints"` adds gfootball's checkpoint shaping (10 checkpoints of 0.1 on the
  way to the goal, earned by the player holding the ball, all remaining ones on scoring), computed as
  gfootball's `CheckpointRewardWrapper` does. The team reward is the mean over controlled players of
  their gfootball rewards (with "scoring" alone: exactly the score reward), given to every agent.
- episode end: academy scenarios end on a goal, the ball going out of play or a change of possession
  (terminated), or after the scenario's `game_duration` steps, 400 here (truncated). `won` in the
  episode statistics is 1 where the left team scored.
- seeding: episode k of copy i sets gfootball's `game_engine_random_seed` (and the team processing
  order derived from it, as gfootball does) from the pool's per-episode seed.

The game engine is one simulator per object, so copies are stepped in worker processes by the shared
pool (environments/adapters/process_pool.py). It cannot be snapshotted from Python without its dump
machinery, so resuming starts every copy on a fresh episode (see the pool).
"""

from __future__ import annotations

import functools
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coopbench.base.errors import MissingDependencyError
from environments.adapters.process_pool import CopyEnv, CopyObs, CopyStep, PooledEnv
from environments.base import EnvSpec

INSTALL_HINT = ("build it from source with `make gfootball` (mk/gfootball.mk: installs its SDL2/Boost/CMake Debian "
                "packages as root, the runtime dependencies of the `gfootball` extra, then `pip install --no-deps "
                "--no-build-isolation gfootball==2.10.2` into the venv, which must come first on PATH)")
ACTIVE = slice(97, 108)  # simple115v2: one-hot of the active left player
N_CHECKPOINTS, CHECKPOINT_REWARD = 10, 0.1
GAME_DURATION = 400  # every academy scenario used here


class GfootballParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_agents: int | None = Field(None, ge=1, le=10, description="controlled left players (None: the task's)")
    rewards: Literal["scoring", "scoring,checkpoints"] = "scoring"


def import_gfootball():
    try:
        from gfootball.env import config as gf_config
        from gfootball.env import football_env
        from gfootball.env.wrappers import Simple115StateWrapper
    except ImportError as err:
        raise MissingDependencyError(f"gfootball (Google Research Football) could not be imported ({err})",
                                     INSTALL_HINT) from None
    return gf_config, football_env, Simple115StateWrapper


class FootballCopy(CopyEnv):
    """One gfootball game, raw observations converted to simple115v2."""

    def __init__(self, scenario: str, n_agents: int, rewards: str):
        gf_config, football_env, simple115 = import_gfootball()
        self._convert = simple115.convert_observation
        self.n_agents = n_agents
        self.checkpoints = "checkpoints" in rewards
        self.config = gf_config.Config({
            "level": scenario, "players": [f"agent:left_players={n_agents},right_players=0"],
            "action_set": "default", "dump_full_episodes": False, "dump_scores": False, "write_video": False,
            "tracesdir": "", "real_time": False,
        })
        self.env = football_env.FootballEnv(self.config)
        self._collected = np.zeros(n_agents, np.int64)
        self._steps = 0

    def _observe(self, raw) -> CopyObs:
        obs = np.asarray(self._convert(raw, True), dtype=np.float32)
        state = obs[0].copy()
        state[ACTIVE] = obs[:, ACTIVE].max(0)
        return CopyObs(obs, state)

    def reset(self, seed: int) -> CopyObs:
        # gfootball reads these two at every scenario build (scenario_builder._BuildScenarioConfig)
        self.config["game_engine_random_seed"] = int(seed) % 2_000_000_000
        self.config["reverse_team_processing"] = bool(seed % 2)
        self._collected[:] = 0
        self._steps = 0
        return self._observe(self.env.reset())

    def _checkpoint_rewards(self, reward: np.ndarray, raw) -> np.ndarray:
        """gfootball's CheckpointRewardWrapper.reward, on the raw observations of this step."""
        reward = reward.copy()
        for i, o in enumerate(raw):
            if reward[i] == 1:
                reward[i] += CHECKPOINT_REWARD * (N_CHECKPOINTS - self._collected[i])
                self._collected[i] = N_CHECKPOINTS
                continue
            if o.get("ball_owned_team") != 0 or o.get("ball_owned_player") != o["active"]:
                continue
            distance = ((o["ball"][0] - 1) ** 2 + o["ball"][1] ** 2) ** 0.5
            while self._collected[i] < N_CHECKPOINTS:
                threshold = 0.99 - 0.8 / (N_CHECKPOINTS - 1) * self._collected[i]
                if distance > threshold:
                    break
                reward[i] += CHECKPOINT_REWARD
                self._collected[i] += 1
        return reward

    def step(self, action: np.ndarray) -> CopyStep:
        raw, reward, done, info = self.env.step([int(a) for a in action])
        self._steps += 1
        reward = np.asarray(reward, dtype=np.float32).reshape(self.n_agents)
        if self.checkpoints:
            reward = self._checkpoint_rewards(reward, raw)
        team = float(reward.mean())
        score = float(info.get("score_reward", 0.0))
        truncated = bool(done) and self._steps >= GAME_DURATION and score == 0.0
        terminated = bool(done) and not truncated
        return CopyStep(self._observe(raw), np.full(self.n_agents, team, np.float32), terminated, truncated,
                        {"won": float(score > 0)})

    def close(self) -> None:
        self.env.close()


class Football(PooledEnv):
    """A gfootball academy scenario; subclasses fix the scenario and its default agent count."""

    Params = GfootballParams
    SCENARIO: ClassVar[str] = ""
    DEFAULT_AGENTS: ClassVar[int] = 1

    def __init__(self, n_envs: int, seed: int, device="cpu", n_workers: int | None = None, name: str | None = None,
                 **params):
        import_gfootball()
        p = GfootballParams(**params)
        n_agents = p.n_agents or self.DEFAULT_AGENTS
        spec = EnvSpec(
            name=f"gfootball/{self.SCENARIO}", family="gfootball", n_agents=n_agents, obs_dim=115, state_dim=115,
            n_actions=19, episode_limit=GAME_DURATION, reward_mode="team", has_action_mask=False,
            return_bounds=(0.0, 1.0 if p.rewards == "scoring" else 2.0),
            description=f"GRF {self.SCENARIO}, {n_agents} controlled players, simple115v2, rewards={p.rewards}",
        )
        super().__init__(spec, functools.partial(FootballCopy, self.SCENARIO, n_agents, p.rewards), n_envs, seed,
                         device, n_workers=n_workers, episode_info_keys=("won",), name=name)


def _scenario(name: str, scenario: str, agents: int) -> type[Football]:
    return type(name, (Football,), {"SCENARIO": scenario, "DEFAULT_AGENTS": agents, "__module__": __name__,
                                    "__doc__": f"GRF {scenario}, {agents} agents by default."})


# CORA 6.6: "3 vs 1 with keeper (3 agents)"; the counterattack scenarios with 4 agents as in MAPPO's GRF setup.
Academy3v1Keeper = _scenario("Academy3v1Keeper", "academy_3_vs_1_with_keeper", 3)
AcademyCounterattackEasy = _scenario("AcademyCounterattackEasy", "academy_counterattack_easy", 4)
AcademyCounterattackHard = _scenario("AcademyCounterattackHard", "academy_counterattack_hard", 4)


def smoke_episode(steps: int = GAME_DURATION) -> None:
    """Play one academy_3_vs_1_with_keeper episode with idle actions (`python -m` this module; CI's check)."""
    import torch

    env = Academy3v1Keeper(n_envs=1, seed=0, n_workers=0)
    timestep, n = env.reset(), 0
    while not bool(timestep.done[0]) and n < steps:
        timestep = env.step(torch.zeros(1, env.spec.n_agents, dtype=torch.long))
        n += 1
    print(f"gfootball ok: {n} steps, return {float(timestep.episode_return[0]):g}, "
          f"obs {tuple(timestep.obs.shape)}, state {tuple(timestep.state.shape)}")
    env.close()


if __name__ == "__main__":
    smoke_episode()
