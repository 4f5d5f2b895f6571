"""SMAX: JaxMARL's JAX re-implementation of SMAC-like micromanagement, batched with `jax.vmap`.

SMAX is its own benchmark (family "smax"), never StarCraft II: it shares map *names* with SMAC but
not the game engine, unit statistics or numbers, so its scores must never be compared with, or
aggregated into, SMAC/SMACv2 results (those are family "smac"/"smacv2", see smac_adapter.py).

The learners control the allied team; the enemy team is JaxMARL's `HeuristicEnemySMAX` (attack the
closest enemy in range, else walk to the enemy's half / follow a visible enemy), the opponent JaxMARL's
own SMAX baselines use. One jitted, vmapped function steps every copy, auto-resets the finished ones
and returns observations, world state, masks, rewards and flags at once; torch sees the arrays
through dlpack (zero-copy on CPU).

Scenarios are JaxMARL's (`jaxmarl.environments.smax.MAP_NAME_TO_SCENARIO`), except `2s_vs_1sc`, which
JaxMARL lacks (it has no Spine Crawler): coopbench registers it as a JaxMARL `Scenario` with one extra
immobile unit type (see `SPINE_CRAWLER`), an approximation documented in the task's config.
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from coopbench.errors import MissingDependencyError
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


def make_batched_functions(env):
    """(reset_fn, step_fn, raw_step_fn), jitted and vmapped over copies.

    `step_fn(keys, states, actions[B, N])` steps every copy, resets finished ones in the same call and returns
    (keys, states, floats[B, F], flags[B, K]): the float outputs (obs, world_state, final_obs, final_world_state,
    team_reward) and the boolean ones (avail, terminated, truncated, won) packed into one array each, so that
    torch receives two arrays per step instead of nine (each hand-over costs as much as a small scenario's step);
    `SmaxEnv.step` cuts them apart.
    `raw_step_fn` is JaxMARL's own auto-resetting `env.step` under vmap (no masks, no stacking): the benchmark's
    reference for the adapter's overhead.
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

    def reset_one(key):
        key, reset_key = jax.random.split(key)
        obs, state = env.reset(reset_key)
        o, ws = stack_obs(obs)
        return key, strong(state), o, ws, stack_avail(state)

    def step_one(key, state, actions):
        key, step_key, reset_key = jax.random.split(key, 3)
        act = {a: actions[i] for i, a in enumerate(agents)}
        obs_st, state_st, rewards, dones, _ = env.step_env(step_key, state, act)
        alive = state_st.state.unit_alive
        allies_dead = ~jnp.any(alive[:n_allies])
        enemies_dead = ~jnp.any(alive[n_allies:])
        done = dones["__all__"]
        terminated = allies_dead | enemies_dead
        won = enemies_dead & ~allies_dead
        final_obs, final_ws = stack_obs(obs_st)
        obs_re, state_re = env.reset(reset_key)
        state_next = strong(jax.tree.map(lambda r, s: jax.lax.select(done, r, s), state_re, state_st))
        o_re, ws_re = stack_obs(obs_re)
        obs_next = jnp.where(done, o_re, final_obs)
        ws_next = jnp.where(done, ws_re, final_ws)
        floats = jnp.concatenate([x.ravel().astype(jnp.float32) for x in
                                  (obs_next, ws_next, final_obs, final_ws, rewards[agents[0]])])
        flags = jnp.concatenate([stack_avail(state_next).ravel(),
                                 jnp.stack([terminated & done, done & ~terminated, won & done])])
        return key, state_next, floats, flags

    def raw_step_one(key, state, actions):
        key, step_key = jax.random.split(key)
        act = {a: actions[i] for i, a in enumerate(agents)}
        obs, state, rewards, dones, _ = env.step(step_key, state, act)
        return key, strong(state), obs, rewards, dones

    return jax.jit(jax.vmap(reset_one)), jax.jit(jax.vmap(step_one)), jax.jit(jax.vmap(raw_step_one))


def _to_torch(x, device: torch.device) -> torch.Tensor:
    tensor = torch.from_dlpack(x)
    return tensor if device.type == "cpu" else tensor.to(device)


class SmaxEnv(BatchedEnv):
    """One SMAX scenario, `n_envs` copies stepped together. Subclasses name the scenario."""

    Params = SmaxParams
    SCENARIO: ClassVar[str] = ""

    def __init__(self, n_envs: int, seed: int, device="cpu", **params):
        super().__init__(n_envs, seed, device)
        p = SmaxParams(**params)
        jax, jnp, *_ = _import_jaxmarl()
        self._jax, self._jnp = jax, jnp
        self.params = p
        self.jax_env = _build_jax_env(self.SCENARIO, p)
        env = self.jax_env
        self.n_agents = env.num_allies
        self.spec = EnvSpec(
            name=f"smax/{self.SCENARIO}", family="smax", n_agents=env.num_allies, obs_dim=int(env.obs_size),
            state_dim=int(env.state_size), n_actions=int(env.num_ally_actions), episode_limit=p.max_steps + 1,
            reward_mode="team", has_action_mask=True, return_bounds=(0.0, 1.0 + p.won_battle_bonus),
            description=f"SMAX (JaxMARL, not StarCraft II) scenario {self.SCENARIO}, heuristic enemy",
        )
        self._reset_fn, self._step_fn, self._raw_step_fn = make_batched_functions(env)
        self._base_key = jax.random.PRNGKey(seed)
        self._keys = None
        self._states = None
        self.tracker = EpisodeTracker(n_envs, self.device)

    # -- contract -------------------------------------------------------------------------------------------
    def reset(self) -> TimeStep:
        jax = self._jax
        self._keys = jax.random.split(self._base_key, self.n_envs)
        self._base_key = jax.random.fold_in(self._base_key, 1)
        self._keys, self._states, obs, ws, avail = self._reset_fn(self._keys)
        self.tracker.reset()
        obs_t, ws_t = _to_torch(obs, self.device), _to_torch(ws, self.device)
        return self.first_timestep(obs_t, ws_t, _to_torch(avail, self.device),
                                   {"won": torch.full((self.n_envs,), float("nan"), device=self.device)})

    def step(self, actions: torch.Tensor) -> TimeStep:
        if self._states is None:
            raise RuntimeError("call reset() before step()")
        acts = actions.detach().to("cpu", torch.int32).numpy()  # a numpy argument: no separate device_put
        self._keys, self._states, floats, flags = self._step_fn(self._keys, self._states, acts)
        d = self.device
        floats, flags = _to_torch(floats, d), _to_torch(flags, d)
        b, n, spec = self.n_envs, self.n_agents, self.spec
        o, s = n * spec.obs_dim, spec.state_dim
        obs, ws, final_obs, final_ws, team_reward = floats.split([o, s, o, s, 1], dim=1)
        avail, terminated_t, truncated_t, won = flags.split([n * spec.n_actions, 1, 1, 1], dim=1)
        team_reward, terminated_t, truncated_t = team_reward.squeeze(1), terminated_t.squeeze(1), truncated_t.squeeze(1)
        done = terminated_t | truncated_t
        episode_return, episode_length = self.tracker.update(team_reward, done)
        won_t = torch.where(done, won.squeeze(1).float(), torch.full_like(team_reward, float("nan")))
        return TimeStep(obs.reshape(b, n, -1), ws.contiguous(), avail.reshape(b, n, -1),
                        team_reward.unsqueeze(1).expand(-1, n), terminated_t.contiguous(), truncated_t.contiguous(),
                        final_obs.reshape(b, n, -1), final_ws.contiguous(), episode_return, episode_length,
                        {"won": won_t})

    def state_dict(self) -> dict:
        leaves = self._jax.tree_util.tree_leaves(self._states) if self._states is not None else []
        return {**super().state_dict(), "tracker": self.tracker.state_dict(),
                "keys": None if self._keys is None else torch.from_numpy(np.asarray(self._keys).copy()),
                "base_key": torch.from_numpy(np.asarray(self._base_key).copy()),
                "states": [torch.from_numpy(np.asarray(leaf).copy()) for leaf in leaves]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        jnp = self._jnp
        self.tracker.load_state_dict(state["tracker"])
        self._base_key = jnp.asarray(state["base_key"].numpy())
        if state["keys"] is None:
            self._keys = self._states = None
            return
        keys = jnp.asarray(state["keys"].numpy())
        _, template, *_ = self._reset_fn(keys)  # only its tree structure is used
        treedef = self._jax.tree_util.tree_structure(template)
        self._keys = keys
        self._states = self._jax.tree_util.tree_unflatten(treedef, [jnp.asarray(t.numpy()) for t in state["states"]])


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
