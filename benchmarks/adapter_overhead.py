"""What the library adapters cost over the raw library step: raw vs adapter environment-steps/s.

    python benchmarks/adapter_overhead.py [ENV ...] [--all] [--copies N] [--steps 100] [--repeats 5]
                                          [--workers N] [--json out.json]

For every adapter (default: one task per library; `--all`: every task) and the same number of
copies, under random actions (drawn before timing, so neither side pays for sampling):
- raw: the library itself in a plain loop, as a user without coopbench would step it, doing the work
  the adapter's output needs and nothing else: VMAS's batched `step` (+ `reset_at`/`reset` for
  finished copies); SMAX: JaxMARL's own auto-resetting `HeuristicEnemySMAX.step` plus
  `get_avail_actions`, `jax.vmap`-ed and jitted over the copies, results ready; for one-environment
  libraries, the copies stepped one after the other in this process through the library's own API
  (+ `reset` when done; + `state()` for MaMuJoCo and MAgent2's battle_v4, whose global state a
  centralized critic reads; MAgent2's blue team from the adapter's fixed script; GRF's raw observations
  converted to simple115v2 with gfootball's own converter);
- adapter: the coopbench environment with its copies in this process (`n_workers=0`): the same
  library work plus everything the adapter adds (conversion to tensors, shared buffers, auto-reset
  bookkeeping, episode statistics). `overhead = adapter time / raw time - 1` is what the issue's
  "at most 10%" is about;
- pooled (one-environment libraries only: MPE, RWARE, MaMuJoCo, MAgent2, GRF, SMAC): the adapter
  with its copies in `--workers` worker processes (default: one per core), i.e. parallel collection;
  on an idle machine with more than one core it is faster than raw, on a loaded one the pipes'
  wake-ups show.
Raw and adapter replay the same pre-drawn random actions and the same reset seeds, so they simulate
the same trajectories. Each repeat runs `--steps` steps of each variant in alternating blocks of
`--block` steps (so that they share the machine's load); rates are wall-clock environment-steps/s,
min / median / max over repeats. The overhead is the median over repeats of adapter/raw - 1 on this
process's CPU time (robust to other processes on a shared machine; the inline adapter and raw loop
run entirely in this process), with the wall-clock ratio beside it. One torch thread (`--threads`).
A task whose library is not installed (GRF unless built with `make gfootball`; StarCraft II always
here) is reported as skipped with the reason.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
import warnings

import numpy as np
import torch

from coopbench.base.errors import MissingDependencyError
from environments.adapters.process_pool import episode_seed

# name -> (adapter "module:Class", params, raw-loop factory name, default copies)
TASKS = {
    "vmas/navigation": ("environments.adapters.vmas_adapter:VmasNavigation", {}, "vmas", 64),
    "vmas/navigation-discrete": ("environments.adapters.vmas_adapter:VmasNavigation",
                                 {"continuous_actions": False}, "vmas", 64),
    "vmas/give_way": ("environments.adapters.vmas_adapter:VmasGiveWay", {}, "vmas", 16),
    "vmas/multi_give_way": ("environments.adapters.vmas_adapter:VmasMultiGiveWay", {}, "vmas", 16),
    "mpe/simple-spread-3": ("environments.adapters.mpe_adapter:SimpleSpread3", {}, "mpe", 8),
    "mpe/simple-spread-6": ("environments.adapters.mpe_adapter:SimpleSpread6", {}, "mpe", 8),
    "mpe/simple-spread-9": ("environments.adapters.mpe_adapter:SimpleSpread9", {}, "mpe", 8),
    **{f"rware/{size}-{n}ag-hard": (f"environments.adapters.rware_adapter:Rware{size.title()}{n}", {}, "rware", 8)
       for size in ("tiny", "small") for n in (2, 4, 8, 12)},
    "rware/warehouse-16ag": ("environments.adapters.rware_adapter:RwareWarehouse16", {}, "rware", 8),
    "mamujoco/ant-4x2": ("environments.adapters.mamujoco_adapter:Ant4x2", {}, "mamujoco", 4),
    "mamujoco/halfcheetah-2x3": ("environments.adapters.mamujoco_adapter:HalfCheetah2x3", {}, "mamujoco", 4),
    "mamujoco/halfcheetah-6x1": ("environments.adapters.mamujoco_adapter:HalfCheetah6x1", {}, "mamujoco", 4),
    "mamujoco/walker2d-2x3": ("environments.adapters.mamujoco_adapter:Walker2d2x3", {}, "mamujoco", 4),
    "mamujoco/hopper-3x1": ("environments.adapters.mamujoco_adapter:Hopper3x1", {}, "mamujoco", 4),
    "magent2/battle-40v40": ("environments.adapters.magent2_adapter:Battle40v40", {}, "magent2", 4),
    **{f"smax/{scenario}": (f"environments.adapters.smax_adapter:{cls}", {}, "smax", 64)
       for scenario, cls in (("3m", "Smax3m"), ("8m", "Smax8m"), ("2s3z", "Smax2s3z"), ("3s_vs_5z", "Smax3sVs5z"),
                             ("2s_vs_1sc", "Smax2sVs1sc"), ("smacv2_5_units", "SmaxV2FiveUnits"),
                             ("smacv2_10_units", "SmaxV2TenUnits"))},
    "gfootball/academy_3_vs_1_with_keeper": ("environments.adapters.gfootball_adapter:Academy3v1Keeper", {},
                                             "gfootball", 4),
    "smac/3m": ("environments.adapters.smac_adapter:Smac3m", {}, "smac", 1),
}
DEFAULT = ["vmas/navigation", "mpe/simple-spread-3", "rware/tiny-4ag-hard", "mamujoco/halfcheetah-2x3",
           "magent2/battle-40v40", "smax/3m", "gfootball/academy_3_vs_1_with_keeper", "smac/3m"]
BATCHED = ("vmas", "smax")  # natively batched: no worker processes, hence no "pooled" variant


def load(target: str):
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


# --- raw library loops: each returns (step_fn(k) for the k-th pre-drawn joint action, close) ------
# Raw loops replay the adapter's actions and reset seeds, so both sides simulate the same trajectories
# (MuJoCo's cost, for one, depends on the contacts of the state it is in).
def raw_vmas(cls, params: dict, copies: int, bank: list[torch.Tensor]):
    import vmas

    p = cls.Params(**params)
    kwargs = dict(p.scenario_kwargs)
    kwargs.update({k: getattr(p, k) for k in type(p).model_fields if k not in ("continuous_actions", "max_steps",
                                                                              "scenario_kwargs")})
    env = vmas.make_env(cls.SCENARIO, num_envs=copies, continuous_actions=p.continuous_actions,
                        max_steps=p.max_steps, seed=0, terminated_truncated=True, **kwargs)
    per_agent = [[a[:, i].contiguous() for i in range(env.n_agents)] for a in bank]
    env.reset()

    def step(i):
        _, _, terminated, truncated, _ = env.step(per_agent[i])
        done = terminated | truncated
        if done.any():
            if done.all():
                env.reset()
            else:
                for j in done.nonzero().flatten().tolist():
                    env.reset_at(j)

    return step, lambda: None


def raw_single(make_one, copies: int, bank: list[torch.Tensor], convert, step_one):
    """One library object per copy, stepped in turn; resets seeded like the adapter's copies."""
    envs = [make_one() for _ in range(copies)]
    episodes = [1] * copies
    for c, env in enumerate(envs):
        env.reset(seed=episode_seed(0, c, 0))
    actions = [[convert(env, a[c].numpy()) for c, env in enumerate(envs)] for a in bank]

    def step(i):
        for c, (env, action) in enumerate(zip(envs, actions[i], strict=True)):
            if step_one(env, action):
                env.reset(seed=episode_seed(0, c, episodes[c]))
                episodes[c] += 1

    return step, lambda: [env.close() for env in envs]


