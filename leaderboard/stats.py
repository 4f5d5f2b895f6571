"""Stage `stats`: scores.parquet -> stats.json, with rliable's stratified-bootstrap estimates, per comparison.

Within a comparison, tasks are environments; a score matrix is [n_seeds, n_tasks] of final normalized scores.
rliable needs every algorithm to have every task, and each algorithm a rectangular matrix, so
the cross-task aggregates use only the normalized tasks every algorithm has, and for each algorithm the
same number of seeds on every task (the lowest-numbered ones); whatever this leaves out is listed
in stats.json (`dropped_tasks`, `excluded_runs`). The per-environment table uses every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from rliable import library as rly
from rliable import metrics

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_checked_json, read_parquet, write_json
from coopbench.base.schema import SCHEMA_VERSION, SCORES_COLUMNS

CONFIDENCE = 0.95
AGGREGATE_METRICS = {
    "iqm": metrics.aggregate_iqm,
    "mean": metrics.aggregate_mean,
    "median": metrics.aggregate_median,
    "optimality_gap": metrics.aggregate_optimality_gap,  # gamma = 1 on the normalized score
}
PROFILE_POINTS = 101

# A selection of runs for the cross-task aggregates: algo -> task -> seeds, in matrix row order.
Selection = dict[str, dict[str, list[int]]]


def compute_stats(scores: Path, out_json: Path, reps: int = 2000, seed: int = 0) -> dict:
    """Compute every statistic the figures and the site show, per comparison, and write them to `out_json`."""
    if reps < 1:
        raise CoopbenchError(f"reps must be >= 1, got {reps}")
    frame = read_parquet(scores, SCORES_COLUMNS)
    for column in ("eval_return_mean", "normalized_score"):
        bad = ~np.isfinite(frame[column].to_numpy(dtype=float))
        if bad.any():
            first = frame[bad].iloc[0]
            raise CoopbenchError(f"{scores} has {int(bad.sum())} non-finite {column} values (first: {first['env']} "
                                 f"{first['algo']} seed {first['seed']})",
                                 "re-run the aggregate stage (it excludes such runs) on the suite's runs")
    boot = _Bootstrap(reps, seed)
    stats = {
        "schema_version": SCHEMA_VERSION,
        "scores": str(scores),
        "settings": {
            "bootstrap": "stratified, percentile (rliable)",
            "confidence": CONFIDENCE,
            "reps": reps,
            "seed": seed,
            "optimality_gap_gamma": 1.0,
        },
        # Statistics are computed within a comparison (a paper's experiment, or the suite's own runs): its
        # methods share its settings and budget, so their scores may be pooled and compared.
        "comparisons": {
            comparison: comparison_stats(group, scores, boot)
            for comparison, group in frame.groupby("comparison", sort=True)
        },
        "head_to_head": _head_to_head(frame, boot),
    }
    write_json(out_json, stats)
    return stats


def comparison_stats(frame: pd.DataFrame, scores: Path, boot: _Bootstrap) -> dict:
    """The statistics of one comparison's rows of scores.parquet."""
    _check_one_config_per_pair(frame, scores)
    final = frame[frame["is_final"]]
    algos = sorted(final["algo"].unique())
    envs = sorted(final["env"].unique())
    tasks, dropped_tasks = _shared_tasks(final, algos, envs)
    selection, excluded_runs = _select_runs(final, algos, tasks)
    final_matrices = {algo: _final_matrix(final, algo, tasks, sel) for algo, sel in selection.items()}
    return {
        "algorithms": algos,
        "envs": envs,
        "tasks": tasks,
        "dropped_tasks": dropped_tasks,
        "excluded_runs": excluded_runs,
        "seeds_per_algorithm": {algo: len(m) for algo, m in final_matrices.items()},
        "aggregate": _aggregate(final_matrices, boot),
        "performance_profile": _performance_profile(final_matrices, boot),
        "probability_of_improvement": _probability_of_improvement(final_matrices, boot),
        "per_env": _per_env(final, boot),
        "sample_efficiency": _sample_efficiency(frame, tasks, selection, boot),
        "env_curves": _env_curves(frame, boot),
    }


class _Bootstrap:
    """rliable's stratified bootstrap, reseeded before every call so each estimate is reproducible
    on its own (rliable draws its resamples from numpy's global generator)."""

    def __init__(self, reps: int, seed: int):
        self.reps, self.seed = reps, seed

    def intervals(self, score_dict: dict, func: Callable) -> tuple[dict, dict]:
        np.random.seed(self.seed)
        return rly.get_interval_estimates(
            score_dict, func, reps=self.reps, confidence_interval_size=CONFIDENCE
        )

    def profiles(self, score_dict: dict, taus: np.ndarray) -> tuple[dict, dict]:
        np.random.seed(self.seed)
        return rly.create_performance_profile(
            score_dict,
            taus,
            custom_profile_func=_score_distribution,
            reps=self.reps,
            confidence_interval_size=CONFIDENCE,
        )


