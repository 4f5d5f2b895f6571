"""Stage `aggregate`: the runs of a suite -> `scores.parquet` (one row per run x evaluation point x comparison
the run serves) and `runs.json` (every planned run's status, and the pairs the plan left out, with reasons).

A run recorded as `not_run` or `failed` (its manifest says why) is listed in runs.json and left out of the
scores: one failed run never takes the rest of the suite down. So is a run whose metrics hold a NaN or infinite
return (status `failed`, reason "excluded by aggregate: ..."), with a warning on stderr.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_checked_json, read_json, read_parquet, write_json, write_parquet
from coopbench.base.normalization import RECORDED_METHODS, normalized_score
from coopbench.base.schema import (
    FAILURE_MANIFEST_KEYS,
    MANIFEST_KEYS,
    METRICS_COLUMNS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    SCORES_COLUMNS,
)


def read_manifest(run_dir: Path) -> dict:
    """A run's manifest, validated: a completed run's or a recorded failure's (status not_run / failed)."""
    manifest_path = run_dir / "manifest.json"
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise CoopbenchError(
            f"corrupt result file {manifest_path}: not a JSON object", f"delete {run_dir} and re-run that job"
        )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise CoopbenchError(
            f"{manifest_path} has schema_version {manifest.get('schema_version')!r}, "
            f"this coopbench reads {SCHEMA_VERSION}",
            f"delete {run_dir} and re-run that job",
        )
    status = manifest.get("status")
    if status not in RUN_STATUSES:
        raise CoopbenchError(f"{manifest_path} has status {status!r}, not one of {RUN_STATUSES}",
                             f"delete {run_dir} and re-run that job")
    required = MANIFEST_KEYS if status == "completed" else FAILURE_MANIFEST_KEYS
    missing = [key for key in required if key not in manifest]
    if missing:
        raise CoopbenchError(f"{manifest_path} lacks keys {missing}", f"delete {run_dir} and re-run that job")
    return manifest


def read_run(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """Read and validate one completed run directory: its manifest and its metrics, sorted by env_steps."""
    manifest = read_manifest(run_dir)
    manifest_path = run_dir / "manifest.json"
    if manifest["status"] != "completed":
        raise CoopbenchError(
            f"{manifest_path} has status {manifest['status']!r}, not 'completed'",
            f"finish or re-run that job, or leave {run_dir} out of the suite",
        )
    _check_normalization(manifest["normalization"], manifest_path)

    metrics_path = run_dir / "metrics.parquet"
    metrics = read_parquet(metrics_path, METRICS_COLUMNS)
    if metrics.empty:
        raise CoopbenchError(
            f"{metrics_path} has no evaluation rows", f"delete {run_dir} and re-run that job"
        )
    return manifest, metrics.sort_values(["env_steps", "iteration"], kind="stable").reset_index(drop=True)


def _check_normalization(norm: object, manifest_path: Path) -> None:
    if not isinstance(norm, dict) or norm.get("method") not in RECORDED_METHODS:
        raise CoopbenchError(
            f"{manifest_path}: normalization must be a dict with method in "
            f"{RECORDED_METHODS}, got {norm!r}",
            "fix the normalization rule in the environment's config and re-run",
        )
    if norm["method"] == "min_max":
        low, high = norm.get("low"), norm.get("high")
        ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)) and high != low
        if not ok:
            raise CoopbenchError(
                f"{manifest_path}: min_max normalization needs finite low != high, "
                f"got low={low!r} high={high!r}",
                "fix the normalization rule in the environment's config and re-run",
            )


def non_finite(metrics: pd.DataFrame) -> str | None:
    """Why a run's metrics cannot be scored (a NaN or infinite return), in words; None when they can.

    The run driver stops at the first non-finite value, so such a file comes from an older coopbench or was
    changed by hand. The win rate is NaN on tasks without `won`; infinite never."""
    for column in ("eval_return_mean", "eval_return_std", "eval_win_rate"):
        values = metrics[column].to_numpy(dtype=float)
        bad = np.isinf(values) if column == "eval_win_rate" else ~np.isfinite(values)
        if bad.any():
            steps = metrics.loc[bad, "env_steps"].tolist()
            return (f"non-finite {column} in {int(bad.sum())} of {len(values)} evaluations "
                    f"(first at env_steps {steps[0]})")
    return None


def communication(metrics: pd.DataFrame) -> dict | None:
    """What each agent sent to the others over the run, for methods that communicate and record it (AS and its
    baselines, issue 16: the optional metrics columns): the totals at the last evaluation. None otherwise."""
    if "comm_floats_per_agent" not in metrics or "comm_bytes_per_agent" not in metrics:
        return None
    last = metrics.iloc[-1]
    floats, sent_bytes = float(last["comm_floats_per_agent"]), float(last["comm_bytes_per_agent"])
    if not (np.isfinite(floats) and np.isfinite(sent_bytes)):
        return None
    return {"floats_per_agent": floats, "bytes_per_agent": sent_bytes, "env_steps": int(last["env_steps"])}