def parallel_env_step(env, action) -> bool:
    _, _, terms, truncs, _ = env.step(action)
    return any(terms.values()) or any(truncs.values())


def raw_mpe(cls, params, copies, bank):
    from environments.adapters.mpe_adapter import make_spread

    p = cls.Params(**params)
    return raw_single(lambda: make_spread(**p.model_dump()), copies, bank,
                      lambda env, a: {agent: int(a[i]) for i, agent in enumerate(env.possible_agents)},
                      parallel_env_step)


def raw_rware(cls, params, copies, bank):
    from environments.adapters.rware_adapter import make_warehouse

    p = cls.Params(**params)

    def step_one(env, action):
        _, _, done, truncated, _ = env.step(action)
        return done or truncated

    return raw_single(lambda: make_warehouse(p.env_id(), p.overrides()), copies, bank,
                      lambda env, a: a.tolist(), step_one)


def raw_mamujoco(cls, params, copies, bank):
    from environments.adapters.mamujoco_adapter import make_mamujoco

    p = cls.Params(**params)

    def convert(env, a):
        return {agent: a[i, : env.action_space(agent).shape[0]].copy() for i, agent in enumerate(env.possible_agents)}

    def step_one(env, action):  # a centralized critic also reads the library's global state
        done = parallel_env_step(env, action)
        env.state()
        return done

    return raw_single(lambda: make_mamujoco(**p.model_dump()), copies, bank, convert, step_one)


