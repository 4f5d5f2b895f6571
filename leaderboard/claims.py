"""Stage `claims`: every claim of claims/<paper>.yaml judged on a suite's results -> <out>/<paper>.json.

Reads scores.parquet and runs.json (stage aggregate) and results/analyses/<name>.json (the analysis
jobs), never the run directories. A claim gets `not run` with its reason when its method or task is
not implemented, its runs were left out of the plan (StarCraft II absent), failed, or are not part of
this suite (the reason names the command that runs them); otherwise the rule of its published kind
(leaderboard/verdicts.py), with the evidence: our estimate and CI, the values summarised as the paper
reports them, the seeds and budget used against the claim's, and the runs (config hashes) behind it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_json, read_parquet, write_json
from coopbench.base.schema import SCHEMA_VERSION, SCORES_COLUMNS
from coopbench.claims import (
    PLANNED_ALGORITHMS,
    PLANNED_ANALYSES,
    Claim,
    PaperFile,
    comparison_id,
    load_papers,
)
from leaderboard.verdicts import (
    VERDICTS,
    Judgement,
    at_reduced_scale,
    judge_monotone,
    judge_number,
    judge_ordering,
    judge_outcome,
    judge_tie,
    published_interval,
)

METRIC_COLUMNS = {"return": "eval_return_mean", "normalized_score": "normalized_score", "win_rate": "eval_win_rate"}


def judge_suite(suite: str, scores_parquet: Path, runs_json: Path, analyses_dir: Path, out_dir: Path,
                reps: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Judge every paper's claims on this suite; write <out_dir>/<paper>.json each; return them."""
    scores = read_parquet(scores_parquet, SCORES_COLUMNS)
    from leaderboard.aggregate import read_runs

    runs = read_runs(runs_json)  # its shape checked: a foreign file is one clear error
    context = _Context(suite, scores, runs, Path(analyses_dir), reps, seed)
    out = {}
    for name, paper in load_papers().items():
        judged = [context.judge(paper, claim) for claim in paper.claims]
        counts = Counter(c["verdict"] for c in judged)
        out[name] = {
            "schema_version": SCHEMA_VERSION, "paper": name, "title": paper.title, "suite": suite,
            "counts": {v: counts.get(v, 0) for v in VERDICTS}, "claims": judged,
        }
        write_json(Path(out_dir) / f"{name}.json", out[name])
    return out


