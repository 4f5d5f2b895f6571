# Shared by every rule: which suite, where results go, and the planned runs.
import re
import shlex
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

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


# Scheduler resources of one run job (used by the slurm profile; locally only `threads` matters):
# the largest of what its environment's and algorithm's `resources:` ask for and the floor in
# config/workflow.yaml `run_resources`.
RUN_RESOURCE_FLOOR = {"runtime": 60, "mem_mb": 2000, "cpus_per_task": 1, "gpus": 0, **config["run_resources"]}


def run_resources(wildcards):
    asked = planned_run(wildcards).resources
    return {key: max(floor, asked.get(key, floor)) for key, floor in RUN_RESOURCE_FLOOR.items()}


def run_image(wildcards):
    """The CPU image, or `container_image_cuda` (default: the same image) for runs that want a GPU."""
    if run_resources(wildcards)["gpus"] > 0:
        return config.get("container_image_cuda", config["container_image"])
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