def raw_smax(cls, params, copies, bank):
    import jax

    from environments.adapters.smax_adapter import _build_jax_env

    jenv = _build_jax_env(cls.SCENARIO, cls.Params(**params))  # JaxMARL's HeuristicEnemySMAX, the adapter's args

    def raw_one(key, state, act):
        key, step_key = jax.random.split(key)
        obs, state, rewards, dones, _ = jenv.step(step_key, state, {a: act[i] for i, a in enumerate(jenv.agents)})
        return key, state, obs, rewards, dones, jenv.get_avail_actions(state)

    raw_step = jax.jit(jax.vmap(raw_one))
    keys = jax.random.split(jax.random.PRNGKey(0), copies)
    holder = {"keys": keys, "state": jax.jit(jax.vmap(jenv.reset))(keys)[1]}
    jax_bank = [jax.numpy.asarray(a.numpy(), dtype=jax.numpy.int32) for a in bank]

    def step(i):
        holder["keys"], holder["state"], *out = raw_step(holder["keys"], holder["state"], jax_bank[i])
        jax.block_until_ready(out)

    return step, lambda: None


def raw_magent2(cls, params, copies, bank):
    """battle_v4's PettingZoo `parallel_env` with the adapter's config and 40 v 40 start layout (its own
    layout is a square block per team, fixed by the map size, so `generate_map` is the one override),
    stepped with action dicts; the blue team's actions from the adapter's fixed script; `state()` for
    the global state a centralized critic reads; `reset` when an episode ends."""
    from magent2.environments.battle import battle

    from environments.adapters.magent2_adapter import BattleCopy, start_positions

    p = cls.Params(**params)
    red_pos, blue_pos = start_positions(p)
    script = BattleCopy(p.model_dump())  # only its blue_actions() (the fixed opponent) is used
    reward_args = dict(step_reward=p.step_reward, dead_penalty=p.dead_penalty, attack_penalty=p.attack_penalty,
                       attack_opponent_reward=p.attack_opponent_reward)

    class Battle(battle._parallel_env):
        def generate_map(self):
            self.env.add_agents(self.handles[0], method="custom", pos=red_pos)
            self.env.add_agents(self.handles[1], method="custom", pos=blue_pos)

    envs, observations, episodes = [], [], [1] * copies
    for c in range(copies):
        env = Battle(p.map_size, False, reward_args, p.max_cycles, False)
        observations.append(env.reset(seed=episode_seed(0, c, 0))[0])
        envs.append(env)
    actions = [a.numpy() for a in bank]

    def step(i):
        act = actions[i]
        for c, env in enumerate(envs):
            obs = observations[c]
            blue = [a for a in env.agents if a.startswith("blue")]
            blue_act = script.blue_actions(np.stack([obs[a] for a in blue])) if blue else []
            joint = {a: int(act[c, int(a.split("_")[1])]) for a in env.agents if a.startswith("red")}
            joint.update(zip(blue, (int(b) for b in blue_act), strict=True))
            obs, rewards, terms, truncs, _ = env.step(joint)
            if not env.agents or all(truncs.values()) or all(terms.values()):
                obs, _ = env.reset(seed=episode_seed(0, c, episodes[c]))  # (state() fails on an empty team)
                episodes[c] += 1
            else:
                env.state()
            observations[c] = obs

    return step, lambda: [env.close() for env in envs]


