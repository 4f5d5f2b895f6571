"""The Snakemake profiles and per-run resources: fast checks, no cluster.

The real cluster run (start Slurm, smoke suite with --profile slurm, compare with a local run,
scancel a job) is .ci/slurm/smoke-on-slurm.sh, which CI runs; it does not belong in `make test`.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.profiles import ProfileConfigFileParser

from coopbench.base.errors import CoopbenchError
from coopbench.config import AlgoFile, EnvFile, Resources, combine_resources, plan_suite
from tests.conftest import REPO

PROFILES = REPO / "workflow" / "profiles"
USER_SETTINGS = ("COOPBENCH_SLURM_PARTITION", "COOPBENCH_SLURM_ACCOUNT", "COOPBENCH_SLURM_QOS",
                 "COOPBENCH_SLURM_JOBS", "COOPBENCH_SLURM_STATUS_COMMAND")


def parse_profile(name: str, monkeypatch, **env) -> dict:
    """The profile as Snakemake reads it: YTE evaluated, mappings flattened to KEY=VALUE lists."""
    for key in USER_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = PROFILES / name / "config.yaml"
    with path.open() as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def as_dict(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def test_slurm_profile_defaults(monkeypatch):
    profile = parse_profile("slurm", monkeypatch)
    assert profile["executor"] == "slurm"
    assert int(profile["jobs"]) == 100
    assert int(profile["retries"]) >= 1
    assert int(profile["latency-wait"]) >= 30
    resources = as_dict(profile["default-resources"])
    assert {"runtime", "mem_mb", "cpus_per_task"} <= resources.keys()
    # No partition/account/QoS unless the user sets them: the cluster's defaults apply.
    assert "slurm_partition" not in resources and "slurm_account" not in resources
    assert "slurm-qos" not in profile
    # Clusters without accounting: poll squeue, not sacct.
    assert profile["slurm-status-command"] == "squeue"
    assert {"aggregate", "stats", "figures", "claims", "site"} == {g.split("=")[0] for g in profile["groups"]}


def test_slurm_profile_user_settings(monkeypatch):
    profile = parse_profile("slurm", monkeypatch, COOPBENCH_SLURM_PARTITION="gpu", COOPBENCH_SLURM_ACCOUNT="rl-lab",
                            COOPBENCH_SLURM_QOS="short", COOPBENCH_SLURM_JOBS="7",
                            COOPBENCH_SLURM_STATUS_COMMAND="sacct")
    resources = as_dict(profile["default-resources"])
    assert resources["slurm_partition"] == "gpu"
    assert resources["slurm_account"] == "rl-lab"
    assert profile["slurm-qos"] == "short"
    assert int(profile["jobs"]) == 7
    assert profile["slurm-status-command"] == "sacct"


def test_slurm_profile_options_exist():
    """Every slurm-* key of the profile is an option of the installed executor plugin."""
    from snakemake_executor_plugin_slurm import ExecutorSettings

    fields = {f"slurm-{name.replace('_', '-')}" for name in ExecutorSettings.__dataclass_fields__}
    profile = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    keys = {key for key in profile if str(key).startswith("slurm-")}
    assert keys and keys <= fields, keys - fields


def test_min_job_age_covers_status_checks(monkeypatch):
    """squeue forgets finished jobs after MinJobAge: it must be >= 3x the first status-check delay."""
    init = int(parse_profile("slurm", monkeypatch)["slurm-init-seconds-before-status-checks"])
    assert 3 * init <= 300  # Slurm's default MinJobAge
    script = (REPO / ".ci" / "slurm" / "start-cluster.sh").read_text()
    min_job_age = int(re.search(r"^MIN_JOB_AGE=(\d+)", script, re.M).group(1))
    assert min_job_age >= 3 * max(init, 5)
    ci = (REPO / ".ci" / "slurm" / "smoke-on-slurm.sh").read_text()
    fast = int(re.search(r"--slurm-init-seconds-before-status-checks (\d+)", ci).group(1))
    assert min_job_age >= 3 * fast


def test_default_profile(monkeypatch):
    profile = parse_profile("default", monkeypatch)
    assert "executor" not in profile  # local
    assert profile["cores"] == "all"


def test_named_profile_resolution(tmp_path, monkeypatch):
    """`make profiles` links the checkout's profiles where Snakemake looks for named ones."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    proc = subprocess.run(["make", "-s", "profiles", f"SNAKEMAKE_PROFILES={tmp_path / 'config' / 'snakemake'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name, target in (("slurm", "slurm"), ("coopbench-local", "default")):
        link = tmp_path / "config" / "snakemake" / name
        assert link.resolve() == (PROFILES / target).resolve()
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(tmp_path)
    # platformdirs caches nothing: the user config dir follows XDG_CONFIG_HOME.
    found = get_profile_dir("slurm")
    assert found is not None and found[0].resolve() == (PROFILES / "slurm").resolve()


# --- per-run resources ----------------------------------------------------------------------------


