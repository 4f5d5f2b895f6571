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

    return run_results(list(chosen_runs(suite_plan(wildcards.suite).runs).values()), suite=wildcards.suite)


def run_results(runs, suite):
    """What a stage reading `runs` waits on: each run's manifest and metrics, or, when runs share jobs
    (`seeds_per_job` > 1 or `pack_minutes` > 0), their jobs' markers, one DAG node per job (the files are written
    with the marker). Per-run nodes would add a local check job per run, which Snakemake schedules one at a time:
    ~10 s of `make leaderboard` for ~100 runs. A target naming one run's manifest still gets its check (`run`)."""
    if config["seeds_per_job"] == 1 and config["pack_minutes"] == 0:
        return [run.config.run_dir(RESULTS, run.seed) / name for run in runs
                for name in ("manifest.json", "metrics.parquet")]
    return sorted({job_marker_of(run.key, suite) for run in runs})


suite_plan(SUITE)


wildcard_constraints:
    env=r"[^/]+/[^/]+",
    algo=r"[^/]+",
    hash=r"[0-9a-f]{12}",
    seed=r"\d+",
    suite=SUITE_NAME_RE,  # the pattern the CLI checks (coopbench.config.check_suite_name)
    name=r"[a-z0-9][a-z0-9_.-]*",
    job=r"(pack|seeds)-[0-9a-f]{12}",  # coopbench.jobs.RunJob.id
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
    """The CPU image, or `container_image_cuda` (null in config/workflow.yaml: the same) for jobs that want a GPU."""
    resources = job_resources_of(wildcards) if hasattr(wildcards, "job") else run_resources(wildcards)
    if resources["gpus"] > 0 and config["container_image_cuda"] is not None:
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


# Run jobs (config seeds_per_job > 1 or pack_minutes > 0; workflow/rules/run.smk): which runs share a job is
# coopbench/jobs.py's, computed per suite in one fixed order (the configured suite, the paper suites, papers), each
# run in the first suite that plans it, so every invocation and every cluster job derives the same jobs.
_JOBS = {}  # job id -> coopbench.jobs.RunJob
_JOB_OF = {}  # run key -> job id
_JOBS_OF_SUITE = set()


def suite_jobs(suite):
    from coopbench.jobs import plan_jobs, write_job_file

    if suite in _JOBS_OF_SUITE:
        return
    runs = [run for run in suite_plan(suite).runs if run.key not in _JOB_OF]
    try:
        jobs = plan_jobs(runs, config["seeds_per_job"], config["pack_minutes"], rates_table(), config["run_resources"])
    except CoopbenchError as err:
        config_error(err)
    for job in jobs:
        _JOBS[job.id] = job
        _JOB_OF.update({key: job.id for key in job.run_keys})
        # Written with the plan, not by a job: a local job with a `run:` block starts a Snakemake of its own
        # (~8 s each here), and the file is data the plan already holds.
        write_job_file(job, RESULTS / "jobs" / f"{job.id}.json")
    _JOBS_OF_SUITE.add(suite)


def job_marker(wildcards):
    """The marker of the job that trains this run."""
    return job_marker_of(planned_run(wildcards).key)


def job_marker_of(key, suite=None):
    for name in (SUITE, *PAPER_SUITES, "papers", *([suite] if suite else [])):
        suite_jobs(name)
        if key in _JOB_OF:
            break
    return RESULTS / "jobs" / f"{_JOB_OF[key]}.done"


def planned_job(wildcards):
    for suite in (SUITE, *PAPER_SUITES, "papers"):
        if wildcards.job in _JOBS:
            break
        suite_jobs(suite)
    if wildcards.job not in _JOBS:
        config_error(CoopbenchError(f"no planned job {wildcards.job} under this config",
                                    "the config changed since its job file was written: run snakemake on the targets"))
    return _JOBS[wildcards.job]


def job_resources_of(wildcards):
    return planned_job(wildcards).resources
