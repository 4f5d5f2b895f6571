"""Multi-Agent MuJoCo v5 (`gymnasium_robotics.mamujoco_v1`) on the batched contract.

Tasks (CORA 6.4, ACPO 7): Ant 4x2, HalfCheetah 2x3, HalfCheetah 6x1, Walker2d 2x3, Hopper 3x1, on
Gymnasium's MuJoCo v5 robots, each agent observing its joints and their `agent_obsk`-neighbours
(default 1, as in HARL/Zhong et al. 2024, which ACPO follows). One MaMuJoCo environment simulates
one robot, so copies run in worker processes (environments/adapters/process_pool.py).

What the adapter decides, and why:
- Global state: the library's `state()` (the single-agent robot's observation), for centralized
  critics.
- Observations: agents can observe different numbers of values (HalfCheetah 6x1: 9, 9, 8, 9, 9, 8;
  Hopper 3x1: 8, 9, 8); every observation is zero-padded at the end to the largest.
- Actions: Box(-1, 1) per agent (every task's joints share that range); an agent with fewer
  action dimensions than the largest (none of the five tasks) uses the first ones.
- Reward: MaMuJoCo gives every agent the robot's reward (the team reward).
- Episode end: the robot falling (Hopper, Walker2d, Ant "unhealthy") is a termination; the
  1000-step limit (Gymnasium's TimeLimit) a truncation.
- Stepping: each copy steps the single-agent robot under MaMuJoCo's parallel env (with its wrappers)
  and maps actions and observations through index maps built once from the library's own functions
  (`observation_gather`), instead of the parallel env's per-element Python; the results are the
  library's, to the bit (tests/test_adapter_mamujoco.py). A scenario whose observations are no such
  gather is stepped through the parallel env.
- Resume: exact. The snapshot is MuJoCo's integration state (`mj_getState(mjSTATE_INTEGRATION)`:
  time, qpos, qvel, actuator state, warm start, controls, applied forces), the derived body poses
  and forces that the robots' reward and observation read before the next simulation step, the
  TimeLimit's step count and the copy's generator.
"""

from __future__ import annotations

import functools
import operator
import os

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coopbench.base.errors import CoopbenchError, MissingDependencyError
from environments.adapters import install_hint
from environments.adapters.process_pool import CopyEnv, CopyObs, CopyStep, PooledEnv
from environments.base import EnvSpec

INSTALL_HINT = install_hint("gymnasium-robotics>=1.4,<1.5", "mujoco>=3.3,<5")
# Derived mjData fields that Gymnasium's v5 robots read between two simulation steps (rewards read
# body positions before stepping; Ant's observation reads the contact forces).
DERIVED_FIELDS = ("xpos", "xquat", "xipos", "cinert", "cvel", "cfrc_ext", "qfrc_actuator", "sensordata")


def import_mamujoco():
    try:
        import mujoco  # noqa: F401
        from gymnasium_robotics import mamujoco_v1
    except ImportError:
        raise MissingDependencyError("gymnasium-robotics and mujoco (Multi-Agent MuJoCo)", INSTALL_HINT) from None
    return mamujoco_v1


class MamujocoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: str = Field("HalfCheetah", description="Gymnasium MuJoCo robot (v5)")
    agent_conf: str = Field("2x3", description="agents x joints per agent")
    agent_obsk: int = Field(1, ge=0, description="graph distance of the joints an agent observes")
    max_episode_steps: int = Field(1000, ge=1, description="TimeLimit horizon (a truncation)")


def make_mamujoco(scenario: str, agent_conf: str, agent_obsk: int = 1, max_episode_steps: int = 1000):
    """The library environment this adapter drives: `mamujoco_v1.parallel_env(...)` (one robot)."""
    mamujoco_v1 = import_mamujoco()
    kwargs = {} if max_episode_steps == 1000 else {"max_episode_steps": max_episode_steps}
    return mamujoco_v1.parallel_env(scenario, agent_conf, agent_obsk=agent_obsk, **kwargs)


def _time_limit(env):
    from gymnasium.wrappers import TimeLimit

    wrapper = env.single_agent_env
    while not isinstance(wrapper, TimeLimit):
        wrapper = wrapper.env
    return wrapper


