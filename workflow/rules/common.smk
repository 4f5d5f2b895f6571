# Shared by every rule: which suite, where results go, and the planned runs.
import shlex
from pathlib import Path

from coopbench.config import plan_suite

SUITE = config["suite"]
RESULTS = Path(config["results_dir"])
SITE = Path(config["site_dir"])
SUITE_DIR = RESULTS / SUITE
# Resolving the suite validates every config file before any job starts.
PLAN = {run.key: run for run in plan_suite(SUITE)}
RUN_DIRS = [run.config.run_dir(RESULTS, run.seed) for run in PLAN.values()]


wildcard_constraints:
    env=r"[^/]+/[^/]+",
    algo=r"[^/]+",
    hash=r"[0-9a-f]{12}",
    seed=r"\d+",


def planned_run(wildcards):
    return PLAN[(wildcards.env, wildcards.algo, wildcards.hash, int(wildcards.seed))]


def set_args(wildcards):
    return " ".join(f"--set {shlex.quote(item)}" for item in planned_run(wildcards).set_args)
