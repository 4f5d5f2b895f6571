"""Stage `aggregate`: the runs of a suite -> `scores.parquet` (one row per run x evaluation point)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from coopbench.errors import CoopbenchError
from coopbench.io import read_json, read_parquet, write_parquet
from coopbench.schema import MANIFEST_KEYS, METRICS_COLUMNS, SCHEMA_VERSION, SCORES_COLUMNS

NORMALIZATION_METHODS = ("min_max", "raw")


def read_run(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """Read and validate one run directory: its manifest and its metrics, sorted by env_steps."""
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
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise CoopbenchError(f"{manifest_path} lacks keys {missing}", f"delete {run_dir} and re-run that job")
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
    if not isinstance(norm, dict) or norm.get("method") not in NORMALIZATION_METHODS:
        raise CoopbenchError(
            f"{manifest_path}: normalization must be a dict with method in "
            f"{NORMALIZATION_METHODS}, got {norm!r}",
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


def normalize(returns: pd.Series, norm: dict) -> pd.Series:
    if norm["method"] == "min_max":
        return (returns - norm["low"]) / (norm["high"] - norm["low"])
    return returns.astype(float)


def run_scores(run_dir: Path, manifest: dict, metrics: pd.DataFrame) -> pd.DataFrame:
    """The scores rows of one validated run."""
    frame = pd.DataFrame(
        {
            "env": manifest["env"],
            "algo": manifest["algo"],
            "config_hash": str(manifest["config_hash"]),
            "seed": int(manifest["seed"]),
            "iteration": metrics["iteration"].astype("int64"),
            "env_steps": metrics["env_steps"].astype("int64"),
            "eval_return_mean": metrics["eval_return_mean"].astype(float),
            "eval_return_std": metrics["eval_return_std"].astype(float),
            "normalized_score": normalize(metrics["eval_return_mean"], manifest["normalization"]),
            "normalization": manifest["normalization"]["method"],
            "is_final": False,
            "run_dir": str(run_dir),
        }
    )
    frame.loc[frame.index[-1], "is_final"] = True  # metrics are sorted by env_steps
    return frame[SCORES_COLUMNS]


def aggregate(run_dirs: list[Path], out: Path, suite: str) -> pd.DataFrame:
    """Validate every run, then write `out` (scores.parquet); nothing is written if any run is bad."""
    if not run_dirs:
        raise CoopbenchError(
            f"no run directories given for suite {suite!r}", "pass the run dirs of the suite"
        )
    frames, seen = [], {}
    for run_dir in map(Path, run_dirs):
        manifest, metrics = read_run(run_dir)
        key = (manifest["env"], manifest["algo"], str(manifest["config_hash"]), int(manifest["seed"]))
        if key in seen:
            raise CoopbenchError(
                f"run {key} appears twice: {seen[key]} and {run_dir}", "pass each run directory once"
            )
        seen[key] = run_dir
        frames.append(run_scores(run_dir, manifest, metrics))
    scores = pd.concat(frames, ignore_index=True).sort_values(
        ["env", "algo", "config_hash", "seed", "env_steps"], kind="stable", ignore_index=True
    )
    scores.attrs["suite"] = suite  # pandas keeps attrs in the parquet metadata
    write_parquet(out, scores)
    return scores