def dimensions(env) -> tuple[list[int], list[int], int]:
    agents = env.possible_agents
    return ([env.observation_space(a).shape[0] for a in agents], [env.action_space(a).shape[0] for a in agents],
            int(env.state().shape[0]))


def observation_gather(env) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None:
    """How the library's per-agent observations read the simulator, found from the library itself.

    MaMuJoCo builds each agent's observation with `obsk.build_obs(data, ...)`, element by element in
    Python; every entry is one mjData value, sometimes clipped (Ant's contact forces, Hopper's
    velocities). The library's own map from `state()` (`observation_factorization`) is not enough:
    Walker2d's state clips velocities that its agents observe unclipped. So `build_obs` is called on a
    stand-in for mjData whose arrays hold known values: distinct small ones give each entry's source,
    +-1e9 its clip bounds. Returns (fields, index [N, obs_dim], low, high) such that the observations
    are `clip(source[index], low, high)` with `source` = the fields flattened one after the other and a
    final 0.0 (the zero padding), checked on random values; None if the observation is no such gather.
    """
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import build_obs

    real = env.single_agent_env.unwrapped.data

    class StandIn:  # mjData's float arrays, as `arrays` gives them (zeros for a field read the first time)
        def __init__(self, arrays):
            self.arrays = arrays

        def __getattr__(self, name):
            if name not in self.arrays:
                value = getattr(real, name)
                if not isinstance(value, np.ndarray) or value.dtype != np.float64:
                    raise TypeError(f"build_obs reads {name}")
                self.arrays[name] = np.zeros(value.shape)
            return self.arrays[name]

    def observe(arrays) -> list[np.ndarray]:
        return [np.asarray(build_obs(StandIn(arrays), env.k_dicts[i], env.local_categories, env.mujoco_globals,
                                     env.global_categories), np.float64) for i in range(len(env.possible_agents))]

    try:
        shapes = {}
        observe(shapes)  # which fields it reads
        fields = list(shapes)
        sizes = [shapes[f].size for f in fields]
        n = sum(sizes)

        def arrays_of(source):
            parts = np.split(source, np.cumsum(sizes)[:-1])
            return {f: p.reshape(shapes[f].shape) for f, p in zip(fields, parts, strict=True)}

        markers = (np.arange(n) + 1.0) / (n + 1)  # distinct, inside every clip range
        position = {float(v): k for k, v in enumerate(markers)}
        read = observe(arrays_of(markers.copy()))
        index = np.full((len(read), max(len(o) for o in read)), n)  # padding reads the trailing 0.0
        low = np.full(index.shape, -np.inf)
        high = np.full(index.shape, np.inf)
        for i, o in enumerate(read):
            index[i, :len(o)] = [position[float(v)] for v in o]
        for bound, big in ((high, 1e9), (low, -1e9)):
            for i, o in enumerate(observe(arrays_of(np.full(n, big)))):
                bound[i, :len(o)] = np.where(o == big, bound[i, :len(o)], o)
        rng = np.random.default_rng(0)
        for _ in range(3):
            source = rng.normal(0.0, 30.0, n)
            expected = observe(arrays_of(source.copy()))
            got = np.clip(np.append(source, 0.0)[index], low, high)
            if not all(np.array_equal(got[i, :len(e)], e) for i, e in enumerate(expected)):
                return None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None
    return fields, index, low, high


