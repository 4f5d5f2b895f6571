"""The rules that judge a claim, written once: a number, an ordering, an exact outcome.

Each rule takes our per-seed values (already read at the claim's budget) and the published value, and
returns a `Judgement`: the verdict and the numbers behind it. Budget and seed shortfalls are applied on
top by `at_reduced_scale` (a smaller run can only give `inconclusive`, with the raw verdict beside it).

- number: our 95% stratified-bootstrap CI of the paper's statistic (mean, median or IQM over seeds)
  against the published interval (value +- its error, turned into a 95% interval where the paper gives
  a standard error or deviation). Overlap -> reproduced, disjoint -> not reproduced; fewer than two
  seeds -> inconclusive (no interval).
- ordering: rliable's probability of improvement P(better > worse) over the claim's tasks with its 95%
  CI: above 0.5 -> reproduced, below 0.5 -> not reproduced, containing 0.5 -> inconclusive.
- tie ("about the same"): that CI within 0.5 +- a margin -> reproduced, excluding 0.5 -> not reproduced.
- outcome: every value equals the published one within its tolerance (or a list is monotone as
  published) -> reproduced, else not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from leaderboard.stats import bootstrap_intervals, probability_of_improvement, trimmed_mean

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not run")
Z95 = 1.959963984540054
# A claim's statistic of per-seed values, over a leading axis of bootstrap replications [R, seeds] -> [R]
# (np.mean, np.median and rliable.metrics.aggregate_iqm of each row, to the bit).
STATISTICS = {"mean": lambda v: np.mean(v, axis=-1), "median": lambda v: np.median(v, axis=-1),
              "iqm": trimmed_mean}


@dataclass
class Judgement:
    verdict: str
    rule: str
    estimate: dict | None = None  # {"point", "ci_low", "ci_high"} of our statistic
    published_interval: list[float] | None = None
    details: dict = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "rule": self.rule, "estimate": self.estimate,
                "published_interval": self.published_interval, "details": self.details, "note": self.note}


def _bootstrap(score_dict: dict, func, reps: int, seed: int):
    """rliable's stratified bootstrap (leaderboard.stats.bootstrap_intervals: `func` over replications)."""
    return bootstrap_intervals(score_dict, func, reps, seed)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def published_interval(value: float, error: float | None, error_kind: str, paper_seeds: int | None,
                       error_low: float | None = None, error_high: float | None = None) -> tuple[float, float]:
    """The paper's value as a 95% interval: +-1.96 se; +-1.96 std / sqrt(seeds); a printed CI or quartiles as is."""
    if error_low is not None and error_high is not None:
        return (float(error_low), float(error_high))
    if error is None or error_kind == "none":
        return (float(value), float(value))
    if error_kind == "se":
        half = Z95 * error
    elif error_kind == "std":
        half = Z95 * error / math.sqrt(paper_seeds) if paper_seeds else Z95 * error
    else:  # ci95 (half-width), iqr given as one half-width
        half = error
    return (float(value - half), float(value + half))


def judge_number(values: np.ndarray, value: float, interval: tuple[float, float], summary: str,
                 reps: int = 2000, seed: int = 0) -> Judgement:
    """values: our per-seed values [n_seeds] (one task). Overlap of our CI with the published interval."""
    values = np.asarray(values, dtype=float).reshape(-1)
    statistic = STATISTICS[summary]
    rule = (f"our 95% bootstrap CI of the {summary} over seeds overlaps the published interval "
            f"[{interval[0]:.4g}, {interval[1]:.4g}]")
    point = float(statistic(values[None])[0]) if values.size else float("nan")
    details = {"n_seeds": int(values.size), "values": [_finite(v) for v in values], "as_published": _as_published(
        values, summary)}
    if values.size < 2 or not np.isfinite(values).all():
        why = "fewer than two seeds: no interval" if values.size < 2 else "non-finite values"
        return Judgement("inconclusive", rule, {"point": _finite(point), "ci_low": None, "ci_high": None},
                         list(interval), details, why)
    points, cis = _bootstrap({"x": values.reshape(-1, 1)}, lambda s: statistic(s.reshape(len(s), -1))[:, None], reps,
                             seed)
    low, high = float(cis["x"][0, 0]), float(cis["x"][1, 0])
    estimate = {"point": float(points["x"][0]), "ci_low": low, "ci_high": high}
    overlap = low <= interval[1] and interval[0] <= high
    return Judgement("reproduced" if overlap else "not reproduced", rule, estimate, list(interval), details)