# Vectorized equivalents of rliable's per-task Python loops: the bootstrap calls them thousands of
# times, and the loops made stats take minutes on a modest suite. Tests check they agree with rliable.


def _score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rliable's default profile (fraction of all runs with score > tau), for every tau at once."""
    return (scores.reshape(-1, 1) > taus.reshape(1, -1)).mean(axis=0)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """metrics.probability_of_improvement: the Mann-Whitney U over n_x * n_y is exactly
    P(X > Y) + P(X = Y) / 2 per task, averaged over tasks."""
    greater = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    ties = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * ties))


def iqm_per_column(scores: np.ndarray) -> np.ndarray:
    """metrics.aggregate_iqm of scores[..., t] for every t (runs and tasks pooled per column): the
    mean after cutting int(n / 4) values at each end, as scipy.stats.trim_mean does."""
    pooled = np.sort(scores.reshape(-1, scores.shape[-1]), axis=0)
    cut = int(0.25 * len(pooled))
    return pooled[cut : len(pooled) - cut].mean(axis=0)


def _num(x) -> float | None:
    """A JSON-native float; NaN and infinities become null."""
    x = float(x)
    return x if math.isfinite(x) else None


def _estimate(point, low, high) -> dict:
    if np.ndim(point) == 0:
        return {"point": _num(point), "ci_low": _num(low), "ci_high": _num(high)}
    return {
        "point": [_num(v) for v in point],
        "ci_low": [_num(v) for v in low],
        "ci_high": [_num(v) for v in high],
    }


def _check_one_config_per_pair(frame: pd.DataFrame, scores: Path) -> None:
    hashes = frame.groupby(["env", "algo"])["config_hash"].unique()
    mixed = {f"{env} x {algo}": sorted(h) for (env, algo), h in hashes.items() if len(h) > 1}
    if mixed:
        raise CoopbenchError(
            f"{scores} mixes configs of one env x algo, so their seeds cannot be pooled: {mixed}",
            "aggregate only the run dirs of the suite's current configs",
        )


def _shared_tasks(final: pd.DataFrame, algos: list[str], envs: list[str]) -> tuple[list[str], dict[str, str]]:
    have = final.groupby("env")["algo"].unique()
    raw = set(final.loc[final["normalization"] == "raw", "env"])
    tasks, dropped = [], {}
    for env in envs:
        missing = sorted(set(algos) - set(have[env]))
        if env in raw:
            # Averaging raw returns of different tasks would weigh them by their reward scale.
            dropped[env] = "raw returns (the task has no normalization rule), not comparable across tasks"
        elif missing:
            dropped[env] = f"no runs of {', '.join(missing)}"
        else:
            tasks.append(env)
    return tasks, dropped


def _select_runs(final: pd.DataFrame, algos: list[str], tasks: list[str]) -> tuple[Selection, list[dict]]:
    """Per algorithm, the lowest-numbered n seeds of each task, n = its fewest seeds on any task."""
    selection: Selection = {}
    excluded = []
    if not tasks:
        return selection, excluded
    for algo in algos:
        seeds = {
            task: sorted(final.loc[(final["algo"] == algo) & (final["env"] == task), "seed"].tolist())
            for task in tasks
        }
        fewest = min(seeds, key=lambda task: len(seeds[task]))
        n = len(seeds[fewest])
        selection[algo] = {task: s[:n] for task, s in seeds.items()}
        reason = f"{algo} has {n} seeds on {fewest}, so the aggregates use {n} per task"
        excluded += [
            {"env": task, "algo": algo, "seed": int(k), "reason": reason}
            for task, s in seeds.items()
            for k in s[n:]
        ]
    return selection, excluded


def _final_matrix(
    final: pd.DataFrame, algo: str, tasks: list[str], seeds: dict[str, list[int]]
) -> np.ndarray:
    """Final normalized scores [n_seeds, n_tasks] of one algorithm's selected runs."""
    score = final[final["algo"] == algo].set_index(["env", "seed"])["normalized_score"].to_dict()
    n = len(seeds[tasks[0]])
    return np.array([[score[(task, seeds[task][i])] for task in tasks] for i in range(n)], dtype=float)


