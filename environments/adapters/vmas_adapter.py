"""VMAS scenarios (navigation, give_way, multi_give_way) on the batched contract.

VMAS simulates its copies as one batch of torch tensors, so this adapter drives `vmas.make_env`
directly (no worker processes). What the adapter decides, and why:

- Team reward: VMAS returns one reward per agent (a shared shaping term plus each agent's own
  collision penalty, and with `shared_rew=False` each agent's own shaping). The contract's team tasks
  give every agent the team reward; here it is the mean over agents of VMAS's per-agent rewards, so
  the episode return is the mean of the agents' VMAS returns (BenchMARL's "episode_reward mean").
- Global state: VMAS has none; the state is the concatenation of the agents' observations.
- Episode end: a scenario's `done()` is a termination (navigation: every agent on its goal); reaching
  `max_steps` is a truncation. Finished copies are reset with `reset_at` (or one batched `reset` when
  every copy finished), and the step's observation of a finished copy goes to `final_obs`.
- Actions: continuous actions are clipped to VMAS's `[-u_range, u_range]` (the spec's action box);
  discrete actions are VMAS's `Discrete(9)` per agent.
- Randomness: VMAS keeps one random state for all its environments in the process
  (`Environment.vmas_random_state`). Each adapter swaps its own copy of that state in around every
  VMAS call, so a training environment and an evaluation environment in one process never draw
  from each other's stream, and `state_dict` holds this adapter's stream.
- Resume: `state_dict` snapshots every tensor reachable from the VMAS environment object (entity
  states, goals, shaping terms, controllers, step counters) by attribute path, plus the random
  state; `load_state_dict` copies them back, so a resumed run continues bit-for-bit (tested per
  scenario in tests/test_adapter_vmas.py).
"""

from __future__ import annotations

import ast
import contextlib
import random
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from coopbench.base.errors import CoopbenchError, MissingDependencyError
from environments.adapters import install_hint
from environments.base import BatchedEnv, EnvSpec, EpisodeTracker, TimeStep, team_return

INSTALL_HINT = install_hint("vmas>=1.5.2,<1.6")


def import_vmas():
    try:
        import vmas
    except ImportError:
        raise MissingDependencyError("vmas (the VMAS simulator)", INSTALL_HINT) from None
    return vmas


class VmasParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    continuous_actions: bool = Field(True, description="Box actions in [-u_range, u_range]; False: Discrete(9)")
    max_steps: int = Field(100, ge=1, description="horizon: reaching it truncates the episode")
    scenario_kwargs: dict[str, Any] = Field(default_factory=dict,
                                            description="keyword arguments of the VMAS scenario's make_world")


class NavigationParams(VmasParams):
    n_agents: int = Field(3, ge=1)
    shared_rew: bool = Field(False, description="every agent gets the sum of all agents' shaping rewards")
    collisions: bool = True


class MultiGiveWayParams(VmasParams):
    max_steps: int = Field(200, ge=1)