class _Context:
    def __init__(self, suite: str, scores: pd.DataFrame, runs: dict, analyses_dir: Path, reps: int, seed: int):
        self.suite, self.scores, self.analyses_dir, self.reps, self.seed = suite, scores, analyses_dir, reps, seed
        self.runs = pd.DataFrame(runs["runs"], columns=["env", "algo", "config_hash", "seed", "comparisons", "status",
                                                        "reason", "run_dir"])
        self.skipped = pd.DataFrame(runs["skipped"], columns=["comparison", "env", "algo", "reason"])

    # -- one claim
    def judge(self, paper: PaperFile, claim: Claim) -> dict:
        record = {"id": claim.id, "source": claim.source, "tasks": claim.tasks, "methods": claim.methods,
                  "metric": claim.metric, "summary": claim.summary, "published": claim.published.model_dump(),
                  "notes": claim.notes, "experiment": claim.experiment, "analysis": claim.analysis, "key": claim.key}
        if claim.analysis is not None:
            judgement, extra = self._judge_analysis(paper, claim)
        else:
            judgement, extra = self._judge_runs(paper, claim)
        return {**record, **extra, **judgement.as_dict()}

    def _not_run(self, reason: str, **extra) -> tuple[Judgement, dict]:
        return Judgement("not run", "", note=reason), {"reason": reason, **extra}

    def _judge_analysis(self, paper: PaperFile, claim: Claim) -> tuple[Judgement, dict]:
        if claim.analysis in PLANNED_ANALYSES:
            return self._not_run(f"analysis {claim.analysis} needs {PLANNED_ANALYSES[claim.analysis]}")
        path = self.analyses_dir / f"{claim.analysis}.json"
        if not path.is_file():
            return self._not_run(f"analysis {claim.analysis} is not part of suite {self.suite}: "
                                 f"run `snakemake paper_{paper.paper}`")
        result = read_json(path)
        values = result.get("values") if isinstance(result, dict) else None
        if not isinstance(values, dict) or claim.key not in values:
            raise CoopbenchError(f"{path} has no value {claim.key!r} (claim {paper.paper}/{claim.id})",
                                 f"re-run the analysis {claim.analysis}, or fix the claim's key")
        value = values[claim.key]
        published = claim.published
        extra = {"analysis_file": str(path), "analysis_settings": result.get("settings", {})}
        if published.kind == "outcome" and published.monotone is not None:
            return judge_monotone(value, published.monotone, published.tolerance), extra
        array = np.asarray(value, dtype=float).reshape(-1)
        if published.kind == "outcome":
            return judge_outcome(array, published.value, published.tolerance), extra
        if published.kind == "number":
            interval = published_interval(published.value, published.error, published.error_kind, claim.seeds,
                                          published.error_low, published.error_high)
            judgement = judge_number(array, published.value, interval, claim.summary, self.reps, self.seed)
            if array.size == 1:  # an exact computation: no seeds, a point
                inside = interval[0] - 1e-12 <= array[0] <= interval[1] + 1e-12
                judgement.verdict, judgement.note = ("reproduced" if inside else "not reproduced"), ""
                judgement.rule = ("the computed value lies in the published interval "
                                  f"[{interval[0]:.4g}, {interval[1]:.4g}]")
            return judgement, extra
        raise CoopbenchError(f"claim {paper.paper}/{claim.id}: an ordering needs runs, not an analysis",
                             "express it as an outcome on the analysis' values")

    def _judge_runs(self, paper: PaperFile, claim: Claim) -> tuple[Judgement, dict]:
        from algorithms.registry import ALGORITHMS

        comparison = comparison_id(paper.paper, claim.experiment)
        experiment = paper.experiment(claim.experiment)
        budget = claim.budget or experiment.run.total_env_steps
        seeds = claim.seeds or experiment.seeds
        extra = {"comparison": comparison, "budget": budget, "seeds": seeds}
        for method in claim.methods:
            if method not in ALGORITHMS.names():
                return self._not_run(f"method {method} is not implemented yet "
                                     f"({PLANNED_ALGORITHMS.get(method, 'not planned')})", **extra)
        skipped = self.skipped[(self.skipped["comparison"] == comparison) & self.skipped["env"].isin(claim.tasks)
                               & self.skipped["algo"].isin(claim.methods)]
        if not skipped.empty:
            return self._not_run(f"left out of the plan: {skipped['reason'].iloc[0]}", **extra)
        planned = self.runs[self.runs["comparisons"].apply(lambda c: comparison in c)
                            & self.runs["env"].isin(claim.tasks) & self.runs["algo"].isin(claim.methods)]
        if planned.empty:
            return self._not_run(f"experiment {comparison} is not part of suite {self.suite}: run "
                                 f"`snakemake paper_{paper.paper}` (at the paper's budget) to judge it", **extra)
        failed = planned[planned["status"] != "completed"]
        if not failed.empty:
            row = failed.iloc[0]
            return self._not_run(f"{len(failed)} of {len(planned)} runs did not complete; {row['env']} "
                                 f"{row['algo']} seed {row['seed']}: {row['status']}: {row['reason']}", **extra)

        rows = self.scores[(self.scores["comparison"] == comparison) & self.scores["env"].isin(claim.tasks)
                           & self.scores["algo"].isin(claim.methods)]
        at_budget = _at_budget(rows, budget)
        column = METRIC_COLUMNS[claim.metric]
        if at_budget[column].isna().any():
            return self._not_run(f"the runs report no {claim.metric} (a task without wins?)", **extra)
        extra["runs"] = [{"env": e, "algo": a, "config_hash": h, "seeds": sorted(int(s) for s in g["seed"])}
                         for (e, a, h), g in at_budget.groupby(["env", "algo", "config_hash"])]
        budget_used = int(at_budget["env_steps"].min())
        seeds_used = int(at_budget.groupby(["env", "algo"])["seed"].nunique().min())
        extra.update(budget_used=budget_used, seeds_used=seeds_used)

        def values(env: str, algo: str) -> np.ndarray:
            sel = at_budget[(at_budget["env"] == env) & (at_budget["algo"] == algo)].sort_values("seed")
            return sel[column].to_numpy(dtype=float)

        published = claim.published
        if published.kind == "number":
            interval = published_interval(published.value, published.error, published.error_kind, seeds,
                                          published.error_low, published.error_high)
            judgement = judge_number(values(claim.tasks[0], claim.methods[0]), published.value, interval,
                                     claim.summary, self.reps, self.seed)
        elif published.kind == "tie":
            first, second = published.between
            judgement = judge_tie([values(t, first) for t in claim.tasks], [values(t, second) for t in claim.tasks],
                                  published.margin, self.reps, self.seed)
        elif published.kind == "ordering":
            judgement = judge_ordering([values(t, published.better) for t in claim.tasks],
                                       [values(t, published.worse) for t in claim.tasks], self.reps, self.seed)
        else:
            every = np.concatenate([values(t, m) for t in claim.tasks for m in claim.methods])
            judgement = judge_outcome(every, published.value, published.tolerance)
        return at_reduced_scale(judgement, budget_used, budget, seeds_used, seeds), extra


def _at_budget(rows: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Each run's evaluation row at the claim's budget: the first at or after it (a run's last iteration may
    overshoot its budget by less than one iteration), or the final row of a run that stopped short of it."""
    keys = ["env", "algo", "config_hash", "seed"]
    ordered = rows.sort_values("env_steps")
    reached = ordered[ordered["env_steps"] >= budget].groupby(keys, as_index=False).head(1)
    short = ordered.groupby(keys, as_index=False).tail(1)
    short = short.merge(reached[keys], on=keys, how="left", indicator=True)
    short = short[short["_merge"] == "left_only"].drop(columns="_merge")
    return pd.concat([reached, short], ignore_index=True)
