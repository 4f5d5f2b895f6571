"""Analyses: the papers' results that are exact computations, not training curves (coopbench.claims.ANALYSES).

Each analysis is a function `NAME(quick: bool = False) -> dict` returning

    {"analysis": registered name, "description": str, "settings": {every parameter used},
     "values": {flat dotted key: number or list of numbers}, "details": {anything else, for a human}}

and `run_analysis(name, out)` (one Snakemake job, `python -m leaderboard analysis NAME --out FILE`) runs one,
adds its provenance and writes it atomically. Claims with `analysis:` read one key of `values`.

- `acpo_table1` (ACPO Table 1): the exact tabular planners of algorithms/acpi.py on the 3x3 game from
  pi(A) = 0.6: the converged joint action and the return of its greedy execution.
- `cora_fig9` (CORA Fig. 9, A.10): CORA's core QP (algorithms/core_qp.py) on m sampled coalitions against
  the full problem, n = 7 agents: violation ratio, objective gap, time per solve.
- `acpo_fig5` (ACPO Fig. 5, App. J): time of one training iteration (collection + update) of ACPO, HAPPO and
  HATRPO relative to MAPPO's in the same repeat, on RWARE with 2 to 12 agents.
- `lan_parameter_counts` (LAN Tables 1 and 3): parameters of LAN's centralized value and QMIX's / QPLEX's mixers
  instantiated at each SMAC map's observation and state sizes, computed with SMAC's own formulas.

The helpers (`greedy_return`, `cora_problem`, `full_objective`, `sampled_coalition_errors`,
`build_learner`, `time_iterations`) are shared with the scripts of benchmarks/.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from coopbench.base.errors import CoopbenchError


@contextmanager
def _torch_threads(n: int):
    """Timings on `n` torch threads (the benchmarks' setting); the caller's setting is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- ACPO Table 1 ----------------------------------------------------------------------------------------------
ACPO_3X3 = "matrix/acpo-3x3"
ACTION_LABELS = ("A", "B", "C")  # ACPO Table 1's names of the 3x3 game's actions


def acpo_3x3_game(gamma: float = 0.99):
    """The 3x3 game of ACPO Table 1 as an ExactGame (its config's parameters, the finite horizon: one step)."""
    from algorithms.acpi import ExactGame
    from coopbench.config import load_env_file
    from environments.registry import make

    env = make(ACPO_3X3, n_envs=1, seed=0, **load_env_file(ACPO_3X3).params)
    return ExactGame.of(env.model(), gamma=gamma)


def _initial_state(game) -> int:
    state = int(game.initial.argmax())
    if float(game.initial[state]) != 1.0:
        raise ValueError("the game must start in one state (a deterministic initial distribution)")
    return state


def greedy_return(game, policies: Sequence[torch.Tensor], chained: bool) -> tuple[tuple[int, ...], float]:
    """The joint action at step 0 in the initial state when every agent plays its most probable action, and
    the exact expected return of executing the greedy (argmax) tables from the initial state.

    `chained`: ACPI tables pi_i[T, S, A_1..A_i] (agent i conditions on the earlier agents' greedy actions),
    else decentralized tables pi_i[T, S, A_i] (simultaneous update, iterative BR, HASPI).
    """
    from algorithms.acpi import chained_act, chained_evaluation, evaluate_joint, joint_from_state

    s0 = _initial_state(game)
    deterministic = [torch.nn.functional.one_hot(pi.argmax(-1), pi.shape[-1]).to(pi.dtype) for pi in policies]
    if chained:
        zero = torch.zeros(1, dtype=torch.long)
        action = tuple(chained_act(deterministic, zero, torch.full((1,), s0))[0].tolist())
        value = chained_evaluation(game, deterministic).value
    else:
        action = tuple(int(pi[0, s0].argmax()) for pi in deterministic)
        value = float(game.initial @ evaluate_joint(game, joint_from_state(game, deterministic))[1][0])
    return action, value


def _label(action: tuple[int, ...]) -> str:
    return "(" + ", ".join(ACTION_LABELS[a] if a < len(ACTION_LABELS) else str(a) for a in action) + ")"


def _planner_row(game, result, chained: bool) -> tuple[dict[str, float], dict[str, Any]]:
    s0 = _initial_state(game)
    action, value = greedy_return(game, result.policies, chained)
    values = {"return": value, "expected_return": result.value, "iterations": result.iterations,
              "converged": float(result.converged)}
    details = {"joint_action": _label(action), "converged": result.converged, "iterations": result.iterations,
               "expected_return": result.value,
               # step 0, initial state: agent 1's distribution; agent 2's given each action of agent 1 (ACPI)
               "policies": [pi[0, s0].tolist() for pi in result.policies]}
    return values, details


def acpo_table1(quick: bool = False) -> dict:
    """ACPO Table 1: ACPI, simultaneous update, iterative best response, HASPI (alpha 1 and 5) from pi(A) = 0.6.

    Exact and cheap: `quick` changes nothing. `<planner>.return` is the return of the converged tables'
    greedy joint action (5 for (A, A), 10 (B, B), 20 (C, C), -20 off the diagonal); `<planner>.expected_return`
    that of the converged (for HASPI stochastic) policy itself.
    """
    from algorithms.acpi import (
        acpi,
        chained_policies,
        first_action_distribution,
        haspi,
        iterative_best_response,
        simultaneous_update,
        state_policies,
    )

    gamma, first_prob, alphas, order, seed = 0.99, 0.6, (1.0, 5.0), "random", 0
    game = acpo_3x3_game(gamma)
    start = first_action_distribution(game.n_actions[0], first_prob)  # (0.6, 0.2, 0.2): the rest uniform
    planners = {
        "acpi": (lambda: acpi(game, chained_policies(game, start)), True),
        "simultaneous": (lambda: simultaneous_update(game, state_policies(game, start)), False),
        "iterative_br": (lambda: iterative_best_response(game, state_policies(game, start), order="fixed"), False),
    }
    for alpha in alphas:
        planners[f"haspi_alpha{alpha:g}"] = (
            lambda alpha=alpha: haspi(game, state_policies(game, start), alpha, order=order, seed=seed), False)
    values: dict[str, float] = {}
    details: dict[str, Any] = {"payoffs": game.reward[_initial_state(game)].reshape(game.n_actions).tolist(),
                               "actions": list(ACTION_LABELS), "planners": {}}
    for name, (plan, chained) in planners.items():
        row, detail = _planner_row(game, plan(), chained)
        values.update({f"{name}.{key}": value for key, value in row.items()})
        details["planners"][name] = detail
    # What the unstated part of the initialization does (algorithms/acpi.py's docstring): with pi(B) != pi(C)
    # both HASPI rows of Table 1 hold, e.g. (0.6, 0.1, 0.3).
    asymmetric = [0.6, 0.1, 0.3]
    details["haspi_from_0.6_0.1_0.3"] = {
        f"alpha{alpha:g}": _label(greedy_return(game, haspi(
            game, state_policies(game, torch.tensor(asymmetric, dtype=torch.float64)), alpha, order=order,
            seed=seed).policies, chained=False)[0]) for alpha in alphas}
    return {
        "analysis": "acpo-table1",
        "description": "ACPO Table 1: exact ACPI, simultaneous update, iterative best response and HASPI on the 3x3 "
                       "game (payoffs 5, 10, 20 on the diagonal, -20 elsewhere) from pi(A) = 0.6 (the rest uniform) "
                       "for both agents; `<planner>.return` is the return of the converged greedy joint action",
        "settings": {"env": ACPO_3X3, "gamma": gamma, "horizon": game.horizon, "first_action_prob": first_prob,
                     "initial_distribution": start.tolist(), "haspi_alphas": list(alphas), "haspi_order": order,
                     "haspi_seed": seed, "haspi_tol": 1e-12, "iterative_br_order": "fixed", "quick": quick},
        "values": values,
        "details": details,
    }


# --- CORA Fig. 9 -----------------------------------------------------------------------------------------------
CORA_FIG9_M = (5, 10, 20, 40, 60, 80, 100, 126)


def cora_problem(n: int, trials: int, noise: float, generator: torch.Generator):
    """Random coalition advantages (the paper only says "randomly generated"): per trial A_N ~ N(0, 1) and,
    for each of the 2^n - 2 proper coalitions C, A_C = |C| / n * A_N + N(0, noise^2).

    Returns (A_C [trials, 2^n - 2], A_N [trials], members [2^n - 2, n]); row j of members has bitmask j + 1.
    """
    from algorithms.core_qp import all_proper_coalitions

    members = all_proper_coalitions(n)
    a_n = torch.randn(trials, generator=generator, dtype=torch.float64)
    a_c = members.sum(-1) / n * a_n[:, None] + noise * torch.randn(trials, members.shape[0], generator=generator,
                                                                   dtype=torch.float64)
    return a_c, a_n, members


def full_objective(credits: torch.Tensor, a_c: torch.Tensor, a_n: torch.Tensor, members: torch.Tensor,
                   lam: float) -> torch.Tensor:
    """J(A) of the full problem (eq. 8, all coalitions) per sample: the smallest eps that makes the credits A
    feasible for every coalition, plus lam * sum_i (A_i - A_N / n)^2."""
    n = credits.shape[-1]
    eps = (a_c - credits @ members.double().T).amax(-1).clamp(min=0)
    return eps + lam * ((credits - a_n[:, None] / n) ** 2).sum(-1)


def sampled_coalition_errors(a_c: torch.Tensor, a_n: torch.Tensor, members: torch.Tensor, lam: float, m: int,
                             generator: torch.Generator, j_star: torch.Tensor) -> dict[str, Any]:
    """Each trial solves eq. 19 on m distinct coalitions drawn uniformly; against the full problem (J* its
    optimum per trial): the fraction of ALL coalition constraints sum_{i in C} A_i >= A_C - eps violated by
    more than 1e-9 (eps the sampled solution's own), the objective gap 100 (J(A^m) - J*) / J* (percent), the
    relaxation gap 100 (J_m(A^m) - J*) / J* and the seconds of one single-sample solve (B = 1) per trial
    and per sample of one batched solve of all trials."""
    from algorithms.core_qp import sample_coalitions, solve_core_allocation

    trials, n = a_c.shape[0], members.shape[-1]
    sampled = sample_coalitions(n, m, trials, generator=generator)
    rows = (sampled.long() * 2 ** torch.arange(n)).sum(-1) - 1  # row j of `members` has bitmask j + 1
    sub_c = torch.gather(a_c, 1, rows)
    single_s = []
    for t in range(trials):
        start = time.perf_counter()
        solve_core_allocation(sub_c[t:t + 1], a_n[t:t + 1], sampled[t:t + 1], lam)
        single_s.append(time.perf_counter() - start)
    start = time.perf_counter()
    out = solve_core_allocation(sub_c, a_n, sampled, lam)
    batched_s = (time.perf_counter() - start) / trials
    violated = (a_c - out.epsilon[:, None] - out.credits @ members.double().T > 1e-9).double().mean(-1)
    gap = 100 * (full_objective(out.credits, a_c, a_n, members, lam) - j_star) / j_star
    own = out.epsilon + lam * ((out.credits - a_n[:, None] / n) ** 2).sum(-1)
    return {"violation_ratio": violated.tolist(), "objective_gap": gap.tolist(),
            "relaxation_gap": (100 * (own - j_star) / j_star).tolist(), "solve_s": single_s,
            "batched_s_per_sample": batched_s}


def cora_fig9(quick: bool = False) -> dict:
    """CORA Fig. 9: the sampled core QP (eq. 19) against the full one (eq. 8), n = 7, 20 trials (quick: 5).

    Lists over m (`m`, the number of sampled coalitions): `violation_ratio` (mean over trials), `objective_gap`
    (percent, mean), `time_s` (median seconds of one single-sample solve); `*.full` at m = 2^n - 2 (all
    coalitions). lam: cora.yaml's variance_weight (`lam0.*`: the same at lam = 0, CORA-PPO "without std").
    """
    from algorithms.core_qp import solve_core_allocation
    from coopbench.config import load_algo_file

    n, trials, noise, seed, threads = 7, 5 if quick else 20, 0.5, 0, 1
    lam = float(load_algo_file("cora").hparams["variance_weight"])
    lams = {"": lam, "lam0.": 0.0}
    total = 2**n - 2
    ms = [min(m, total) for m in CORA_FIG9_M]
    values: dict[str, Any] = {"m": ms}
    details: dict[str, Any] = {}
    with _torch_threads(threads):
        generator = torch.Generator().manual_seed(seed)
        a_c, a_n, members = cora_problem(n, trials, noise, generator)
        for prefix, weight in lams.items():
            full = solve_core_allocation(a_c, a_n, members, weight)
            j_star = full_objective(full.credits, a_c, a_n, members, weight)
            if not bool((j_star > 0).all()):  # a non-empty core at lam = 0: the relative gap is undefined
                raise CoopbenchError(f"cora_fig9: a trial's full optimum J* is 0 (lam = {weight:g}, seed {seed})",
                                     "draw the coalition advantages with more noise or another seed")
            rows = [sampled_coalition_errors(a_c, a_n, members, weight, m, generator, j_star) for m in ms]
            series = {
                "violation_ratio": [statistics.fmean(r["violation_ratio"]) for r in rows],
                "violation_ratio.std": [statistics.stdev(r["violation_ratio"]) for r in rows],
                "objective_gap": [statistics.fmean(r["objective_gap"]) for r in rows],
                "objective_gap.max": [max(r["objective_gap"]) for r in rows],
                "relaxation_gap": [statistics.fmean(r["relaxation_gap"]) for r in rows],
                "time_s": [statistics.median(r["solve_s"]) for r in rows],
                "time_s.batched_per_sample": [r["batched_s_per_sample"] for r in rows],
            }
            values.update({prefix + key: value for key, value in series.items()})
            for key in ("violation_ratio", "objective_gap", "time_s"):
                values[f"{prefix}{key}.full"] = series[key][-1]
            details[f"lam={weight:g}"] = {"j_star_mean": j_star.mean().item(),
                                          "per_trial": {str(m): r for m, r in zip(ms, rows, strict=True)}}
    return {
        "analysis": "cora-fig9",
        "description": f"CORA Fig. 9 (A.10): core QP on m sampled coalitions (eq. 19) vs all {total} (eq. 8), "
                       f"n = {n}, {trials} trials: violation ratio of all coalition constraints, objective gap "
                       "(percent of J*), median seconds per single-sample solve",
        "settings": {"agents": n, "trials": trials, "m": ms, "lam": lam, "lam_source": "config/algorithms/cora.yaml "
                     "variance_weight", "lam0_prefix": "lam0.", "noise": noise, "seed": seed, "torch_threads": threads,
                     "violation_tolerance": 1e-9, "objective_gap_unit": "percent", "quick": quick,
                     "data": "A_N ~ N(0, 1), A_C = |C|/n A_N + N(0, noise^2)"},
        "values": values,
        "details": details,
    }


# --- ACPO Fig. 5 -----------------------------------------------------------------------------------------------
FIG5_ALGOS = ("mappo", "happo", "hatrpo", "acpo")  # MAPPO first: the reference of every ratio
FIG5_AGENTS = (2, 4, 8, 12)


def build_learner(algo: str, env_name: str, seed: int):
    """An algorithm with its papers-suite hyperparameters (`resolve(algo, env)`) and its environment, whose
    copies step in this process (`n_workers=0`), so that nothing else competes for the cores."""
    from algorithms.registry import ALGORITHMS
    from coopbench.config import resolve
    from environments.registry import ENVIRONMENTS

    config = resolve(algo, env_name)
    cls = ALGORITHMS.get(algo).load()
    hparams = cls.Config(**config.algo_hparams)
    env = ENVIRONMENTS.get(env_name).load()(n_envs=hparams.n_envs, seed=seed, n_workers=0, **config.env_params)
    return cls(env.spec, hparams, torch.device("cpu")), env


def time_iterations(env_name: str, algos: Sequence[str], repeats: int, seed: int = 0) -> dict[str, Any]:
    """Seconds of collection and of update of one training iteration per algorithm and repeat; inside a repeat
    the algorithms run one after another so they share the machine's load. One warm-up repeat first, not
    counted. Returns {"collect_s": {algo: [...]}, "update_s": {...}, "total_s": {...}, "steps_per_iteration"}."""
    from coopbench.run import seed_everything

    seed_everything(seed)
    learners = {algo: build_learner(algo, env_name, seed) for algo in algos}
    try:
        timesteps = {algo: env.reset() for algo, (_, env) in learners.items()}
        collect_s: dict[str, list[float]] = {algo: [] for algo in algos}
        update_s: dict[str, list[float]] = {algo: [] for algo in algos}
        for repeat in range(repeats + 1):
            for algo in algos:
                agent, env = learners[algo]
                start = time.perf_counter()
                rollout = agent.collect(env, timesteps[algo])
                timesteps[algo] = rollout.timestep
                collected = time.perf_counter()
                agent.update(rollout.storage)
                done = time.perf_counter()
                if repeat:
                    collect_s[algo].append(collected - start)
                    update_s[algo].append(done - collected)
        steps = {algo: agent.steps_per_iteration for algo, (agent, _) in learners.items()}
    finally:
        for _, env in learners.values():
            env.close()
    total_s = {algo: [c + u for c, u in zip(collect_s[algo], update_s[algo], strict=True)] for algo in algos}
    return {"collect_s": collect_s, "update_s": update_s, "total_s": total_s, "steps_per_iteration": steps}


def acpo_fig5(quick: bool = False, *, agents: Sequence[int] | None = None, repeats: int | None = None,
              rware_map: str = "tiny") -> dict:
    """ACPO Fig. 5 / App. J: the time of one training iteration (collection + update) of ACPO, HAPPO and HATRPO
    relative to MAPPO's in the same repeat (median over repeats), on RWARE `<map>-<N>ag-hard`, N = 2..12.

    5 repeats (quick: 1) after one warm-up, one torch thread. `ratios.<method>` (lists over `agents`) and
    `ratio.<method>.<N>`: whole iteration; `update_ratios.<method>`: the update alone.
    """
    agents = list(agents or FIG5_AGENTS)
    repeats = repeats if repeats is not None else (1 if quick else 5)
    if repeats < 1:
        raise CoopbenchError(f"acpo_fig5 needs at least one repeat, got {repeats}", "pass repeats >= 1")
    seed, threads = 0, 1
    methods = [a for a in FIG5_ALGOS if a != "mappo"]
    values: dict[str, Any] = {"agents": agents}
    details: dict[str, Any] = {}
    ratios: dict[str, list[float]] = {m: [] for m in methods}
    update_ratios: dict[str, list[float]] = {m: [] for m in methods}
    with _torch_threads(threads):
        for n in agents:
            env_name = f"rware/{rware_map}-{n}ag-hard"
            timed = time_iterations(env_name, FIG5_ALGOS, repeats, seed)
            total, update = timed["total_s"], timed["update_s"]
            for method in methods:
                ratio = statistics.median(t / r for t, r in zip(total[method], total["mappo"], strict=True))
                ratios[method].append(ratio)
                values[f"ratio.{method}.{n}"] = ratio
                update_ratios[method].append(
                    statistics.median(u / r for u, r in zip(update[method], update["mappo"], strict=True)))
            details[env_name] = timed
    for method in methods:
        values[f"ratios.{method}"] = ratios[method]
        values[f"update_ratios.{method}"] = update_ratios[method]
    return {
        "analysis": "acpo-fig5",
        "description": "ACPO Fig. 5 / App. J: time of one training iteration (collection + update) of ACPO, HAPPO "
                       "and HATRPO relative to MAPPO's in the same repeat (median over repeats), RWARE with "
                       f"{', '.join(map(str, agents))} agents",
        "settings": {"envs": [f"rware/{rware_map}-{n}ag-hard" for n in agents], "agents": agents,
                     "algos": list(FIG5_ALGOS), "reference": "mappo", "repeats": repeats, "warmup_repeats": 1,
                     "seed": seed, "torch_threads": threads, "env_workers": 0, "device": "cpu",
                     "hparams": "resolve(algo, env): config/algorithms/<algo>.yaml", "quick": quick},
        "values": values,
        "details": details,
    }


# --- BN Fig. 4 / Fig. 1: the tabular BN policy gradient runs, batched ---------------------------------------------
BN_FIG1 = ("bn/fig1-cg-2", "bn/fig1-cg-3", "bn/fig1-cg-5")
BN_DAG_LABELS = {"bn_tabular_product": "product", "bn_tabular_full": "full", "bn_tabular_line": "line"}


def _bn_dag_label(hparams: dict) -> str:
    """BN's name of a DAG: product, full, line, or the subteam sizes joined by '+' (1+2, 2+3)."""
    if hparams["dag"] == "subteams":
        return "+".join(str(k) for k in hparams["subteams"])
    return hparams["dag"]


def bn_equilibrium_gap(quick: bool = False, *, seeds: int | None = None) -> dict:
    """BN Fig. 4 (and Fig. 1's final suboptimality): the equilibrium gap of the Fig. 1 runs, recomputed exactly.

    For every experiment bn/fig1-cg-N, every method's config as that experiment resolves it (DAG, gamma, eta,
    lambda, theta_0 ~ N(0, init_std^2)) and as many exact gradient steps as its budget gives the run
    (total_env_steps / (n_envs x rollout_length)), all DAGs and seeds of one N in one batch. Seed k starts from
    run seed k's theta_0 (algorithms/bn_tabular.py, construction_seed), so these are the runs' own policies.
    `n<N>.<dag>.final_gap`: mean over seeds of gap(pi) = max_i max_{pi'^i} V(pi'^i, pi^-i)(mu) - V(mu) after the
    last step; `.final_gaps` per seed; `.gaps`: the mean at `gap_iterations`; `.final_subopt(s)`: the mean (per seed) of
    1 - V(mu) / V*(mu) (Fig. 1's y-axis). quick: 10 seeds.
    """
    from algorithms.blocks.dag import named_dag
    from algorithms.bn_tabular import (
        BNTabularConfig,
        DagBatch,
        ExactGame,
        construction_seed,
        gradient_ascent,
        initial_logits,
        optimal_value,
    )
    from coopbench.claims import load_paper, split_comparison
    from coopbench.config import explain
    from environments.registry import make

    values: dict[str, Any] = {}
    details: dict[str, Any] = {}
    settings: dict[str, Any] = {"experiments": list(BN_FIG1), "quick": quick}
    paper = load_paper("bn")
    for comparison in BN_FIG1:
        exp = paper.experiment(split_comparison(comparison)[1])
        n_seeds = seeds or (min(10, exp.seeds) if quick else exp.seeds)
        env_name = exp.envs[0]
        configs = {algo: explain(algo, env_name, experiment=comparison)[0] for algo in exp.algos}
        hparams = {algo: BNTabularConfig(**c.algo_hparams) for algo, c in configs.items()}
        shared = {(h.gamma, h.lr, h.reg, h.init_std, h.n_envs * h.rollout_length) for h in hparams.values()}
        if len(shared) != 1:
            raise CoopbenchError(f"{comparison}: the methods differ in gamma, lr, reg, init_std or steps per "
                                 "iteration; one batch needs them equal", "batch them separately")
        gamma, lr, lam, std, per_iteration = shared.pop()
        iterations = exp.run.total_env_steps // per_iteration
        env = make(env_name, n_envs=1, seed=0, **configs[exp.algos[0]].env_params)
        game = ExactGame.of(env.model(), gamma, "discounted")
        env.close()
        n = game.n_agents
        labels = [_bn_dag_label(h.model_dump()) for h in hparams.values()]
        dags = DagBatch.of(torch.stack([named_dag(h.dag, n, h.subteams) for h in hparams.values()])
                           .repeat_interleave(n_seeds, 0))
        init_seeds = []
        state = torch.get_rng_state()
        for seed in range(n_seeds):  # run seed k's theta_0 generator (the driver seeds torch with k, then builds)
            torch.manual_seed(seed)
            init_seeds.append(construction_seed())
        torch.set_rng_state(state)
        logits = initial_logits(game, dags, init_seeds * len(labels), std)
        gap_at = sorted({0, iterations // 4, iterations // 2, 3 * iterations // 4, iterations})
        result = gradient_ascent(game, logits, dags, lr, lam, iterations, gap_at=gap_at)
        v_star = optimal_value(game)
        subopt = 1.0 - result.values / v_star  # [B, T + 1]
        curve_at = list(range(0, iterations + 1, max(1, iterations // 40)))
        details[comparison] = {"env": env_name, "iterations": iterations, "v_star": v_star, "gap_iterations": gap_at,
                               "subopt_iterations": curve_at, "dags": {}}
        for k, (algo, label) in enumerate(zip(hparams, labels, strict=True)):
            rows = slice(k * n_seeds, (k + 1) * n_seeds)
            gaps = result.gaps[rows]
            key = f"n{n}.{label}"
            values[f"{key}.final_gap"] = float(gaps[:, -1].mean())
            values[f"{key}.final_gaps"] = gaps[:, -1].tolist()
            values[f"{key}.gaps"] = gaps.mean(0).tolist()
            values[f"{key}.final_subopt"] = float(subopt[rows, -1].mean())
            values[f"{key}.final_subopts"] = subopt[rows, -1].tolist()
            details[comparison]["dags"][label] = {
                "algo": algo, "config_hash": configs[algo].hash, "hparams": hparams[algo].model_dump(),
                "subopt_mean": subopt[rows][:, curve_at].mean(0).tolist(),
                "subopt_se": (subopt[rows][:, curve_at].std(0) / n_seeds ** 0.5).tolist(),
                "gap_se": (gaps.std(0) / n_seeds ** 0.5).tolist(),
                "final_value_mean": float(result.values[rows, -1].mean())}
        settings[comparison] = {"env": env_name, "env_params": configs[exp.algos[0]].env_params, "seeds": n_seeds,
                                "gamma": gamma, "lr": lr, "reg": lam, "init_std": std, "iterations": iterations,
                                "env_steps_per_iteration": per_iteration}
    return {
        "analysis": "bn-equilibrium-gap",
        "description": "BN Fig. 4 / Fig. 1: exact tabular softmax BN policy gradient ascent (eq. 3 with Lemma 1's "
                       "gradient) on the Coordination Game, N = 2, 3, 5, every DAG of the Fig. 1 experiments at their "
                       "configs and budgets; `n<N>.<dag>.final_gap` is the equilibrium gap after the last step, mean "
                       "over seeds; `.final_subopt` the mean normalized suboptimality 1 - V/V*",
        "settings": settings,
        "values": values,
        "details": details,
    }


# --- BN Table 1: fitted decomposition errors ------------------------------------------------------------------
BN_TABLE1_PARTITIONS = {2: ["product", "full"], 3: ["1+2", "product", "full"], 5: ["1+4", "2+3", "product", "full"]}


def _partition(label: str, n: int) -> list[list[int]]:
    from algorithms.blocks.dag import subteam_partition

    if label == "product":
        return [[i] for i in range(n)]
    if label == "full":
        return [list(range(n))]
    return subteam_partition([int(k) for k in label.split("+")])


@dataclass(frozen=True)
class AdditiveFit:
    """One regression of BN B.2: `targets [R, O]` from binary `inputs [R, N]` as sum_k f_k(x^{C_k}) over `teams`."""

    inputs: torch.Tensor
    targets: torch.Tensor
    teams: list[list[int]]


def fit_additive_mlps(problems: list[AdditiveFit], epochs: int, lr: float, hidden: int,
                      generator: torch.Generator) -> list[torch.Tensor]:
    """BN B.2: per problem, one three-layer MLP FC(|C_k|, h) -> ReLU -> FC(h, h) -> ReLU -> FC(h, O) per subteam
    C_k, their sum fitted by full-batch Adam on the mean squared error (eq. 14 / 15). Every MLP of every problem
    trains in one batched network (rows and outputs zero-padded and masked out of the loss; independent parameters
    and Adam is elementwise, so this is the separate fits, at one optimizer step per epoch for all). Returns each
    problem's fitted sum `[R, O]`."""
    members = [(p, team) for p, problem in enumerate(problems) for team in problem.teams]
    m, width = len(members), max(len(team) for _, team in members)
    rows = max(problem.targets.shape[0] for problem in problems)
    out = max(problem.targets.shape[1] for problem in problems)
    x = torch.zeros(m, rows, width)
    targets = torch.zeros(len(problems), rows, out)
    mask = torch.zeros(len(problems), rows, out)
    for p, problem in enumerate(problems):
        r, o = problem.targets.shape
        targets[p, :r, :o], mask[p, :r, :o] = problem.targets, 1.0
    owner = torch.tensor([p for p, _ in members])
    params = []
    for fan_in, shape in ((None, (width, hidden)), (hidden, (hidden, hidden)), (hidden, (hidden, out))):
        weight, bias = torch.empty(m, *shape), torch.empty(m, 1, shape[1])
        for k, (_, team) in enumerate(members):
            bound = 1.0 / (fan_in or len(team)) ** 0.5  # nn.Linear's default initialization, per true fan-in
            weight[k].uniform_(-bound, bound, generator=generator)
            bias[k].uniform_(-bound, bound, generator=generator)
        params += [weight, bias]
    for k, (p, team) in enumerate(members):
        r = problems[p].inputs.shape[0]
        x[k, :r, : len(team)] = problems[p].inputs[:, team]  # padded inputs stay 0: their weights get no gradient
    params = [q.requires_grad_(True) for q in params]
    optimizer = torch.optim.Adam(params, lr=lr)
    count = mask.sum((1, 2))

    def forward() -> torch.Tensor:
        w1, b1, w2, b2, w3, b3 = params
        h = torch.relu(torch.bmm(x, w1) + b1)
        h = torch.relu(torch.bmm(h, w2) + b2)
        per_team = torch.bmm(h, w3) + b3  # [M, R, O]
        return torch.zeros(len(problems), rows, out).index_add(0, owner, per_team)

    for _ in range(epochs):
        optimizer.zero_grad()
        loss = ((((forward() - targets) * mask) ** 2).sum((1, 2)) / count).sum()  # each problem's own MSE
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        fitted = forward()
    return [fitted[p, : problem.targets.shape[0], : problem.targets.shape[1]] for p, problem in enumerate(problems)]


def bn_decomposition_errors(quick: bool = False) -> dict:
    """BN Table 1 (App. B.2): fitted decomposition errors |eps_P|, |eps_r| of the Coordination Game per partition.

    As B.2: P^k: A^{C_k} -> R^{|S|} and r^k: S^{C_k} -> R, three-layer MLPs (hidden 128), Adam lr 1e-3, 10,000
    full-batch epochs (quick: 2,000) on eq. 14 / 15; |eps_P| = max_{a, s'} |sum_k P^k(s' | a^{C_k}) - P(s' | a)|,
    |eps_r| = max_s |sum_k r^k(s^{C_k}) - r(s)|. The game's P(s' | s, a) does not depend on s and r(s, a) not on
    a (checked), which is why B.2 can drop them. Inputs are the binary actions / local states; the MLPs'
    initialization is torch's nn.Linear default from one generator seeded 0 (the paper states none)."""
    from coopbench.config import load_env_file
    from environments.registry import make

    epochs, lr, hidden, seed = (2000 if quick else 10_000), 1e-3, 128, 0
    generator = torch.Generator().manual_seed(seed)
    values: dict[str, float] = {}
    details: dict[str, Any] = {}
    for n, labels in BN_TABLE1_PARTITIONS.items():  # one batched fit per N: equal rows, little padding
        problems: list[AdditiveFit] = []
        index: list[tuple[int, str, str]] = []  # (N, partition label, "p" or "r") of each problem
        env_name = f"coordination/bn-cg-{n}"
        env = make(env_name, n_envs=1, seed=0, **load_env_file(env_name).params)
        model = env.model()
        env.close()
        transitions = model.transitions.double()
        reward = model.team_rewards().double()
        if not torch.allclose(transitions, transitions[:1].expand_as(transitions)):
            raise CoopbenchError(f"{env_name}: P(s' | s, a) depends on s; BN B.2 fits P(s' | a)",
                                 "fit P^k(s' | s, a^{C_k}) for this game")
        if not torch.allclose(reward, reward[:, :1].expand_as(reward)):
            raise CoopbenchError(f"{env_name}: r(s, a) depends on a; BN B.2 fits r(s)", "fit r^k(s, a^{C_k})")
        bits = model.joint_actions().float()  # [2^N, N]: joint actions and (the same bit vectors) states
        if not torch.equal(model.states.float(), bits):
            raise CoopbenchError(f"{env_name}: the model's states are not the bit vectors of the joint actions",
                                 "map states to local states explicitly")
        for label in labels:
            teams = _partition(label, n)
            problems.append(AdditiveFit(bits, transitions[0].float(), teams))  # P(s' | a): [J, S']
            problems.append(AdditiveFit(bits, reward[:, :1].float(), teams))  # r(s): [S, 1]
            index += [(n, label, "p"), (n, label, "r")]
        fitted = fit_additive_mlps(problems, epochs, lr, hidden, generator)
        for (n, label, which), problem, fit in zip(index, problems, fitted, strict=True):
            residual = fit - problem.targets
            values[f"n{n}.{label}.eps_{which}"] = float(residual.abs().max())
            details.setdefault(f"coordination/bn-cg-{n}", {}).setdefault(label, {"subteams": problem.teams}).update(
                {f"eps_{which}": float(residual.abs().max()), f"mse_{which}": float((residual ** 2).mean())})
    return {
        "analysis": "bn-decomposition-errors",
        "description": "BN Table 1 / App. B.2: max abs residual of additive per-subteam MLP fits of the Coordination "
                       "Game's transition P(s' | a) and reward r(s), N = 2, 3, 5, per partition",
        "settings": {"envs": [f"coordination/bn-cg-{n}" for n in BN_TABLE1_PARTITIONS],
                     "partitions": {str(n): labels for n, labels in BN_TABLE1_PARTITIONS.items()},
                     "epochs": epochs, "optimizer": "adam", "lr": lr, "hidden": hidden, "layers": 3,
                     "init": "nn.Linear default, generator seed 0", "dtype": "float32", "quick": quick},
        "values": values,
        "details": details,
    }


# --- LAN Tables 1 and 3: parameters of the centralized components per SMAC map ------------------------------
# SMAC's map parameters (github.com/oxwhirl/smac, smac/env/starcraft2/maps/smac_maps.py, map_param_registry):
# n_agents, n_enemies, a_race, b_race, unit_type_bits of the 14 maps of LAN Table 2.
SMAC_MAPS: dict[str, tuple[int, int, str, str, int]] = {
    "2s3z": (5, 5, "P", "P", 2), "3s5z": (8, 8, "P", "P", 2), "1c3s5z": (9, 9, "P", "P", 3),
    "5m_vs_6m": (5, 6, "T", "T", 0), "10m_vs_11m": (10, 11, "T", "T", 0), "27m_vs_30m": (27, 30, "T", "T", 0),
    "3s5z_vs_3s6z": (8, 9, "P", "P", 2), "MMM2": (10, 12, "T", "T", 3), "2s_vs_1sc": (2, 1, "P", "Z", 0),
    "3s_vs_5z": (3, 5, "P", "P", 0), "6h_vs_8z": (6, 8, "Z", "P", 0), "bane_vs_bane": (24, 24, "Z", "Z", 2),
    "2c_vs_64zg": (2, 64, "P", "Z", 0), "corridor": (6, 24, "P", "Z", 0),
}


def smac_sizes(n_agents: int, n_enemies: int, a_race: str, b_race: str, unit_type_bits: int) -> dict[str, int]:
    """SMAC's sizes at its default options, by its own formulas (smac/env/starcraft2/starcraft2.py, StarCraft2Env):
    n_actions = n_actions_no_attack (6) + n_enemies; shield bits 1 for Protoss ('P'); get_obs_size = move feats
    (n_actions_move 4) + n_enemies x (4 + type bits + 1 + enemy shield) + (n_agents - 1) x (4 + type bits + 1 + ally
    shield) + own (type bits + 1 + ally shield) (obs_all_health, obs_own_health on; last action, pathing grid,
    terrain height, timestep off); get_state_size = n_agents x (4 + ally shield + type bits) + n_enemies x (3 + enemy
    shield + type bits), + n_agents x n_actions with state_last_action (on by default). unit_dim: the per-agent
    state block QPLEX's Qatten transformation reads (4 + ally shield + type bits, the state's ally features)."""
    shield_ally, shield_enemy = int(a_race == "P"), int(b_race == "P")
    n_actions = 6 + n_enemies
    obs = (4 + n_enemies * (4 + unit_type_bits + 1 + shield_enemy)
           + (n_agents - 1) * (4 + unit_type_bits + 1 + shield_ally) + unit_type_bits + 1 + shield_ally)
    units = n_agents * (4 + shield_ally + unit_type_bits) + n_enemies * (3 + shield_enemy + unit_type_bits)
    return {"n_agents": n_agents, "n_actions": n_actions, "obs": obs, "state_no_last_action": units,
            "state": units + n_agents * n_actions, "unit_dim": 4 + shield_ally + unit_type_bits}


def lan_parameter_counts(quick: bool = False) -> dict:
    """LAN Table 1 (4 maps) and Table 3 (App. A, 14 maps): parameters of LAN's centralized value V(s, tau) and of
    QMIX's and QPLEX's mixing networks (hypernetworks included), our modules instantiated at each map's SMAC sizes
    (`smac_sizes`) with the hyperparameters of config/algorithms/{lan,qmix,qplex}.yaml.

    `<map>.<lan.value | qmix.mixer | qplex.mixer>`: the count / 1000 rounded to the nearest integer, as the tables
    print it; `ratio.27m_vs_30m.5m_vs_6m.<...>`: the ratio of those rounded thousands (5.2's 2, 8.8 and 16.5).
    Which SMAC state each paper's count implies (the paper does not say; every cell of both tables agrees): LAN's
    value reads the state without the allies' last actions (state_last_action off) next to its own last-action
    inputs; QMIX and QPLEX read PyMARL's default state, with them. QPLEX is its SMAC configuration, the Qatten
    transformation (official qplex_qatten_sc2.yaml), unit_dim from the map. Costs well under a second (`quick`
    changes nothing)."""
    from algorithms.blocks.mixers import DuplexMixer, QMixer
    from algorithms.lan import CentralValue, LANConfig
    from algorithms.qmix import QMIXConfig
    from algorithms.qplex import QPLEXConfig, transformation
    from coopbench.config import load_algo_file
    from environments.base import EnvSpec

    lan = LANConfig(**load_algo_file("lan").hparams)
    qmix = QMIXConfig(**load_algo_file("qmix").hparams)
    qplex_hparams = {**load_algo_file("qplex").hparams, "transformation": "qatten"}
    hidden = lan.rnn_hidden_size if lan.recurrent else lan.hidden_sizes[-1]

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    values: dict[str, float] = {}
    details: dict[str, Any] = {}
    for name, params in SMAC_MAPS.items():
        sizes = smac_sizes(*params)
        n, a = sizes["n_agents"], sizes["n_actions"]
        qplex = QPLEXConfig(**qplex_hparams, unit_dim=sizes["unit_dim"])
        spec = EnvSpec(name=f"smac/{name}", family="smac", n_agents=n, obs_dim=sizes["obs"], state_dim=sizes["state"],
                       n_actions=a, episode_limit=1)
        counts = {
            "lan.value": count(CentralValue(n, sizes["obs"], a, hidden, sizes["state_no_last_action"],
                                            lan.value_embed_size, lan.value_hidden_sizes)),
            "qmix.mixer": count(QMixer(n, sizes["state"], qmix.mixing_embed_dim, qmix.hypernet_layers,
                                       qmix.hypernet_embed)),
            "qplex.mixer": count(DuplexMixer(n, a, sizes["state"], transformation(spec, qplex), qplex.n_heads,
                                             qplex.adv_hypernet_layers, qplex.adv_hypernet_embed)),
        }
        for key, c in counts.items():
            values[f"{name}.{key}"] = round(c / 1000)
        details[name] = {"sizes": sizes, "parameters": counts}
    for key in ("lan.value", "qmix.mixer", "qplex.mixer"):
        values[f"ratio.27m_vs_30m.5m_vs_6m.{key}"] = values[f"27m_vs_30m.{key}"] / values[f"5m_vs_6m.{key}"]
    return {
        "analysis": "lan-parameter-counts",
        "description": "LAN Tables 1 and 3: thousands of parameters (rounded) of LAN's centralized value and of "
                       "QMIX's and QPLEX's mixing networks on the 14 SMAC maps, at SMAC's observation and state "
                       "sizes from its own formulas (no StarCraft II needed)",
        "settings": {"maps": {k: dict(zip(("n_agents", "n_enemies", "a_race", "b_race", "unit_type_bits"), v,
                                          strict=True)) for k, v in SMAC_MAPS.items()},
                     "lan": {"rnn_hidden_size": hidden, "value_embed_size": lan.value_embed_size,
                             "value_hidden_sizes": lan.value_hidden_sizes, "state": "without last actions"},
                     "qmix": {"mixing_embed_dim": qmix.mixing_embed_dim, "hypernet_layers": qmix.hypernet_layers,
                              "hypernet_embed": qmix.hypernet_embed, "state": "with last actions"},
                     "qplex": {k: qplex_hparams[k] for k in ("transformation", "hypernet_embed", "mixing_embed_dim",
                                                             "attention_heads", "n_heads", "adv_hypernet_layers",
                                                             "adv_hypernet_embed")} | {"state": "with last actions"},
                     "sources": "smac/env/starcraft2/starcraft2.py (get_obs_size, get_state_size), "
                                "smac/env/starcraft2/maps/smac_maps.py (github.com/oxwhirl/smac)",
                     "quick": quick},
        "values": values,
        "details": details,
    }


# --- the job --------------------------------------------------------------------------------------------------
def run_analysis(name: str, out: Path, quick: bool = False) -> dict:
    """Run the registered analysis `name` and write its result, with provenance, to `out` (atomically)."""
    from coopbench.base import provenance
    from coopbench.base.io import write_json
    from coopbench.claims import ANALYSES, PLANNED_ANALYSES

    if name in PLANNED_ANALYSES:
        raise CoopbenchError(f"analysis {name!r} is not implemented yet: it needs {PLANNED_ANALYSES[name]}",
                             f"choose one of: {', '.join(ANALYSES.names())}")
    function = ANALYSES.get(name).load()
    started_at = provenance.now()
    start = time.perf_counter()
    result = function(quick=quick)
    wall = time.perf_counter() - start
    if result.get("analysis") != name:
        raise CoopbenchError(f"analysis {name!r} returned a result named {result.get('analysis')!r}",
                             "fix the registration in coopbench/claims.py or the function's `analysis` field")
    result["provenance"] = {
        "code": provenance.code_version(), "packages": provenance.package_versions(), "host": provenance.host(),
        "container_image": provenance.container_image(), "slurm_job_id": provenance.slurm_job_id(),
        "torch_threads": torch.get_num_threads(), "started_at": started_at, "finished_at": provenance.now(),
        "wall_time_s": round(wall, 3)}
    write_json(out, result)
    return result
