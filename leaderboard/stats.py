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

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_checked_json, read_parquet, write_json
from coopbench.base.schema import SCHEMA_VERSION, SCORES_COLUMNS

CONFIDENCE = 0.95
AGGREGATE_METRICS = ("iqm", "mean", "median", "optimality_gap")  # rliable.metrics' aggregate_*, gamma = 1
PROFILE_POINTS = 101
RESAMPLE_CHUNK = 256  # bootstrap replications resampled and evaluated at once (bounds the memory)

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
    """rliable's stratified bootstrap with percentile intervals, reseeded before every call so each estimate is
    reproducible on its own (`bootstrap_intervals`)."""

    def __init__(self, reps: int, seed: int):
        self.reps, self.seed = reps, seed

    def intervals(self, score_dict: dict, func: Callable) -> tuple[dict, dict]:
        return bootstrap_intervals(score_dict, func, self.reps, self.seed)

    def profiles(self, score_dict: dict, taus: np.ndarray) -> tuple[dict, dict]:
        """rliable.library.create_performance_profile with the score distribution (`_score_distribution`)."""
        return self.intervals(score_dict, lambda scores: _score_distribution(scores, taus))


def bootstrap_intervals(score_dict: dict, func: Callable, reps: int, seed: int) -> tuple[dict, dict]:
    """rliable.library.get_interval_estimates(score_dict, func, reps=reps, confidence_interval_size=CONFIDENCE)
    after np.random.seed(seed), to the bit, with every replication at once.

    rliable calls `func` once per replication (a Python loop over thousands of resamples: minutes of the stats
    stage). Here `func` takes its arrays with a leading replication axis and returns [replications, k]; the
    resamples are rliable's own draws (`_resamples`) and the interval is arch's percentile interval
    (`_percentile_interval`). Point estimates are `func` of the scores themselves, as in rliable."""
    np.random.seed(seed)  # rliable draws its resamples from numpy's global generator
    points, intervals = {}, {}
    for key, scores in score_dict.items():
        arrays = [scores] if isinstance(scores, np.ndarray) else [np.asarray(a) for a in scores]
        points[key] = func(*(a[None] for a in arrays))[0]
        results = np.concatenate([func(*resamples) for resamples in _resamples(arrays, reps)])
        intervals[key] = _percentile_interval(results)
    return points, intervals


def _resamples(arrays: list[np.ndarray], reps: int):
    """rliable's stratified resamples of `arrays` (StratifiedBootstrap for one, StratifiedIndependentBootstrap
    for several), `RESAMPLE_CHUNK` replications at a time with a leading replication axis: each array's runs
    (axis 0) drawn with replacement independently for every task and trailing index.

    rliable draws, per replication and array in order, np.random.choice(n_runs, shape), which is
    np.random.randint(0, n_runs, shape) on the same global stream; consecutive draws of one bound are one draw
    of their joint size (tests check it against rliable), so where every array has the same number of runs a
    chunk is a single draw, and otherwise one draw per replication and array, as rliable makes them."""
    sizes = [a.size for a in arrays]
    one_bound = len({a.shape[0] for a in arrays}) == 1
    for start in range(0, reps, RESAMPLE_CHUNK):
        r = min(RESAMPLE_CHUNK, reps - start)
        if one_bound:
            draws = np.random.randint(0, arrays[0].shape[0], size=(r, sum(sizes)))
            indices = np.split(draws, np.cumsum(sizes)[:-1], axis=1)
        else:
            per_replication = [[np.random.randint(0, a.shape[0], size=a.shape) for a in arrays] for _ in range(r)]
            indices = [np.stack([draw[k] for draw in per_replication]) for k in range(len(arrays))]
        yield [np.take_along_axis(a[None], index.reshape(r, *a.shape), axis=1)
               for a, index in zip(arrays, indices, strict=True)]


def _percentile_interval(results: np.ndarray) -> np.ndarray:
    """arch's percentile interval of bootstrap estimates [replications, k] (rliable's method): [2, k], the
    (1 - CONFIDENCE) / 2 and 1 - (1 - CONFIDENCE) / 2 percentiles, computed as arch computes them."""
    alpha = (1.0 - CONFIDENCE) / 2
    return np.percentile(results, [100 * alpha, 100 * (1.0 - alpha)], axis=0)


# Statistics over a leading axis of bootstrap replications, each the same arithmetic as rliable's (or scipy's)
# function of one resample, so the numbers are equal to the bit (tests check them against rliable).


def _score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rliable's default profile (fraction of all runs with score > tau), for every tau at once: [R, n_taus]."""
    return (scores.reshape(len(scores), -1, 1) > taus.reshape(1, 1, -1)).mean(axis=1)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """metrics.probability_of_improvement of x [R, n_x, tasks] over y [R, n_y, tasks]: the Mann-Whitney U over
    n_x * n_y is exactly P(X > Y) + P(X = Y) / 2 per task, averaged over tasks. [R]"""
    greater = (x[:, :, None, :] > y[:, None, :, :]).mean(axis=(1, 2))
    ties = (x[:, :, None, :] == y[:, None, :, :]).mean(axis=(1, 2))
    return np.mean(greater + 0.5 * ties, axis=-1)


def trimmed_mean(values: np.ndarray) -> np.ndarray:
    """scipy.stats.trim_mean(v, 0.25) (rliable's IQM) of every row v of `values` [R, m], as scipy computes it:
    np.partition at both cuts, then the mean of what lies between."""
    m = values.shape[-1]
    low = int(0.25 * m)
    return np.mean(np.partition(values, (low, m - low - 1), axis=-1)[:, low : m - low], axis=-1)


def aggregate_metrics(scores: np.ndarray) -> np.ndarray:
    """rliable.metrics' aggregate IQM, mean, median and optimality gap (gamma = 1) of scores [R, runs, tasks]:
    [R, 4] in the order of AGGREGATE_METRICS."""
    flat = scores.reshape(len(scores), -1)
    task_means = np.mean(scores, axis=1)
    return np.stack([trimmed_mean(flat), np.mean(task_means, axis=-1), np.median(task_means, axis=-1),
                     1 - np.mean(np.minimum(flat, 1), axis=-1)], axis=-1)


def iqm_per_column(scores: np.ndarray) -> np.ndarray:
    """metrics.aggregate_iqm of scores[r, ..., t] for every replication r and column t (runs and tasks pooled
    per column): the mean after cutting int(n / 4) values at each end, as scipy.stats.trim_mean does. [R, T]"""
    pooled = np.sort(scores.reshape(len(scores), -1, scores.shape[-1]), axis=1)
    cut = int(0.25 * pooled.shape[1])
    return pooled[:, cut : pooled.shape[1] - cut].mean(axis=1)


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
    points, intervals = boot.intervals(matrices, aggregate_metrics)
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
    func = lambda x, y: probability_of_improvement(x, y)[:, None]  # noqa: E731
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
        func = lambda s: np.concatenate(  # noqa: E731
            [s.mean(axis=1).transpose(0, 2, 1).reshape(len(s), -1), iqm_per_column(s[..., 1])], axis=-1)
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
        points, intervals = boot.intervals({"c": values[:, None, :]}, lambda s: s.mean(axis=(1, 2)))
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
