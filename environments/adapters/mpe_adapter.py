"""MPE simple spread with LAN's partial observability (LAN Appendix G), from the `mpe2` package.

`pettingzoo.mpe` no longer exists; MPE2 is its maintained successor. LAN modifies simple spread in
two ways and gives no numbers for either, so both are parameters here, with these defaults:

- Partial observability: "agents observe only those agents and landmarks within a fixed radius".
  An agent observes its own velocity and position, then for every landmark and every other agent (in
  a fixed order) the relative position and a visibility flag; entities farther than `view_radius`
  show zeros and flag 0. (MPE2's own `num_*_neighbors` option is k-nearest, not a radius.)
- World size: "a constant ratio between the environment size and the agent count". We keep the
  area per agent constant: agents and landmarks spawn uniformly in a square of area
  `area_per_agent * N` (default 4/3, so 3 agents get MPE's original [-1, 1]^2; 6 agents
  [-1.41, 1.41]^2; 9 agents [-1.73, 1.73]^2).

Everything else is MPE2's simple spread, unchanged and not copied: `PartialSpreadScenario`
subclasses MPE2's scenario and only rescales its spawn positions and replaces its observation;
physics, rewards (`local_ratio` mixes MPE2's global distance reward and local collision penalty)
and the 25-step horizon (`max_cycles`, a truncation) are MPE2's.

Team reward: the mean over agents of MPE2's per-agent rewards, given to every agent.
Global state: not MPE2's `state()` (the concatenated observations, which here would hide what the
agents cannot see) but the full positions and velocities of all agents and positions of all
landmarks: `[N agents x (pos, vel), N landmarks x pos]`, 6N numbers.
Resume: exact (entity states, step counter and the copy's generator are snapshotted).
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coopbench.base.errors import MissingDependencyError
from environments.adapters import install_hint
from environments.adapters.process_pool import CopyEnv, CopyObs, CopyStep, PooledEnv
from environments.base import EnvSpec

INSTALL_HINT = install_hint("mpe2>=1.1,<2")


def import_mpe2():
    try:
        import mpe2  # noqa: F401
        from mpe2.simple_spread import simple_spread
    except ImportError:
        raise MissingDependencyError("mpe2 (Multi Particle Environments v2)", INSTALL_HINT) from None
    return simple_spread


class SpreadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_agents: int = Field(3, ge=2, le=32, description="agents, and as many landmarks")
    view_radius: float = Field(1.0, gt=0, description="agents see landmarks and agents within this distance")
    area_per_agent: float = Field(4.0 / 3.0, gt=0, description="spawn area per agent (constant ratio)")
    max_cycles: int = Field(25, ge=1, description="episode length (MPE2 default)")
    local_ratio: float = Field(0.5, ge=0, le=1, description="MPE2's weight of the local collision reward")


@functools.cache
def _library_classes():
    """MPE2 subclasses, built on first use so that importing this module never needs mpe2."""
    simple_spread = import_mpe2()
    from gymnasium.utils import EzPickle
    from mpe2._mpe_utils.simple_env import SimpleEnv

    class PartialSpreadScenario(simple_spread.Scenario):
        def __init__(self, half_width: float, view_radius: float):
            super().__init__()
            self.half_width, self.view_radius = half_width, view_radius

        def reset_world(self, world, np_random) -> None:
            super().reset_world(world, np_random)  # MPE2 draws positions in [-1, 1]^2 ...
            for entity in world.entities:  # ... which we stretch to the task's world size
                entity.state.p_pos = entity.state.p_pos * self.half_width

        def _seen(self, agent, entity) -> list[np.ndarray]:
            rel = entity.state.p_pos - agent.state.p_pos
            if float(np.sqrt(rel @ rel)) <= self.view_radius:
                return [rel, np.ones(1)]
            return [np.zeros(2), np.zeros(1)]

        def observation(self, agent, world) -> np.ndarray:
            parts = [agent.state.p_vel, agent.state.p_pos]
            for landmark in world.landmarks:
                parts += self._seen(agent, landmark)
            for other in world.agents:
                if other is not agent:
                    parts += self._seen(agent, other)
            return np.concatenate(parts)

        def state(self, world) -> np.ndarray:
            parts = [x for a in world.agents for x in (a.state.p_pos, a.state.p_vel)]
            return np.concatenate(parts + [lm.state.p_pos for lm in world.landmarks])

    class PartialSpreadEnv(SimpleEnv, EzPickle):
        metadata = {**SimpleEnv.metadata, "name": "simple_spread_partial"}

        def __init__(self, N=3, view_radius=1.0, area_per_agent=4.0 / 3.0, max_cycles=25, local_ratio=0.5,
                     render_mode=None):
            EzPickle.__init__(self, N=N, view_radius=view_radius, area_per_agent=area_per_agent,
                              max_cycles=max_cycles, local_ratio=local_ratio, render_mode=render_mode)
            scenario = PartialSpreadScenario(math.sqrt(area_per_agent * N) / 2, view_radius)
            SimpleEnv.__init__(self, scenario=scenario, world=scenario.make_world(N), render_mode=render_mode,
                               max_cycles=max_cycles, continuous_actions=False, local_ratio=local_ratio)
            self.metadata["name"] = "simple_spread_partial"

    return PartialSpreadScenario, PartialSpreadEnv


def make_spread(n_agents=3, view_radius=1.0, area_per_agent=4.0 / 3.0, max_cycles=25, local_ratio=0.5):
    """The library environment this adapter drives: an MPE2 PettingZoo ParallelEnv (one copy)."""
    from mpe2._mpe_utils.simple_env import make_env
    from pettingzoo.utils.conversions import aec_to_parallel

    _, env_cls = _library_classes()
    return aec_to_parallel(make_env(env_cls)(N=n_agents, view_radius=view_radius, area_per_agent=area_per_agent,
                                             max_cycles=max_cycles, local_ratio=local_ratio))


class SpreadCopy(CopyEnv):
    """One MPE2 partially observable simple spread, driven through its PettingZoo parallel API."""

    supports_snapshot = True

    def __init__(self, **params):
        self.env = make_spread(**params)
        self.raw = self.env.unwrapped
        self.agents = list(self.env.possible_agents)

    def _observe(self, obs: dict) -> CopyObs:
        stacked = np.stack([obs[a] for a in self.agents]).astype(np.float32, copy=False)
        return CopyObs(stacked, self.raw.scenario.state(self.raw.world).astype(np.float32))

    def reset(self, seed: int) -> CopyObs:
        obs, _ = self.env.reset(seed=seed)
        return self._observe(obs)

    def step(self, action: np.ndarray) -> CopyStep:
        obs, rewards, terms, truncs, _ = self.env.step({a: int(action[i]) for i, a in enumerate(self.agents)})
        team = float(sum(rewards.values())) / len(self.agents)
        terminated = any(terms.values())
        truncated = any(truncs.values()) and not terminated
        return CopyStep(self._observe(obs), team, terminated, truncated)

    def get_state(self) -> dict:
        world = self.raw.world
        return {
            "pos": np.stack([e.state.p_pos for e in world.entities]),
            "vel": np.stack([e.state.p_vel for e in world.entities]),
            "comm": np.stack([a.state.c for a in world.agents]),
            "steps": int(self.raw.steps),
            "rng": self.raw.np_random.bit_generator.state,
        }

    def set_state(self, state: dict) -> None:
        self.env.reset(seed=0)  # puts the wrappers and agent lists in their in-episode state
        world = self.raw.world
        for k, entity in enumerate(world.entities):
            entity.state.p_pos = np.array(state["pos"][k], dtype=np.float64)
            entity.state.p_vel = np.array(state["vel"][k], dtype=np.float64)
        for k, agent in enumerate(world.agents):
            agent.state.c = np.array(state["comm"][k], dtype=np.float64)
        self.raw.steps = int(state["steps"])
        self.raw.np_random.bit_generator.state = state["rng"]

    def render_rgb(self) -> np.ndarray:
        """MPE2's own picture (pygame, drawn off-screen: `rgb_array` needs no display), 700 x 700."""
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # in case pygame opens its video subsystem
        self.raw.render_mode = "rgb_array"
        return np.ascontiguousarray(self.raw.render())

    def close(self) -> None:
        self.env.close()