def _walk(obj, path: str, seen: set[int], tensors: dict[str, torch.Tensor], owners: dict[str, Any]) -> None:
    """Every tensor reachable from `obj` through VMAS objects, lists, tuples and dicts, by path."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj
        return
    if id(obj) in seen:
        return
    if isinstance(obj, (list, tuple)):
        seen.add(id(obj))
        owners[path] = obj
        for i, item in enumerate(obj):
            _walk(item, f"{path}[{i}]", seen, tensors, owners)
    elif isinstance(obj, dict):
        seen.add(id(obj))
        owners[path] = obj
        for key, item in obj.items():
            # Dicts keyed by objects (the physics step's per-entity force/torque scratch) have no
            # stable path and are rebuilt on every step.
            if isinstance(key, (str, int)):
                _walk(item, f"{path}[{key!r}]", seen, tensors, owners)
    elif type(obj).__module__.startswith("vmas.") and hasattr(obj, "__dict__"):
        seen.add(id(obj))
        owners[path] = obj
        for key, item in vars(obj).items():
            if key not in ("viewer", "_render_geoms", "_render_geoms_xform", "text_lines"):
                _walk(item, f"{path}.{key}", seen, tensors, owners)


def _tensors_of(env) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    owners: dict[str, Any] = {}
    _walk(env, "env", set(), tensors, owners)
    return tensors, owners


def _set_path(owners: dict[str, Any], path: str, value: torch.Tensor) -> None:
    """Create the tensor attribute (or item) at `path`, whose owner object already exists."""
    if path.endswith("]"):
        owner_path, key = path[: path.rindex("[")], path[path.rindex("[") + 1:-1]
        owner = owners[owner_path]
        if isinstance(owner, dict):
            owner[ast.literal_eval(key)] = value
        else:
            owner[int(key)] = value
    else:
        owner_path, key = path.rsplit(".", 1)
        setattr(owners[owner_path], key, value)


class VmasEnv(BatchedEnv):
    SCENARIO = ""
    Params = VmasParams

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        super().__init__(n_envs, seed, device, name or f"vmas/{self.SCENARIO}")
        vmas = import_vmas()
        from vmas.simulator.environment import Environment

        p = self.Params(**params)
        self.params = p
        self._shared_rng = Environment.vmas_random_state
        kwargs = dict(p.scenario_kwargs)
        for name in type(p).model_fields:
            if name not in VmasParams.model_fields:
                kwargs[name] = getattr(p, name)
        # The first draw of the shared random state is replaced by this adapter's own, seeded here.
        self._rng = [torch.random.get_rng_state(), np.random.get_state(), random.getstate()]
        with self._own_rng():
            self.env = vmas.make_env(self.SCENARIO, num_envs=n_envs, device=self.device,
                                     continuous_actions=p.continuous_actions, max_steps=p.max_steps, seed=seed,
                                     terminated_truncated=True, dict_spaces=False, **kwargs)
        agents = self.env.agents
        self.n_agents = len(agents)
        obs_dims = [self.env.observation_space[i].shape[0] for i in range(self.n_agents)]
        self.obs_dim = max(obs_dims)
        self._pad = any(d != self.obs_dim for d in obs_dims)
        if p.continuous_actions:
            dims = {self.env.action_space[i].shape[0] for i in range(self.n_agents)}
            ranges = {float(a.u_range) for a in agents}
            if len(dims) != 1 or len(ranges) != 1:
                raise ValueError(f"vmas/{self.SCENARIO}: agents differ in action size/range ({dims}, {ranges})")
            u = ranges.pop()
            n_actions, action_dim, low, high = 0, dims.pop(), -u, u
        else:
            counts = {self.env.action_space[i].n for i in range(self.n_agents)}
            if len(counts) != 1:
                raise ValueError(f"vmas/{self.SCENARIO}: agents differ in discrete action count {counts}")
            n_actions, action_dim, low, high = counts.pop(), 0, -1.0, 1.0
        self.spec = EnvSpec(
            name=self.name,
            family="vmas",
            n_agents=self.n_agents,
            obs_dim=self.obs_dim,
            state_dim=self.n_agents * self.obs_dim,
            n_actions=n_actions,
            action_dim=action_dim,
            action_low=low,
            action_high=high,
            episode_limit=p.max_steps,
            reward_mode="team",
            description=f"VMAS {self.SCENARIO} (vmas {vmas.__version__}); state = concatenated observations",
        )
        self.tracker = EpisodeTracker(n_envs, self.device)

    @contextlib.contextmanager
    def _own_rng(self):
        """Run VMAS with this adapter's random state in VMAS's process-wide slot."""
        others = list(self._shared_rng)
        self._shared_rng[:] = self._rng
        try:
            yield
        finally:
            self._rng = list(self._shared_rng)
            self._shared_rng[:] = others

    def _stack_obs(self, obs_list) -> torch.Tensor:
        if self._pad:
            obs_list = [torch.nn.functional.pad(o, (0, self.obs_dim - o.shape[-1])) for o in obs_list]
        return torch.stack(obs_list, dim=1).to(self.device, torch.float32)

    def reset(self) -> TimeStep:
        with self._own_rng():
            obs = self._stack_obs(self.env.reset())
        self.tracker.reset()
        state = obs.flatten(1)
        return self.first_timestep(obs, state)

    def step(self, actions: torch.Tensor) -> TimeStep:
        actions = actions.to(self.env.device)
        if self.spec.discrete:
            per_agent = [actions[:, i].long() for i in range(self.n_agents)]
        else:
            actions = actions.float().clamp(self.spec.action_low, self.spec.action_high)
            per_agent = [actions[:, i].contiguous() for i in range(self.n_agents)]
        with self._own_rng():
            obs_list, rewards, terminated, truncated, _ = self.env.step(per_agent)
            final_obs = self._stack_obs(obs_list)
            terminated = terminated.to(self.device)
            truncated = truncated.to(self.device) & ~terminated
            done = terminated | truncated
            obs = final_obs
            if done.any():
                if done.all():
                    obs = self._stack_obs(self.env.reset())
                else:
                    for i in done.nonzero().flatten().tolist():
                        self.env.reset_at(i, return_observations=False)
                    obs = self._stack_obs(self.env.get_from_scenario(get_observations=True, get_rewards=False,
                                                                     get_infos=False, get_dones=False)[0])
        per_agent_reward = torch.stack(rewards, dim=1).to(self.device, torch.float32)
        team = team_return(per_agent_reward, "team")
        reward = team.unsqueeze(1).expand(-1, self.n_agents).contiguous()
        episode_return, episode_length = self.tracker.update(team, done)
        return TimeStep(obs, obs.flatten(1), None, reward, terminated, truncated, final_obs, final_obs.flatten(1),
                        episode_return, episode_length)

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """VMAS's own picture of copy `index` (pyglet/OpenGL, headless: an EGL context, no display), 700 x 700."""
        if not 0 <= index < self.n_envs:
            raise ValueError(f"copy index {index} out of range: {self.spec.name} has {self.n_envs} copies")
        try:
            frame = self.env.render(mode="rgb_array", env_index=index, visualize_when_rgb=False)
        except Exception as err:  # pyglet raises its own types (no GL library, no display, no EGL device)
            raise CoopbenchError(
                f"{self.spec.name} cannot render here: VMAS draws with pyglet/OpenGL, which found no usable "
                f"OpenGL context ({type(err).__name__}: {' '.join(str(err).split())[:200]})",
                "install an EGL library (apt-get install libegl1 libgl1) for headless rendering, or run under a "
                "virtual display: xvfb-run -a coopbench render ...") from None
        return np.ascontiguousarray(frame)

    # --- resume ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        torch_rng, np_rng, py_rng = self._rng
        return {
            **super().state_dict(),
            "tracker": self.tracker.state_dict(),
            "vmas_tensors": {k: v.detach().clone() for k, v in _tensors_of(self.env)[0].items()},
            "vmas_rng": {"torch": torch_rng.clone(), "numpy": [np_rng[0], torch.from_numpy(np_rng[1].copy()),
                                                              *np_rng[2:]], "python": py_rng},
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.tracker.load_state_dict(state["tracker"])
        current, owners = _tensors_of(self.env)
        saved = state["vmas_tensors"]
        # Tensors that exist only here are scratch values VMAS recomputes before reading them (an
        # environment that has stepped holds a few that a freshly reset one has not created yet).
        with torch.no_grad():
            for path, value in saved.items():
                tensor = current.get(path)
                if tensor is not None and tensor.shape == value.shape and tensor.dtype == value.dtype:
                    tensor.copy_(value.to(tensor.device))
                else:
                    try:
                        _set_path(owners, path, value.to(self.env.device).clone())
                    except (KeyError, IndexError, ValueError, TypeError) as err:
                        raise ValueError(f"VMAS snapshot does not match this environment at {path}") from err
        rng = state["vmas_rng"]
        kind, keys, *rest = rng["numpy"]
        self._rng = [rng["torch"].clone(), (kind, keys.numpy().copy(), *rest), rng["python"]]


class VmasNavigation(VmasEnv):
    """CORA 6.3 Navigation: agents start at random positions and must reach their own goals."""

    SCENARIO = "navigation"
    Params = NavigationParams


class VmasGiveWay(VmasEnv):
    """CORA 6.3 Give-Way: two agents in a narrow corridor, goals at opposite ends; one must yield."""

    SCENARIO = "give_way"
    Params = VmasParams


class VmasMultiGiveWay(VmasEnv):
    """CORA 6.3 Multi-Give-Way: four agents cross a shared corridor by giving way to each other."""

    SCENARIO = "multi_give_way"
    Params = MultiGiveWayParams
