"""SMAX: JaxMARL's JAX re-implementation of SMAC-like micromanagement, batched with `jax.vmap`.

SMAX is its own benchmark (family "smax"), never StarCraft II: it shares map *names* with SMAC but
not the game engine, unit statistics or numbers, so its scores must never be compared with, or
aggregated into, SMAC/SMACv2 results (those are family "smac"/"smacv2", see smac_adapter.py).

The learners control the allied team; the enemy team is JaxMARL's `HeuristicEnemySMAX` (attack the
closest enemy in range, else walk to the enemy's half / follow a visible enemy), the opponent JaxMARL's
own SMAX baselines use. One jitted, vmapped function steps every copy, auto-resets the finished ones,
and returns observations, world state, masks, rewards and flags at once (episode statistics are the base's
EpisodeTracker, on the torch side);
torch sees the arrays zero-copy (see `make_batched_functions` for what its cost from Python is made of).

Scenarios are JaxMARL's (`jaxmarl.environments.smax.MAP_NAME_TO_SCENARIO`), except `2s_vs_1sc`, which
JaxMARL lacks (it has no Spine Crawler): coopbench registers it as a JaxMARL `Scenario` with one extra
immobile unit type (see `SPINE_CRAWLER`), an approximation documented in the task's config.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from coopbench.base.errors import MissingDependencyError
from environments.adapters import install_hint
from environments.base import BatchedEnv, EnvSpec, EpisodeTracker, TimeStep

INSTALL_HINT = install_hint("jaxmarl>=0.2,<0.3", "jax[cpu]>=0.4.30")

# JaxMARL's default unit table (smax_env.SMAX.__init__) and the Spine Crawler appended for 2s_vs_1sc.
# Spine Crawler (SC2 wiki, "normal" game speed like the table's cooldowns): 300 HP, range 7, 25 (+5 vs
# armored) damage -> 30 against the Stalkers it faces, cooldown 1.85 s, sight 11, immobile (velocity 0).
SPINE_CRAWLER = {"name": "spine_crawler", "shorthand": "c", "velocity": 0.0, "attack": 30.0, "attack_range": 7.0,
                 "sight_range": 11.0, "radius": 1.0, "health": 300.0, "cooldown": 1.85}


class SmaxParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_steps: int = Field(100, gt=0, description="JaxMARL's max_steps (100 for every scenario); JaxMARL checks the "
                           "time limit before counting the step, so an episode lasts at most max_steps + 1 steps")
    enemy_shoots: bool = True
    attack_mode: Literal["closest", "random"] = Field("closest", description="heuristic enemy's target choice")
    see_enemy_actions: bool = True
    walls_cause_death: bool = True
    won_battle_bonus: float = Field(1.0, ge=0)
    observation_type: Literal["unit_list", "conic"] = "unit_list"


def _import_jaxmarl():
    try:
        import jax
        import jax.numpy as jnp
        from jaxmarl.environments.smax import HeuristicEnemySMAX, Scenario, map_name_to_scenario
    except ImportError as err:
        raise MissingDependencyError(f"jaxmarl (SMAX) and jax could not be imported ({err})", INSTALL_HINT) from None
    _enable_compilation_cache(jax)
    return jax, jnp, HeuristicEnemySMAX, Scenario, map_name_to_scenario


def _enable_compilation_cache(jax) -> None:
    """Compiling one scenario's step takes 10-60 s on a CPU; every run and every evaluation builds new
    environments, so compiled functions are kept on disk (JAX's persistent cache) unless the user chose
    a cache directory already ($JAX_COMPILATION_CACHE_DIR) or $COOPBENCH_JAX_CACHE is empty."""
    if jax.config.jax_compilation_cache_dir:
        return
    path = os.environ.get("COOPBENCH_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "coopbench", "jax"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)


def _build_jax_env(scenario_name: str, p: SmaxParams):
    """The JaxMARL environment object of a scenario (heuristic enemy), with coopbench's 2s_vs_1sc."""
    jax, jnp, HeuristicEnemySMAX, Scenario, map_name_to_scenario = _import_jaxmarl()
    kwargs = dict(max_steps=p.max_steps, see_enemy_actions=p.see_enemy_actions, walls_cause_death=p.walls_cause_death,
                  won_battle_bonus=p.won_battle_bonus, observation_type=p.observation_type)
    if scenario_name == "2s_vs_1sc":
        import inspect

        from jaxmarl.environments.smax import SMAX
        defaults = {k: v.default for k, v in inspect.signature(SMAX.__init__).parameters.items()}
        extra = len(defaults["unit_type_names"])  # the Spine Crawler's type index
        kwargs.update(
            scenario=Scenario(jnp.array([2, 2, extra], dtype=jnp.uint8), 2, 1, False, False),
            unit_type_names=[*defaults["unit_type_names"], SPINE_CRAWLER["name"]],
            unit_type_shorthands=[*defaults["unit_type_shorthands"], SPINE_CRAWLER["shorthand"]],
        )
        for field, key in (("unit_type_velocities", "velocity"), ("unit_type_attacks", "attack"),
                           ("unit_type_attack_ranges", "attack_range"), ("unit_type_sight_ranges", "sight_range"),
                           ("unit_type_radiuses", "radius"), ("unit_type_health", "health"),
                           ("unit_type_weapon_cooldowns", "cooldown")):
            kwargs[field] = jnp.append(defaults[field], SPINE_CRAWLER[key])
    else:
        try:
            kwargs["scenario"] = map_name_to_scenario(scenario_name)
        except KeyError:
            raise MissingDependencyError(f"jaxmarl has no SMAX scenario {scenario_name!r}", INSTALL_HINT) from None
    return HeuristicEnemySMAX(enemy_shoots=p.enemy_shoots, attack_mode=p.attack_mode, **kwargs)


class BatchedFunctions(NamedTuple):
    """The jitted functions over all copies (make_batched_functions)."""

    reset: Callable  # keys[B] -> (carry, obs, world_state, avail)
    step: Callable  # (carry, actions[B, N]) -> (carry, fields)
    pack: Callable  # (keys, states) -> carry
    unpack: Callable  # carry -> (keys, states)
    state_def: Any  # the tree structure of JaxMARL's state


def make_batched_functions(env, n_envs: int) -> BatchedFunctions:
    """Jitted functions that step every copy in one call and reset the finished ones in it. Built for the cost
    of a step as seen from Python (the measurements behind each choice: benchmarks/README.md, "Environment
    adapters: measured costs behind the design"):

    - What a copy carries from step to step (PRNG key, JaxMARL state) is one `carry` array [B, W] of 32-bit
      words: jax's dispatch costs per input or output array, and JaxMARL's state alone has a dozen.
      `pack`/`unpack` convert (for checkpoints).
    - `step(carry, actions)` returns the TimeStep's arrays as 5 `fields`: (obs, final_obs) stacked, (world_state,
      final_world_state) stacked, avail, (terminated, truncated), and (won, team reward): each array handed to
      torch costs Python time, during which XLA's idle threads spin; one array for everything made XLA's step
      slower, stacking these few did not.
    - Episode statistics are not kept here: SmaxEnv sums the team reward with the base's EpisodeTracker (the
      same float32 sums this step once kept in its carry; a few torch ops).
    - JaxMARL's auto-resetting step resets every copy and keeps the finished ones' resets: only the finished
      copies are reset here, with the same keys, hence the same episodes.
    """
    import jax
    import jax.numpy as jnp

    agents = env.agents
    n_allies = env.num_allies

    def stack_obs(obs):
        return jnp.stack([obs[a] for a in agents]), obs["world_state"]

    def strong(tree):
        # reset() returns weakly typed leaves (e.g. `step`), step() strongly typed ones: without this the
        # step function would be compiled twice (once for the states reset returns, once for its own)
        return jax.tree.map(lambda x: x.astype(x.dtype), tree)

    def stack_avail(state):
        avail = env.get_avail_actions(state)
        return jnp.stack([avail[a] for a in agents]).astype(bool)

    # one copy's carry: every leaf as 32-bit words (bitcast, or converted for bool/uint8), one after the other
    key0 = jax.random.PRNGKey(0)
    template = jax.eval_shape(lambda k: (k, strong(env.reset(k)[1])), key0)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    sizes = [int(np.prod(leaf.shape)) for leaf in leaves]
    for leaf in leaves:  # a wider or a smaller float type would not survive the conversion
        if leaf.dtype.itemsize != 4 and not (leaf.dtype.itemsize < 4 and jnp.issubdtype(leaf.dtype, jnp.integer)
                                             or leaf.dtype == jnp.bool_):
            raise TypeError(f"SMAX state leaf of type {leaf.dtype} cannot be carried as 32-bit words")

    def pack_one(keys, state):
        words = [jax.lax.bitcast_convert_type(x, jnp.uint32) if x.dtype.itemsize == 4 else x.astype(jnp.uint32)
                 for x in jax.tree_util.tree_leaves((keys, state))]
        return jnp.concatenate([w.ravel() for w in words])

    def unpack_one(carry):
        parts = jnp.split(carry, np.cumsum(sizes)[:-1])
        values = [(jax.lax.bitcast_convert_type(w, leaf.dtype) if leaf.dtype.itemsize == 4 else w.astype(leaf.dtype))
                  .reshape(leaf.shape) for w, leaf in zip(parts, leaves, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, values)

    def reset_all(keys):
        def one(key):
            key, reset_key = jax.random.split(key)
            obs, state = env.reset(reset_key)
            o, ws = stack_obs(obs)
            return pack_one(key, strong(state)), o, ws, stack_avail(state)
        return jax.vmap(one)(keys)

    def step_one(carry, actions):
        key, state = unpack_one(carry)
        key, step_key, reset_key = jax.random.split(key, 3)
        act = {a: actions[i] for i, a in enumerate(agents)}
        obs_st, state_st, rewards, dones, _ = env.step_env(step_key, state, act)
        alive = state_st.state.unit_alive
        allies_dead = ~jnp.any(alive[:n_allies])
        enemies_dead = ~jnp.any(alive[n_allies:])
        done = dones["__all__"]
        terminated = allies_dead | enemies_dead
        final_obs, final_ws = stack_obs(obs_st)
        reward = rewards[agents[0]].astype(jnp.float32)
        won = jnp.where(done, (enemies_dead & ~allies_dead).astype(jnp.float32), jnp.float32(jnp.nan))
        out = dict(done=done, final_obs=final_obs, final_ws=final_ws, stats=jnp.stack([won, reward]),
                   flags=jnp.stack([terminated & done, done & ~terminated]))
        return key, reset_key, strong(state_st), out

    def fresh(reset_keys):  # new episodes, as JaxMARL's auto-reset starts them
        obs, state = jax.vmap(env.reset)(reset_keys)
        o, ws = jax.vmap(stack_obs)(obs)
        return strong(state), o, ws

    few = max(1, n_envs // 8)

    def restart(done, reset_keys, states, obs, ws):
        """The finished copies' next episodes: none; up to `few` (gathered, reset, scattered back); or, when more
        finished, every copy reset and the finished ones' kept, as JaxMARL does."""
        def none():
            return states, obs, ws

        def some():
            rows = jnp.nonzero(done, size=few, fill_value=n_envs)[0]  # rows past the end are dropped by `put`
            state_re, o_re, ws_re = fresh(reset_keys[jnp.minimum(rows, n_envs - 1)])
            put = lambda x, y: x.at[rows].set(y, mode="drop")  # noqa: E731
            return jax.tree.map(put, states, state_re), put(obs, o_re), put(ws, ws_re)

        def every():
            state_re, o_re, ws_re = fresh(reset_keys)
            pick = lambda r, x: jnp.where(done.reshape(-1, *[1] * (x.ndim - 1)), r, x)  # noqa: E731
            return jax.tree.map(pick, state_re, states), pick(o_re, obs), pick(ws_re, ws)

        count = jnp.sum(done)
        return jax.lax.switch(jnp.where(count == 0, 0, jnp.where(count <= few, 1, 2)), (none, some, every))

    def step_all(carry, actions):
        keys, reset_keys, states, out = jax.vmap(step_one)(carry, actions)
        states, obs, ws = restart(out["done"], reset_keys, states, out["final_obs"], out["final_ws"])
        carry = jax.vmap(pack_one)(keys, states)
        fields = (jnp.stack([obs, out["final_obs"]]), jnp.stack([ws, out["final_ws"]]),
                  jax.vmap(stack_avail)(states), out["flags"].T, out["stats"].T)
        return carry, fields

    return BatchedFunctions(jax.jit(reset_all), jax.jit(step_all), jax.jit(jax.vmap(pack_one)),
                            jax.jit(jax.vmap(unpack_one)), jax.tree_util.tree_structure(template[1]))


def _to_torch(arrays, device: torch.device) -> list[torch.Tensor]:
    """Tensors on JAX CPU arrays' own buffers. np.asarray is zero-copy (cheaper than dlpack; benchmarks/README.md).
    numpy marks the arrays read-only: JAX never reads or reuses an output buffer while it is referenced, so
    writing into such a tensor is harmless, and torch's warning about it is silenced (once for all arrays)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tensors = [torch.from_numpy(np.asarray(x)) for x in arrays]
    return tensors if device.type == "cpu" else [t.to(device) for t in tensors]


class SmaxEnv(BatchedEnv):
    """One SMAX scenario, `n_envs` copies stepped together. Subclasses name the scenario."""

    Params = SmaxParams
    SCENARIO: ClassVar[str] = ""

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        super().__init__(n_envs, seed, device, name or f"smax/{self.SCENARIO}")
        p = SmaxParams(**params)
        jax, jnp, *_ = _import_jaxmarl()
        self._jax, self._jnp = jax, jnp
        self.params = p
        self.jax_env = _build_jax_env(self.SCENARIO, p)
        env = self.jax_env
        self.n_agents = env.num_allies
        self.spec = EnvSpec(
            name=self.name, family="smax", n_agents=env.num_allies, obs_dim=int(env.obs_size),
            state_dim=int(env.state_size), n_actions=int(env.num_ally_actions), episode_limit=p.max_steps + 1,
            reward_mode="team", has_action_mask=True, return_bounds=(0.0, 1.0 + p.won_battle_bonus),
            description=f"SMAX (JaxMARL, not StarCraft II) scenario {self.SCENARIO}, heuristic enemy",
        )
        self._fns = make_batched_functions(env, n_envs)
        self._base_key = jax.random.PRNGKey(seed)
        self._carry = None  # every copy's key and state (make_batched_functions)
        self.tracker = EpisodeTracker(n_envs, self.device)

    # -- contract -------------------------------------------------------------------------------------------
    def reset(self) -> TimeStep:
        jax = self._jax
        keys = jax.random.split(self._base_key, self.n_envs)
        self._base_key = jax.random.fold_in(self._base_key, 1)
        self._carry, *views = self._fns.reset(keys)
        obs, ws, avail = _to_torch(jax.block_until_ready(views), self.device)
        self.tracker.reset()
        won = torch.full((self.n_envs,), float("nan"), device=self.device)
        return self.first_timestep(obs, ws, avail, {"won": won})

    def step(self, actions: torch.Tensor) -> TimeStep:
        if self._carry is None:
            raise RuntimeError("call reset() before step()")
        acts = actions.detach().to("cpu", torch.int32).numpy()  # a numpy argument: no separate device_put
        self._carry, fields = self._fns.step(self._carry, acts)
        # Wait first: np.asarray on an array still being computed waits too, at several times the CPU cost.
        obs2, ws2, avail, flags, stats = _to_torch(self._jax.block_until_ready(fields), self.device)
        (obs, final_obs), (ws, final_ws) = obs2.unbind(), ws2.unbind()
        terminated, truncated = flags.unbind()
        won, reward = stats.unbind()
        episode_return, episode_length = self.tracker.update(reward, terminated | truncated)
        return TimeStep(obs, ws, avail, reward.unsqueeze(1).expand(-1, self.n_agents), terminated, truncated,
                        final_obs, final_ws, episode_return, episode_length, {"won": won})

    def state_dict(self) -> dict:
        copy = lambda x: torch.from_numpy(np.array(x))  # noqa: E731
        state = {**super().state_dict(), "base_key": copy(self._base_key), "keys": None, "states": [],
                 "tracker": self.tracker.state_dict()}
        if self._carry is not None:
            keys, states = self._fns.unpack(self._carry)
            state.update(keys=copy(keys), states=[copy(leaf) for leaf in self._jax.tree_util.tree_leaves(states)])
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        jax, jnp = self._jax, self._jnp
        self._base_key = jnp.asarray(state["base_key"].numpy())
        self.tracker.load_state_dict(state["tracker"])
        if state["keys"] is None:
            self._carry = None
            return
        states = jax.tree_util.tree_unflatten(self._fns.state_def, [jnp.asarray(t.numpy()) for t in state["states"]])
        self._carry = self._fns.pack(jnp.asarray(state["keys"].numpy()), states)


def _scenario(name: str, scenario: str) -> type[SmaxEnv]:
    return type(name, (SmaxEnv,), {"SCENARIO": scenario, "__doc__": f"SMAX scenario {scenario} (JaxMARL)."})


Smax3m = _scenario("Smax3m", "3m")
Smax8m = _scenario("Smax8m", "8m")
Smax2s3z = _scenario("Smax2s3z", "2s3z")
Smax3sVs5z = _scenario("Smax3sVs5z", "3s_vs_5z")
Smax2sVs1sc = _scenario("Smax2sVs1sc", "2s_vs_1sc")
SmaxV2FiveUnits = _scenario("SmaxV2FiveUnits", "smacv2_5_units")
SmaxV2TenUnits = _scenario("SmaxV2TenUnits", "smacv2_10_units")

SCENARIO_CLASSES = {cls.SCENARIO: cls for cls in (Smax3m, Smax8m, Smax2s3z, Smax3sVs5z, Smax2sVs1sc, SmaxV2FiveUnits,
                                                   SmaxV2TenUnits)}