def test_combine_resources_takes_the_max():
    env = Resources(runtime=30, mem_mb=8000, gpus=1)
    algo = Resources(runtime=120, mem_mb=2000, cpus_per_task=4)
    assert combine_resources(env, algo) == {"runtime": 120, "mem_mb": 8000, "cpus_per_task": 4, "gpus": 1}
    assert combine_resources(Resources(), Resources()) == {}


def test_resources_schema():
    assert EnvFile(normalization={"method": "raw", "rule": "raw"}, resources={"gpus": 1}).resources.gpus == 1
    assert AlgoFile(resources={"runtime": 90}).resources.runtime == 90
    with pytest.raises(ValueError):
        AlgoFile(resources={"walltime": 90})  # unknown key
    with pytest.raises(ValueError):
        EnvFile(normalization={"method": "raw", "rule": "raw"}, resources={"mem_mb": 0})


@pytest.fixture
def config_with_resources(tmp_path, monkeypatch):
    """A copy of config/ where acpo-3x3 wants a GPU and more memory and IPPO wants 4 CPUs and 2 hours."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    shutil.copytree(REPO / "claims", tmp_path / "claims")  # beside config/, as in the repository
    env_file = config / "environments" / "matrix" / "acpo-3x3.yaml"
    env_file.write_text(env_file.read_text() + "\nresources: {gpus: 1, mem_mb: 6000, runtime: 20}\n")
    algo_file = config / "algorithms" / "ippo.yaml"
    algo_file.write_text(algo_file.read_text() + "\nresources:\n  cpus_per_task: 4\n  runtime: 120\n")
    monkeypatch.setenv("COOPBENCH_CONFIG_DIR", str(config))
    return config


def test_planned_run_resources_do_not_change_the_hash(config_with_resources, monkeypatch):
    with_resources = {run.key: run.resources for run in plan_suite("smoke")}
    monkeypatch.delenv("COOPBENCH_CONFIG_DIR")
    without = {run.key: run.resources for run in plan_suite("smoke")}
    assert with_resources.keys() == without.keys()  # same hashes, same run directories
    for (env, algo, _, _), resources in with_resources.items():
        expected = {}
        if env == "matrix/acpo-3x3":
            expected |= {"gpus": 1, "mem_mb": 6000, "runtime": 20}
        if algo == "ippo":
            expected |= {"cpus_per_task": 4, "runtime": 120}
        assert resources == expected, (env, algo)


def test_bad_resources_name_the_file(config_with_resources):
    algo_file = config_with_resources / "algorithms" / "ippo.yaml"
    algo_file.write_text(algo_file.read_text() + "\nresources: {gpu: 1}\n")
    with pytest.raises(CoopbenchError, match="ippo"):
        plan_suite("smoke")


@pytest.mark.slow
def test_run_jobs_get_resources_threads_and_image(config_with_resources, tmp_path):
    """A dry run shows what each run job asks the scheduler for and which image it records."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apptainer").write_text('#!/bin/sh\necho "apptainer version 1.3.4"\n')
    (fake / "apptainer").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-n", "-p",
         "--sdm", "apptainer", "--config", "suite=smoke", "container_image=docker://ex/coopbench@sha256:abc",
         "container_image_cuda=build/coopbench-cuda.sif", "pack_minutes=0", "--", "results/smoke/scores.parquet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [block for block in proc.stdout.split("\nrule ")[1:] if block.startswith("run:")]
    assert len(jobs) == len(plan_suite("smoke")) == 10
    for block in jobs:
        wildcards = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"wildcards: (.*)", block).group(1)))
        resources = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", block).group(1)))
        gpu_task = wildcards["env"] == "matrix/acpo-3x3"
        ippo = wildcards["algo"] == "ippo"
        assert resources["gpu"] == ("1" if gpu_task else "0")
        assert resources["mem_mb"] == ("6000" if gpu_task else "2000")  # floor from config/workflow.yaml
        assert resources["cpus_per_task"] == ("4" if ippo else "1")
        # a config's runtime wins over the measured rate (config/rates.yaml), which gives the smoke budget's tiny
        # runs less than the 10-minute floor of config/workflow.yaml (coopbench/estimate.py job_resources)
        assert resources["runtime"] == ("120" if ippo else "20" if gpu_task else "10")
        command = re.search(r"Shell command: (.*)", block).group(1)
        # threads = cpus_per_task, capped by --cores locally (2 here: the dry run's default is all)
        assert re.search(r"--threads \d+", command)
        if gpu_task:  # not pinned: the value the .sif image sets wins, else its path
            prefix = 'COOPBENCH_CONTAINER_IMAGE="${COOPBENCH_CONTAINER_IMAGE:-build/coopbench-cuda.sif}"'
        else:  # pinned by digest: recorded as is
            prefix = "COOPBENCH_CONTAINER_IMAGE=docker://ex/coopbench@sha256:abc"
        assert command.startswith(f"{prefix} coopbench run "), command