def _curve_tensor(
    frame: pd.DataFrame, algo: str, tasks: list[str], seeds: dict[str, list[int]], steps: list[int]
) -> np.ndarray:
    """Normalized scores [n_seeds, n_tasks, n_steps] of one algorithm's selected runs."""
    rows = frame[frame["algo"] == algo]
    score = rows.set_index(["env", "seed", "env_steps"])["normalized_score"].to_dict()
    n = len(seeds[tasks[0]])
    return np.array(
        [[[score[(task, seeds[task][i], s)] for s in steps] for task in tasks] for i in range(n)], dtype=float
    )


def _aggregate(matrices: dict[str, np.ndarray], boot: _Bootstrap) -> dict:
    if not matrices:
        return {}
    func = lambda s: np.array([f(s) for f in AGGREGATE_METRICS.values()])  # noqa: E731
    points, intervals = boot.intervals(matrices, func)
    return {
        algo: {
            name: _estimate(points[algo][i], intervals[algo][0, i], intervals[algo][1, i])
            for i, name in enumerate(AGGREGATE_METRICS)
        }
        for algo in matrices
    }


def _performance_profile(matrices: dict[str, np.ndarray], boot: _Bootstrap) -> dict:
    if not matrices:
        return {"tau": [], "profiles": {}}
    every = np.concatenate([m.ravel() for m in matrices.values()])
    every = every[np.isfinite(every)]
    low = min(0.0, every.min()) if every.size else 0.0
    high = max(1.0, every.max()) if every.size else 1.0
    taus = np.linspace(low, high, PROFILE_POINTS)
    profiles, cis = boot.profiles(matrices, taus)
    return {
        "tau": [_num(t) for t in taus],
        "profiles": {algo: _estimate(profiles[algo], *cis[algo]) for algo in matrices},
    }


def _probability_of_improvement(matrices: dict[str, np.ndarray], boot: _Bootstrap) -> list[dict]:
    func = lambda x, y: np.array([probability_of_improvement(x, y)])  # noqa: E731
    out = []
    for x in matrices:
        for y in matrices:
            if x == y:
                continue
            points, intervals = boot.intervals({"pair": [matrices[x], matrices[y]]}, func)
            out.append({"x": x, "y": y, **_estimate(points["pair"][0], *intervals["pair"][:, 0])})
    return out


def _per_env(final: pd.DataFrame, boot: _Bootstrap) -> list[dict]:
    """Every env x algo with all of its runs: final raw return, normalized score and IQM, with CIs."""
    out = []
    runs = final.sort_values(["env", "algo", "seed"])
    n_seeds = runs.groupby(["env", "algo"])["seed"].transform("size")
    # rliable resamples seeds independently per task (and per trailing index), so one call over all
    # envs where an algorithm has the same seed count gives the per-env intervals in one bootstrap.
    for (algo, n), group in runs.groupby(["algo", n_seeds]):
        envs = sorted(group["env"].unique())
        columns = ["eval_return_mean", "normalized_score"]
        tensor = np.stack(
            [group.loc[group["env"] == env, columns].to_numpy(dtype=float) for env in envs], axis=1
        )
        func = lambda s: np.concatenate([s.mean(axis=0).T.ravel(), iqm_per_column(s[..., 1])])  # noqa: E731
        points, intervals = boot.intervals({"t": tensor}, func)
        estimates = [_estimate(points["t"][i], *intervals["t"][:, i]) for i in range(len(points["t"]))]
        for j, env in enumerate(envs):
            env_runs = group[group["env"] == env]
            out.append(
                {
                    "env": env,
                    "algo": algo,
                    "config_hash": env_runs["config_hash"].iloc[0],
                    "n_seeds": int(n),
                    "seeds": [int(k) for k in env_runs["seed"]],
                    "final_env_steps": sorted({int(s) for s in env_runs["env_steps"]}),
                    "return_mean": estimates[j],
                    "normalized_mean": estimates[len(envs) + j],
                    "normalized_iqm": estimates[2 * len(envs) + j],
                }
            )
    return sorted(out, key=lambda row: (row["env"], row["algo"]))


def _sample_efficiency(frame: pd.DataFrame, tasks: list[str], selection: Selection, boot: _Bootstrap) -> dict:
    """IQM of normalized score across the aggregated runs at each evaluation point they all share."""
    keys = [(task, algo, k) for algo, sel in selection.items() for task, seeds in sel.items() for k in seeds]
    if not keys:
        return {"env_steps": [], "iqm": {}}
    steps_per_run = frame.groupby(["env", "algo", "seed"])["env_steps"].apply(set)
    steps = sorted(set.intersection(*(steps_per_run[key] for key in keys)))
    if not steps:
        return {"env_steps": [], "iqm": {}}
    tensors = {algo: _curve_tensor(frame, algo, tasks, sel, steps) for algo, sel in selection.items()}
    points, intervals = boot.intervals(tensors, iqm_per_column)
    return {
        "env_steps": [int(s) for s in steps],
        "iqm": {algo: _estimate(points[algo], *intervals[algo]) for algo in tensors},
    }


