# Shared by every rule: which suite, where results go, and the planned runs of every suite the DAG asks for.
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

from snakemake.settings.types import DeploymentMethod

from coopbench.claims import PAPERS, claims_dir
from coopbench.config import SUITE_NAME_RE, check_suite_name, load_suite, plan
from coopbench.estimate import RatesTable, job_resources
from coopbench.base.errors import CoopbenchError


try:
    SUITE = check_suite_name(config["suite"])
    RESULTS = Path(config["results_dir"])
    SITE = Path(config["site_dir"])
    PAPER_NAMES = [p for p in PAPERS if (claims_dir() / f"{p}.yaml").is_file()]
    if not PAPER_NAMES:
        raise CoopbenchError(f"no claims files in {claims_dir()}",
                             "the claims/ folder must sit beside the config folder")
except CoopbenchError as err:
    config_error(err)
# `snakemake paper_<name>` runs the suite paper-<name> (config/suites/paper-<name>.yaml) and builds site-paper-<name>.
PAPER_SUITES = [f"paper-{p}" for p in PAPER_NAMES]
SITES = {str(SITE): SUITE, **{f"site-{s}": s for s in PAPER_SUITES if s != SUITE}}

_PLANS = {}
_RUNS = {}


def suite_plan(suite):
    """The suite's plan (computed once); resolving validates every config file before any job starts."""
    if suite not in _PLANS:
        try:
            _PLANS[suite] = plan(suite)
        except CoopbenchError as err:
            config_error(err)
        _RUNS.update({run.key: run for run in _PLANS[suite].runs})
    return _PLANS[suite]


def run_dirs(suite):
    return [run.config.run_dir(RESULTS, run.seed) for run in suite_plan(suite).runs]


def suite_analyses(suite):
    try:
        analyses = load_suite(suite).analyses
    except CoopbenchError as err:
        config_error(err)
    return [RESULTS / "analyses" / f"{name}.json" for name in analyses]


def claim_files(suite):
    return [RESULTS / suite / "claims" / f"{paper}.json" for paper in PAPER_NAMES]


def site_inputs(wildcards):
    suite = SITES[wildcards.sitedir]
    return {
        "stats": RESULTS / suite / "stats.json",
        "scores": RESULTS / suite / "scores.parquet",
        "runs": RESULTS / suite / "runs.json",
        "figures": RESULTS / suite / "figures",
        "animations": RESULTS / suite / "animations",
        "claims": claim_files(suite),
    }


def animated_runs(wildcards):
    """The manifests of the runs whose policies the suite's task pages animate (leaderboard/animations.py)."""
    from leaderboard.animations import chosen_runs

    runs = chosen_runs(suite_plan(wildcards.suite).runs).values()
    return [run.config.run_dir(RESULTS, run.seed) / "manifest.json" for run in runs]


suite_plan(SUITE)


wildcard_constraints:
    env=r"[^/]+/[^/]+",
    algo=r"[^/]+",
    hash=r"[0-9a-f]{12}",
    seed=r"\d+",
    suite=SUITE_NAME_RE,  # the pattern the CLI checks (coopbench.config.check_suite_name)
    name=r"[a-z0-9][a-z0-9_.-]*",
    sitedir="|".join(re.escape(s) for s in SITES),


def planned_run(wildcards):
    key = (wildcards.env, wildcards.algo, wildcards.hash, int(wildcards.seed))
    # A job started on its own (a cluster job re-reads this file) may belong to a suite not planned yet.
    for suite in (SUITE, *PAPER_SUITES, "papers"):
        if key in _RUNS:
            break
        suite_plan(suite)
    return _RUNS[key]


def set_args(wildcards):
    return " ".join(f"--set {shlex.quote(item)}" for item in planned_run(wildcards).set_args)


_RATES = []


def rates_table():
    """config/rates.yaml (measured env-steps/s, benchmarks/measure_rates.py), read and validated once."""
    if not _RATES:
        try:
            _RATES.append(RatesTable.load())
        except CoopbenchError as err:
            config_error(err)
    return _RATES[0]


# Scheduler resources of one run job (used by the slurm profile; locally only `threads` matters), as
# `coopbench estimate` counts them (coopbench/estimate.py job_resources): config/workflow.yaml `run_resources`
# (the least) < the runtime the rates table gives at the run's budget < the task's and method's `resources:`
# (the larger of the two) < the suite's overrides' `resources:`.
def run_resources(wildcards):
    return job_resources(planned_run(wildcards), rates_table(), config["run_resources"])


def run_image(wildcards):
    """The CPU image, or `container_image_cuda` (null in config/workflow.yaml: the same) for runs that want a GPU."""
    if run_resources(wildcards)["gpus"] > 0 and config["container_image_cuda"] is not None:
        return config["container_image_cuda"]
    return config["container_image"]


def image_env(wildcards):
    """Under --software-deployment-method apptainer, tell the run which image it runs in.

    A digest-pinned reference (...@sha256:...) is recorded as is. Otherwise the image's own value
    wins (the Apptainer image from containers/coopbench.def knows its digest) and the configured
    reference is the fallback. Outside containers nothing is set and manifests say "none".
    """
    if DeploymentMethod.APPTAINER not in workflow.deployment_settings.deployment_method:
        return ""
    image = str(run_image(wildcards))
    if "@sha256:" in image:
        return f"COOPBENCH_CONTAINER_IMAGE={shlex.quote(image)} "
    quoted = re.sub(r'([\\"$`])', r"\\\1", image)  # escaped for a double-quoted shell word
    return f'COOPBENCH_CONTAINER_IMAGE="${{COOPBENCH_CONTAINER_IMAGE:-{quoted}}}" '


# Seed blocks (config seeds_per_job > 1; workflow/rules/run.smk)


def plan_seed_blocks():
    """Which seeds share a job (`seeds_per_job: K`) is fixed by the plans of every suite, planned once: a pair's
    planned seeds in order, cut into blocks of K, so whichever seed a target asks for, its block is the same job."""
    for suite in (SUITE, *PAPER_SUITES, "papers"):
        suite_plan(suite)


def seed_block(wildcards):
    key = (wildcards.env, wildcards.algo, wildcards.hash)
    seed = planned_run(wildcards).seed
    seeds = sorted({k[3] for k in _RUNS if k[:3] == key})
    start = seeds.index(seed) // config["seeds_per_job"] * config["seeds_per_job"]
    return seeds[start : start + config["seeds_per_job"]]


def block_marker(wildcards):
    seeds = ",".join(map(str, seed_block(wildcards)))
    return RESULTS / f"runs/{wildcards.env}/{wildcards.algo}/{wildcards.hash}/seeds-{seeds}.done"


def first_seed(wildcards):
    """The wildcards of the block's first seed (its settings and resources are every seed's: one config)."""
    return SimpleNamespace(env=wildcards.env, algo=wildcards.algo, hash=wildcards.hash,
                           seed=wildcards.seeds.split(",")[0])


def batch_resources(wildcards):
    """One seed's resources; the time limit and memory of the block's seeds one after another (an upper bound:
    a batch is faster per seed, benchmarks/README.md)."""
    one = run_resources(first_seed(wildcards))
    n = len(wildcards.seeds.split(","))
    return {**one, "runtime": one["runtime"] * n, "mem_mb": one["mem_mb"] * n}