def run_scores(run_dir: Path, manifest: dict, metrics: pd.DataFrame, comparison: str) -> pd.DataFrame:
    """The scores rows of one validated run, for one comparison it serves."""
    frame = pd.DataFrame(
        {
            "comparison": comparison,
            "env": manifest["env"],
            "algo": manifest["algo"],
            "config_hash": str(manifest["config_hash"]),
            "seed": int(manifest["seed"]),
            "iteration": metrics["iteration"].astype("int64"),
            "env_steps": metrics["env_steps"].astype("int64"),
            "eval_return_mean": metrics["eval_return_mean"].astype(float),
            "eval_return_std": metrics["eval_return_std"].astype(float),
            "eval_win_rate": metrics["eval_win_rate"].astype(float),
            "normalized_score": normalized_score(metrics["eval_return_mean"].astype(float), manifest["normalization"]),
            "normalization": manifest["normalization"]["method"],
            "is_final": False,
            "run_dir": str(run_dir),
        }
    )
    frame.loc[frame.index[-1], "is_final"] = True  # metrics are sorted by env_steps
    return frame[SCORES_COLUMNS]


def aggregate(run_dirs: list[Path], out: Path, suite: str, comparisons: dict[Path, list[str]] | None = None,
              skipped: list[dict] | None = None, runs_out: Path | None = None) -> pd.DataFrame:
    """Validate every run, then write `out` (scores.parquet) and `runs_out` (runs.json, default beside `out`);
    nothing is written if any run is bad. `comparisons` maps a run dir to the comparisons it serves (default:
    the suite's own, "suite:<suite>"); `skipped` lists the pairs the plan left out, with their reasons."""
    if not run_dirs and not skipped:
        raise CoopbenchError(
            f"no run directories given for suite {suite!r}", "pass the run dirs of the suite"
        )
    frames, seen, statuses = [], {}, []
    for run_dir in map(Path, run_dirs):
        manifest = read_manifest(run_dir)
        key = (manifest["env"], manifest["algo"], str(manifest["config_hash"]), int(manifest["seed"]))
        if key in seen:
            raise CoopbenchError(
                f"run {key} appears twice: {seen[key]} and {run_dir}", "pass each run directory once"
            )
        seen[key] = run_dir
        served = (comparisons or {}).get(run_dir) or [f"suite:{suite}"]
        statuses.append({"env": key[0], "algo": key[1], "config_hash": key[2], "seed": key[3],
                         "comparisons": list(served), "status": manifest["status"],
                         "reason": manifest.get("reason", ""), "run_dir": str(run_dir)})
        if manifest["status"] != "completed":
            continue
        manifest, metrics = read_run(run_dir)
        reason = non_finite(metrics)
        if reason is not None:  # excluded loudly: listed as failed with the reason, and said on stderr
            statuses[-1].update(status="failed", reason=f"excluded by aggregate: {reason}")
            print(f"aggregate: warning: {run_dir} excluded from the scores: {reason}", file=sys.stderr)
            continue
        sent = communication(metrics)
        if sent is not None:
            statuses[-1]["communication"] = sent
        frames += [run_scores(run_dir, manifest, metrics, comparison) for comparison in served]
    columns = {c: pd.Series(dtype="object") for c in SCORES_COLUMNS}
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns)
    scores = scores.sort_values(["comparison", "env", "algo", "config_hash", "seed", "env_steps"], kind="stable",
                                ignore_index=True)
    scores.attrs["suite"] = suite  # pandas keeps attrs in the parquet metadata
    runs_out = Path(runs_out) if runs_out is not None else Path(out).with_name("runs.json")
    write_parquet(out, scores)
    write_json(runs_out, {"schema_version": SCHEMA_VERSION, "suite": suite, "runs": statuses,
                          "skipped": list(skipped or [])})
    return scores


def aggregate_plan(suite: str, results_dir: Path, out: Path) -> pd.DataFrame:
    """aggregate() over the runs the suite plans (no run list on a command line: the papers suite has thousands)."""
    from dataclasses import asdict

    from coopbench.config import plan

    planned = plan(suite)
    comparisons = {run.config.run_dir(results_dir, run.seed): list(run.comparisons) for run in planned.runs}
    if not comparisons and not planned.skipped:
        raise CoopbenchError(f"suite {suite!r} plans no run", "give it experiments or environments")
    return aggregate(list(comparisons), out, suite, comparisons, [asdict(s) for s in planned.skipped])


# -- reading runs.json back (claims, site): its shape checked on load.


class _RunEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    env: str
    algo: str
    config_hash: str
    seed: int
    comparisons: list[str]
    status: Literal["completed", "not_run", "failed"]
    reason: str
    run_dir: str


class _SkippedEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    comparison: str
    env: str
    algo: str
    reason: str


class _RunsFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    schema_version: int
    suite: str
    runs: list[_RunEntry]
    skipped: list[_SkippedEntry]


def read_runs(path: Path) -> dict:
    """runs.json as the aggregate stage writes it, checked: another shape or version is one CoopbenchError."""
    return read_checked_json(path, _RunsFile, "a runs.json of the aggregate stage", SCHEMA_VERSION,
                             "re-run the aggregate stage (it rewrites the file)")
