"""The result schema shared by the run driver and the leaderboard stages.

One run writes `<run_dir>/metrics.parquet` (one row per evaluation point, see METRICS_COLUMNS)
and `<run_dir>/manifest.json` (see MANIFEST_KEYS). `aggregate` turns the runs of a suite into
`results/<suite>/scores.parquet` (SCORES_COLUMNS). Bump SCHEMA_VERSION when a column changes
meaning; readers reject files of another version with a message saying to re-run.
"""

SCHEMA_VERSION = 2  # 2: eval_win_rate; scores carry the comparison each run serves

# metrics.parquet: only quantities that are a deterministic function of (config, seed), so that
# a resumed run's file is bitwise equal to an uninterrupted one. Timings live in the manifest.
METRICS_COLUMNS = [
    "iteration",  # training iterations completed (collect + update)
    "env_steps",  # environment steps (summed over batched copies) consumed so far
    "eval_return_mean",  # greedy evaluation: mean team return over eval episodes
    "eval_return_std",
    "eval_length_mean",
    "eval_episodes",
    "eval_win_rate",  # fraction of greedy episodes won, on tasks that report `won` (SMAC, SMAX, GRF, MAgent2); else NaN
    "train_return_mean",  # mean team return of training episodes finished since the last row (NaN if none)
    "train_episodes",
    "policy_loss",
    "value_loss",
    "entropy",
]
# Columns a method reports when it has them (NaN otherwise), after METRICS_COLUMNS; readers do not require them, so
# runs written before they existed still read. From the last training iteration before the row, as the losses.
OPTIONAL_METRICS_COLUMNS = [
    "comm_floats_per_agent",  # floats each agent sent to others since the start of training, mean over agents (AS)
    "comm_bytes_per_agent",  # the same in bytes
    "anticipation_mse",  # AS Fig. 7: mean squared gap between anticipated and true action probabilities
]

# A run that could not run or failed on its last attempt writes a manifest with status "not_run" or
# "failed" and a `reason`, and an empty metrics.parquet, so the rest of the suite is still judged.
RUN_STATUSES = ("completed", "not_run", "failed")
FAILURE_MANIFEST_KEYS = ["schema_version", "env", "algo", "seed", "config", "config_hash", "status", "reason",
                         "code", "host", "finished_at"]

MANIFEST_KEYS = [
    "schema_version",
    "env",
    "algo",
    "seed",
    "env_family",
    "algo_family",
    "config",  # resolved config: {"env": {...}, "algo": {...}, "run": {...}}
    "config_hash",
    "normalization",  # {"method", "low", "high", "rule"}: how scores.parquet normalizes returns
    "status",  # "completed" (see RUN_STATUSES)
    "code",  # {"commit", "dirty"}
    "packages",  # {name: version}
    "host",
    "device",
    "torch_threads",
    "container_image",  # digest, or "none"
    "slurm_job_id",  # str or None
    "started_at",
    "finished_at",
    "wall_time_s",
    "env_steps",
    "env_steps_per_s",
    "resumes",  # how many times this run restarted from a checkpoint
    "final",  # {"env_steps", "eval_return_mean", "eval_return_std", "normalized_score"}
]

SCORES_COLUMNS = [
    "comparison",  # "<paper>/<experiment>" the run serves, or "suite:<name>" (a run serving several has a row each)
    "env",
    "algo",
    "config_hash",
    "seed",
    "iteration",
    "env_steps",
    "eval_return_mean",
    "eval_return_std",
    "eval_win_rate",
    "normalized_score",
    "normalization",  # "min_max" (comparable across tasks) or "raw" (left out of cross-task aggregates)
    "is_final",
    "run_dir",
]