def raw_gfootball(cls, params, copies, bank):
    from gfootball.env.wrappers import Simple115StateWrapper

    from environments.adapters.gfootball_adapter import FootballCopy

    p = cls.Params(**params)
    holders = [FootballCopy(cls.SCENARIO, p.n_agents or cls.DEFAULT_AGENTS, p.rewards) for _ in range(copies)]
    envs, episodes = [], [1] * copies
    for c, holder in enumerate(holders):  # the library objects only: FootballCopy just builds them
        holder.config["game_engine_random_seed"] = episode_seed(0, c, 0)
        holder.env.reset()
        envs.append(holder.env)
    actions = [a.numpy() for a in bank]

    def step(i):
        for c, env in enumerate(envs):
            obs, _, done, _ = env.step(actions[i][c].tolist())
            Simple115StateWrapper.convert_observation(obs, True)
            if done:
                holders[c].config["game_engine_random_seed"] = episode_seed(0, c, episodes[c])
                episodes[c] += 1
                Simple115StateWrapper.convert_observation(env.reset(), True)

    return step, lambda: [holder.close() for holder in holders]


def raw_smac(cls, params, copies, bank):
    from environments.adapters.smac_adapter import make_starcraft

    envs = [make_starcraft(cls.KIND, dict(cls.TASK), params) for _ in range(copies)]
    for env in envs:
        env.reset()
    actions = [a.numpy() for a in bank]

    def step(i):
        for c, env in enumerate(envs):
            avail = np.stack(env.get_avail_actions())  # random actions restricted to the available ones
            choice = [int(a) if avail[j, a] else int(np.flatnonzero(avail[j])[0]) for j, a in enumerate(actions[i][c])]
            _, done, _ = env.step(choice)
            env.get_obs()
            env.get_state()
            if done:
                env.reset()

    return step, lambda: [env.close() for env in envs]


RAW = {"vmas": raw_vmas, "mpe": raw_mpe, "rware": raw_rware, "mamujoco": raw_mamujoco, "smax": raw_smax,
       "magent2": raw_magent2, "gfootball": raw_gfootball, "smac": raw_smac}


def action_bank(spec, copies: int, size: int, gen: torch.Generator) -> list[torch.Tensor]:
    if spec.discrete:
        return [torch.randint(spec.n_actions, (copies, spec.n_agents), generator=gen) for _ in range(size)]
    return [spec.action_low + (spec.action_high - spec.action_low)
            * torch.rand(copies, spec.n_agents, spec.action_dim, generator=gen) for _ in range(size)]


def adapter_loop(env, bank: list[torch.Tensor]):
    env.reset()
    return lambda i: env.step(bank[i])