def _env_curves(frame: pd.DataFrame, boot: _Bootstrap) -> dict:
    """Per env and algorithm: mean return at each evaluation point every seed has, with its bootstrap CI."""
    curves: dict[str, dict] = {}
    for (env, algo), group in frame.groupby(["env", "algo"], sort=True):
        steps_per_seed = group.groupby("seed")["env_steps"].apply(set)
        steps = sorted(set.intersection(*steps_per_seed))
        if not steps:
            continue
        table = group[group["env_steps"].isin(steps)].pivot_table(
            index="seed", columns="env_steps", values="eval_return_mean", aggfunc="first")
        values = table[steps].to_numpy(dtype=float)  # [seeds, steps]
        points, intervals = boot.intervals({"c": values[:, None, :]}, lambda s: s.mean(axis=(0, 1)))
        curves.setdefault(env, {})[algo] = {"env_steps": [int(x) for x in steps],
                                           **_estimate(points["c"], *intervals["c"])}
    return curves


def _head_to_head(frame: pd.DataFrame, boot: _Bootstrap) -> list[dict]:
    """Tasks that two or more papers' experiments share: each paper's methods, under that paper's settings,
    side by side (final normalized IQM with its CI). No paper compares with the others; coopbench can."""
    papers = frame[~frame["comparison"].str.startswith("suite:")].copy()
    papers["paper"] = papers["comparison"].str.split("/").str[0]
    out = []
    for env, group in papers[papers["is_final"]].groupby("env", sort=True):
        if group["paper"].nunique() < 2:
            continue
        entries = []
        for (paper, algo, config_hash), runs in group.groupby(["paper", "algo", "config_hash"], sort=True):
            runs = runs.drop_duplicates("seed").sort_values("seed")
            values = runs["normalized_score"].to_numpy(dtype=float)
            points, intervals = boot.intervals({"x": values[:, None]}, iqm_per_column)
            entries.append({"paper": paper, "algo": algo, "config_hash": config_hash, "n_seeds": int(len(values)),
                            "comparisons": sorted(set(runs["comparison"])),
                            "normalized_iqm": _estimate(points["x"][0], intervals["x"][0, 0], intervals["x"][1, 0])})
        out.append({"env": env, "normalization": str(group["normalization"].iloc[0]), "entries": entries})
    return out


# -- reading stats.json back (figures, site): its shape checked on load, so a stale or foreign file is one clear
# error instead of a KeyError deep in a plot. Extra keys are allowed (a newer writer may add some).

_Num = float | None  # stats.json writes NaN and infinities as null


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Estimate(_Shape):
    point: _Num
    ci_low: _Num
    ci_high: _Num


class _Curve(_Shape):
    point: list[_Num]
    ci_low: list[_Num]
    ci_high: list[_Num]


class _EnvCurve(_Curve):
    env_steps: list[float]


class _Profile(_Shape):
    tau: list[_Num]
    profiles: dict[str, _Curve]


class _Efficiency(_Shape):
    env_steps: list[float]
    iqm: dict[str, _Curve]


class _PerEnvRow(_Shape):
    env: str
    algo: str
    config_hash: str
    n_seeds: int
    seeds: list[int]
    return_mean: _Estimate
    normalized_mean: _Estimate
    normalized_iqm: _Estimate


class _ComparisonStats(_Shape):
    algorithms: list[str]
    envs: list[str]
    tasks: list[str]
    dropped_tasks: dict[str, str]
    excluded_runs: list[dict]
    seeds_per_algorithm: dict[str, int]
    aggregate: dict[str, dict[str, _Estimate]]
    performance_profile: _Profile
    probability_of_improvement: list[dict]
    per_env: list[_PerEnvRow]
    sample_efficiency: _Efficiency
    env_curves: dict[str, dict[str, _EnvCurve]]


class _Settings(_Shape):
    confidence: float
    reps: int


class _HeadToHead(_Shape):
    env: str
    entries: list[dict]


class _StatsFile(_Shape):
    schema_version: int
    settings: _Settings
    comparisons: dict[str, _ComparisonStats]
    head_to_head: list[_HeadToHead]


def read_stats(path: Path) -> dict:
    """stats.json as the stats stage writes it, checked: a file of another shape or version is one CoopbenchError."""
    return read_checked_json(path, _StatsFile, "a stats.json of this coopbench", SCHEMA_VERSION,
                             "re-run the stats stage (it rewrites the file)")