class RobotCopy(CopyEnv):
    supports_snapshot = True

    def __init__(self, **params):
        import mujoco

        self.mujoco = mujoco
        self.env = make_mamujoco(**params)
        self.agents = list(self.env.possible_agents)
        obs_dims, self.action_dims, _ = dimensions(self.env)
        self.stacked = np.zeros((len(self.agents), max(obs_dims)), np.float32)
        self.robot = self.env.single_agent_env.unwrapped
        self.time_limit = _time_limit(self.env)
        self.spec_integration = mujoco.mjtState.mjSTATE_INTEGRATION
        # Fast path: step the single-agent robot under the parallel env (its wrappers: time limit, checks)
        # with index maps built once from the library, instead of the parallel env's per-element Python
        # (dict actions -> joint action, `build_obs` per agent, `state()`), which costs more than MuJoCo's
        # step on the small robots. tests/test_adapter_mamujoco.py checks it equals the library's step.
        self.gather = observation_gather(self.env)
        if self.gather is not None:
            fields, index, low, high = self.gather
            self.fields, self.obs_index = fields, index
            read = operator.attrgetter(*fields)  # one call for every array the observations read
            self.read_fields = read if len(fields) > 1 else (lambda data: (read(data),))
            # bounds in float32: float32 rounding is monotone, so clipping after it equals clipping before
            self.clip = (low.astype(np.float32), high.astype(np.float32)) if np.isfinite([low, high]).any() else None
            self.zero = np.zeros(1)
            # position of each joint-action entry in the flattened [N, action_dim] action, from the library's
            # own mapping applied to markers (entry k of agent i is i * action_dim + k + 1)
            width = max(self.action_dims)
            markers = {a: i * width + 1.0 + np.arange(d) for i, (a, d) in enumerate(zip(self.agents, self.action_dims,
                                                                                        strict=True))}
            self.action_index = self.env.map_local_actions_to_global_action(markers).astype(np.int64) - 1
            self.joint = np.zeros(len(self.action_index))  # float64, like the library's joint action
        else:  # observation that is no gather (another scenario): the library's parallel env step
            self.obs_rows = [(self.stacked[i, :d], a) for i, (a, d) in enumerate(zip(self.agents, obs_dims,
                                                                                     strict=True))]
            self.action_source, self.actions = None, {}

    def _gathered(self, state: np.ndarray) -> CopyObs:
        # Every agent's observation in one gather into a reused array (the pool copies it out before the next
        # step); the padding reads the trailing zero.
        obs = self.stacked
        source = np.concatenate((*self.read_fields(self.robot.data), self.zero), axis=None)  # flattened, joined
        obs[...] = source[self.obs_index]
        if self.clip is not None:
            np.maximum(obs, self.clip[0], out=obs)
            np.minimum(obs, self.clip[1], out=obs)
        return CopyObs(obs, state)

    def _observe(self, obs: dict) -> CopyObs:
        for row, a in self.obs_rows:  # rows of agents with fewer values keep their zero padding
            row[...] = obs[a]
        return CopyObs(self.stacked, self.env.state())

    def reset(self, seed: int) -> CopyObs:
        if self.gather is None:
            return self._observe(self.env.reset(seed=seed)[0])
        # the parallel env's reset is the robot's reset and `_get_obs()`
        state, _ = self.env.single_agent_env.reset(seed=seed)
        return self._gathered(state)

    def step(self, action: np.ndarray) -> CopyStep:
        if self.gather is None:
            return self._library_step(action)
        self.joint[...] = action.reshape(-1)[self.action_index]
        # the robot's observation is the parallel env's `state()` (same data, computed after the step)
        state, reward, terminated, truncated, _ = self.env.single_agent_env.step(self.joint)
        return CopyStep(self._gathered(state), float(reward), bool(terminated), bool(truncated) and not terminated)

    def _library_step(self, action: np.ndarray) -> CopyStep:
        if action is not self.action_source:  # the pool passes the same buffer row every step: views stay valid
            self.action_source = action
            self.actions = {a: action[i, :d]
                            for i, (a, d) in enumerate(zip(self.agents, self.action_dims, strict=True))}
        obs, rewards, terms, truncs, _ = self.env.step(self.actions)
        first = self.agents[0]
        terminated = bool(terms[first])
        truncated = bool(truncs[first]) and not terminated
        return CopyStep(self._observe(obs), float(rewards[first]), terminated, truncated)

    def get_state(self) -> dict:
        m, d = self.robot.model, self.robot.data
        physics = np.empty(self.mujoco.mj_stateSize(m, self.spec_integration))
        self.mujoco.mj_getState(m, d, physics, self.spec_integration)
        return {"physics": physics, "derived": {f: getattr(d, f).copy() for f in DERIVED_FIELDS},
                "elapsed": int(self.time_limit._elapsed_steps or 0), "rng": self.robot.np_random.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.env.reset(seed=0)  # wrappers in their in-episode state
        m, d = self.robot.model, self.robot.data
        self.mujoco.mj_setState(m, d, np.asarray(state["physics"], np.float64), self.spec_integration)
        self.mujoco.mj_forward(m, d)
        for field, value in state["derived"].items():
            getattr(d, field)[...] = value
        self.time_limit._elapsed_steps = int(state["elapsed"])
        self.robot.np_random.bit_generator.state = state["rng"]

    def render_rgb(self) -> np.ndarray:
        """Gymnasium's picture of the robot (its default tracking camera), 480 x 480, drawn off-screen by
        MuJoCo: with EGL unless `MUJOCO_GL` names another backend (osmesa, glfw)."""
        backend = os.environ.setdefault("MUJOCO_GL", "egl")
        try:
            self.robot.render_mode = "rgb_array"
            frame = self.robot.render()
        except Exception as err:  # mujoco.FatalError, PyOpenGL's import errors, ...
            robot, detail = self.robot.spec.id if self.robot.spec else "robot", " ".join(str(err).split())[:200]
            raise CoopbenchError(
                f"MaMuJoCo {robot} cannot render here: MuJoCo found no OpenGL context with MUJOCO_GL={backend} "
                f"({type(err).__name__}: {detail})",
                "install EGL (apt-get install libegl1 libgl1-mesa-dri; MUJOCO_GL=egl, the default here) or "
                "OSMesa (apt-get install libosmesa6; MUJOCO_GL=osmesa); unset MUJOCO_GL to use EGL") from None
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        self.env.close()


class MultiAgentMujoco(PooledEnv):
    """A MaMuJoCo v5 task; the registered ones are the subclasses below."""

    Params = MamujocoParams
    NAME = "mamujoco/custom"

    def __init__(self, n_envs: int, seed: int, device="cpu", n_workers: int | None = None, name: str | None = None,
                 **params):
        p = self.Params(**params)
        kwargs = p.model_dump()
        probe = make_mamujoco(**kwargs)  # dimensions and action range from the library itself
        obs_dims, action_dims, state_dim = dimensions(probe)
        space = probe.action_space(probe.possible_agents[0])
        low, high = float(space.low.min()), float(space.high.max())
        probe.close()
        n = len(obs_dims)
        spec = EnvSpec(
            name=self.NAME,
            family="mamujoco",
            n_agents=n,
            obs_dim=max(obs_dims),
            state_dim=state_dim,
            n_actions=0,
            action_dim=max(action_dims),
            action_low=low,
            action_high=high,
            episode_limit=p.max_episode_steps,
            reward_mode="team",
            description=(f"MaMuJoCo v5 {p.scenario} {p.agent_conf}, obsk={p.agent_obsk}; observation sizes {obs_dims} "
                         f"(zero-padded); state = the robot's single-agent observation ({state_dim})"),
        )
        super().__init__(spec, functools.partial(RobotCopy, **kwargs), n_envs, seed, device, n_workers=n_workers,
                         name=name)


class AntParams(MamujocoParams):
    scenario: str = "Ant"
    agent_conf: str = "4x2"


class HalfCheetah2x3Params(MamujocoParams):
    scenario: str = "HalfCheetah"
    agent_conf: str = "2x3"


class HalfCheetah6x1Params(MamujocoParams):
    scenario: str = "HalfCheetah"
    agent_conf: str = "6x1"


class Walker2dParams(MamujocoParams):
    scenario: str = "Walker2d"
    agent_conf: str = "2x3"


class HopperParams(MamujocoParams):
    scenario: str = "Hopper"
    agent_conf: str = "3x1"


class Ant4x2(MultiAgentMujoco):
    Params, NAME = AntParams, "mamujoco/ant-4x2"


class HalfCheetah2x3(MultiAgentMujoco):
    Params, NAME = HalfCheetah2x3Params, "mamujoco/halfcheetah-2x3"


class HalfCheetah6x1(MultiAgentMujoco):
    Params, NAME = HalfCheetah6x1Params, "mamujoco/halfcheetah-6x1"


class Walker2d2x3(MultiAgentMujoco):
    Params, NAME = Walker2dParams, "mamujoco/walker2d-2x3"


class Hopper3x1(MultiAgentMujoco):
    Params, NAME = HopperParams, "mamujoco/hopper-3x1"