def judge_ordering(better: list[np.ndarray], worse: list[np.ndarray], reps: int = 2000, seed: int = 0) -> Judgement:
    """better[t], worse[t]: per-seed values of the two methods on task t. P(better > worse) with its CI."""
    rule = "rliable probability of improvement P(better > worse) over the tasks, 95% CI above 0.5"
    n_b = min(len(v) for v in better)
    n_w = min(len(v) for v in worse)
    details = {"seeds_better": n_b, "seeds_worse": n_w, "tasks": len(better),
               "mean_better": [_finite(np.mean(v)) for v in better],
               "mean_worse": [_finite(np.mean(v)) for v in worse]}
    if n_b < 1 or n_w < 1:
        return Judgement("inconclusive", rule, None, None, details, "a method has no runs on a task")
    x = np.stack([np.asarray(v, dtype=float)[:n_b] for v in better], axis=1)  # [seeds, tasks]
    y = np.stack([np.asarray(v, dtype=float)[:n_w] for v in worse], axis=1)
    points, cis = _bootstrap({"pair": [x, y]}, lambda a, b: probability_of_improvement(a, b)[:, None], reps, seed)
    low, high = float(cis["pair"][0, 0]), float(cis["pair"][1, 0])
    estimate = {"point": float(points["pair"][0]), "ci_low": low, "ci_high": high}
    if min(n_b, n_w) < 2:
        return Judgement("inconclusive", rule, estimate, None, details, "fewer than two seeds per method")
    verdict = "reproduced" if low > 0.5 else "not reproduced" if high < 0.5 else "inconclusive"
    return Judgement(verdict, rule, estimate, None, details)


def judge_tie(first: list[np.ndarray], second: list[np.ndarray], margin: float, reps: int = 2000,
              seed: int = 0) -> Judgement:
    """"About the same": the CI of P(first > second) within 0.5 +- margin; one clearly better: not reproduced."""
    judgement = judge_ordering(first, second, reps, seed)
    judgement.rule = (f"rliable probability of improvement between the two, 95% CI within "
                      f"[{0.5 - margin:g}, {0.5 + margin:g}]")
    if judgement.estimate is None or judgement.note:
        return judgement
    low, high = judgement.estimate["ci_low"], judgement.estimate["ci_high"]
    judgement.verdict = ("reproduced" if 0.5 - margin <= low and high <= 0.5 + margin
                         else "not reproduced" if low > 0.5 or high < 0.5 else "inconclusive")
    return judgement


def judge_outcome(values: np.ndarray, value: float, tolerance: float) -> Judgement:
    """Every value within `tolerance` of the published one (a converged policy's return, a count)."""
    values = np.asarray(values, dtype=float).reshape(-1)
    rule = f"every seed's value equals {value:g} within {tolerance:g}"
    hits = np.abs(values - value) <= tolerance
    details = {"n": int(values.size), "matching": int(hits.sum()),
               "distinct_values": sorted({round(float(v), 9) for v in values if math.isfinite(v)})}
    if values.size == 0:
        return Judgement("inconclusive", rule, None, None, details, "no values")
    estimate = {"point": float(np.mean(values)), "ci_low": float(values.min()), "ci_high": float(values.max())}
    return Judgement("reproduced" if hits.all() else "not reproduced", rule, estimate, [value, value], details)


MONOTONE = {
    "decreasing": lambda d: (d < 0).all(), "increasing": lambda d: (d > 0).all(),
    "nonincreasing": lambda d: (d <= 0).all(), "nondecreasing": lambda d: (d >= 0).all(),
}


def judge_monotone(values: list[float], direction: str, tolerance: float) -> Judgement:
    """A list of values (over an axis such as m or the number of agents) is monotone as published;
    `tolerance` forgives steps against the direction up to that size (noise of a timing, say)."""
    arr = np.asarray(values, dtype=float)
    steps = np.diff(arr)
    forgiving = np.where(np.abs(steps) <= tolerance, 0.0, steps) if "non" in direction else steps
    ok = bool(arr.size >= 2 and MONOTONE[direction](forgiving))
    rule = f"the values are {direction} along their axis (steps within {tolerance:g} ignored)"
    return Judgement("reproduced" if ok else "not reproduced", rule, None, None,
                     {"values": [_finite(v) for v in arr]})


def at_reduced_scale(judgement: Judgement, budget_used: int | None, budget: int | None, seeds_used: int,
                     seeds: int | None) -> Judgement:
    """A run smaller than the claim asks can only give `inconclusive`, with what the rule alone said."""
    short = []
    if budget and budget_used is not None and budget_used < budget:
        short.append(f"at {100 * budget_used / budget:.2g}% of the paper's budget ({budget_used:,} of {budget:,} "
                     "env steps)")
    if seeds and seeds_used < seeds:
        short.append(f"with {seeds_used} of the paper's {seeds} seeds")
    if not short:
        return judgement
    raw = judgement.verdict
    judgement.verdict = "inconclusive"
    judgement.note = "; ".join(filter(None, [", ".join(short) + f": on these runs the rule alone gives '{raw}'",
                                             judgement.note]))
    judgement.details["verdict_at_this_scale"] = raw
    return judgement


def _as_published(values: np.ndarray, summary: str) -> dict:
    """Our values summarised the way the paper reports them (mean +- standard error, or median and quartiles)."""
    if values.size == 0:
        return {}
    if summary == "median":
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        return {"median": float(med), "q1": float(q1), "q3": float(q3)}
    se = float(np.std(values, ddof=1) / math.sqrt(values.size)) if values.size > 1 else None
    return {"mean": float(np.mean(values)), "se": se, "std": float(np.std(values, ddof=1)) if values.size > 1 else None}