class SimpleSpread(PooledEnv):
    """LAN Appendix G: simple spread with N agents, radius-limited observations, world grown with N.

    `SimpleSpread3/6/9` are the registered tasks (their `n_agents` defaults to the task's count).
    """

    Params = SpreadParams

    def __init__(self, n_envs: int, seed: int, device="cpu", n_workers: int | None = None, name: str | None = None,
                 **params):
        p = self.Params(**params)
        import_mpe2()
        n = p.n_agents
        obs_dim = 4 + 3 * n + 3 * (n - 1)
        spec = EnvSpec(
            name=f"mpe/simple-spread-{n}",
            family="mpe",
            n_agents=n,
            obs_dim=obs_dim,
            state_dim=6 * n,
            n_actions=5,
            episode_limit=p.max_cycles,
            reward_mode="team",
            description=(f"MPE2 simple spread, {n} agents, view radius {p.view_radius}, world half-width "
                         f"{math.sqrt(p.area_per_agent * n) / 2:.3f} (LAN App. G); state = all positions/velocities"),
        )
        make_copy = functools.partial(SpreadCopy, n_agents=n, view_radius=p.view_radius,
                                      area_per_agent=p.area_per_agent, max_cycles=p.max_cycles,
                                      local_ratio=p.local_ratio)
        super().__init__(spec, make_copy, n_envs, seed, device, n_workers=n_workers, name=name)


class Spread3Params(SpreadParams):
    n_agents: int = Field(3, ge=2, le=32)


class Spread6Params(SpreadParams):
    n_agents: int = Field(6, ge=2, le=32)


class Spread9Params(SpreadParams):
    n_agents: int = Field(9, ge=2, le=32)


class SimpleSpread3(SimpleSpread):
    Params = Spread3Params


class SimpleSpread6(SimpleSpread):
    Params = Spread6Params


class SimpleSpread9(SimpleSpread):
    Params = Spread9Params