def timed(step, steps: int, bank_size: int) -> float:
    start = time.perf_counter()
    for k in range(steps):
        step(k % bank_size)
    return time.perf_counter() - start


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def measure(name: str, copies: int | None, steps: int, repeats: int, workers: int | None, block: int) -> dict:
    target, params, family, default_copies = TASKS[name]
    copies = copies or default_copies
    cls = load(target)
    bank_size = 64
    pooled = family not in BATCHED
    envs = [cls(n_envs=copies, seed=0, n_workers=0, **params) if pooled else cls(n_envs=copies, seed=0, **params)]
    if pooled:
        envs.append(cls(n_envs=copies, seed=0, n_workers=workers, **params))
    bank = action_bank(envs[0].spec, copies, bank_size, torch.Generator().manual_seed(0))
    loops = {"raw": RAW[family](cls, params, copies, bank), "adapter": (adapter_loop(envs[0], bank), envs[0].close)}
    if pooled:
        loops["pooled"] = (adapter_loop(envs[1], bank), envs[1].close)
    wall: dict[str, list[float]] = {key: [] for key in loops}
    cpu: dict[str, list[float]] = {key: [] for key in loops}
    position = {key: 0 for key in loops}
    for repeat in range(repeats + 1):  # the first round warms up and is not recorded
        seconds = {key: 0.0 for key in loops}
        cpu_seconds = {key: 0.0 for key in loops}
        for _ in range(0, steps, block):  # small alternating blocks: the loops share the machine's load
            for key, (step, _) in loops.items():
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(block):
                    step(position[key] % bank_size)
                    position[key] += 1
                seconds[key] += time.perf_counter() - w0
                cpu_seconds[key] += time.process_time() - c0
        if repeat:
            for key in loops:
                wall[key].append(seconds[key])
                cpu[key].append(cpu_seconds[key])
    for _, close in loops.values():
        close()
    n_steps = copies * (steps // block) * block
    row = {"env": name, "copies": copies, "steps": (steps // block) * block, "repeats": repeats,
           "env_steps_per_s": {key: summary([n_steps / s for s in v]) for key, v in wall.items()},
           "cpu_env_steps_per_s": {key: summary([n_steps / s for s in v]) for key, v in cpu.items()},
           # adapter vs raw on this process's CPU time (the other processes sharing the machine do not
           # count), and on wall-clock time
           "overhead": summary([a / r - 1 for a, r in zip(cpu["adapter"], cpu["raw"], strict=True)]),
           "overhead_wall": summary([a / r - 1 for a, r in zip(wall["adapter"], wall["raw"], strict=True)])}
    if pooled:
        row["workers"] = envs[1].pool.n_workers
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("envs", nargs="*", help=f"tasks (default: {' '.join(DEFAULT)})")
    parser.add_argument("--all", action="store_true", help="every adapter task")
    parser.add_argument("--copies", type=int, help="copies per environment (default: per library)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per repeat")
    parser.add_argument("--block", type=int, default=10, help="steps per alternating block")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, help="worker processes of the pooled variant (default: per core)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    names = list(TASKS) if args.all else (args.envs or DEFAULT)
    print(f"torch threads: {torch.get_num_threads()}; env-steps/s min / median / max over {args.repeats} repeats")
    print(f"{'environment':28s} {'copies':>6s} {'raw':>22s} {'adapter':>22s} {'overhead':>8s} {'(wall)':>7s} "
          f"{'pooled (workers)':>26s}")
    results = []
    for name in names:
        try:
            row = measure(name, args.copies, args.steps, args.repeats, args.workers, args.block)
        except (MissingDependencyError, ImportError) as err:
            print(f"{name:28s} skipped: {err}", flush=True)
            results.append({"env": name, "skipped": str(err)})
            continue
        r = row["env_steps_per_s"]
        fmt = lambda s: "/".join(f"{s[k]:.0f}" for k in ("min", "median", "max"))  # noqa: E731
        pooled = f"{fmt(r['pooled'])} ({row['workers']})" if "pooled" in r else "-"
        print(f"{name:28s} {row['copies']:6d} {fmt(r['raw']):>22s} {fmt(r['adapter']):>22s} "
              f"{100 * row['overhead']['median']:7.1f}% {100 * row['overhead_wall']['median']:6.1f}% {pooled:>26s}",
              flush=True)
        results.append(row)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"threads": torch.get_num_threads(), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
