"""Run jobs (coopbench/jobs.py, `coopbench run-job`): which planned runs share a job, and that sharing one changes
no run's results."""

import dataclasses
import json
import math
from types import SimpleNamespace

import pytest

from coopbench.base.errors import CoopbenchError
from coopbench.cli import main
from coopbench.config import plan_suite
from coopbench.estimate import RatesTable, load_floor
from coopbench.jobs import plan_jobs, read_job_spec

FLOOR = {"runtime": 10, "mem_mb": 2000, "cpus_per_task": 1, "gpus": 0}


class Table:
    """A rates table whose runs take `work[(env, algo)]` seconds (None: no rate) after a 60 s start-up."""

    def __init__(self, work):
        self.work = work
        self.rule = SimpleNamespace(startup_s=60.0, margin=1.0, unmeasured_minutes=60)
        self.file = SimpleNamespace(memory=SimpleNamespace(margin=1.0))

    def run_rate(self, run):
        seconds = self.work.get((run.config.env, run.config.algo))
        return None if seconds is None else SimpleNamespace(seconds=seconds, peak_rss_mb=None)

    def seconds(self, run, rate, slowest):
        return 60.0 + rate.seconds

    def limit_minutes(self, run):
        rate = self.run_rate(run)
        return None if rate is None else math.ceil(self.seconds(run, rate, True) / 60)

    def mem_mb(self, run):
        return None


@pytest.fixture(scope="module")
def smoke():
    return plan_suite("smoke")


def _all_keys(jobs):
    return [key for job in jobs for key in job.run_keys]


def test_without_packing_each_run_or_seed_block_is_a_job(smoke):
    table = Table({})
    single = plan_jobs(smoke, 1, 0, table, FLOOR)
    assert sorted(_all_keys(single)) == sorted(run.key for run in smoke)
    assert all(len(job.items) == 1 and len(job.items[0].seeds) == 1 for job in single)
    blocks = plan_jobs(smoke, 2, 0, table, FLOOR)
    assert sorted(_all_keys(blocks)) == sorted(run.key for run in smoke)
    pairs = {}
    for run in smoke:
        pairs.setdefault(run.key[:3], []).append(run.seed)
    expected = sorted((key, tuple(sorted(seeds)[i:i + 2])) for key, seeds in pairs.items()
                      for i in range(0, len(seeds), 2))
    assert sorted(((i.env, i.algo, i.hash), i.seeds) for job in blocks for i in job.items) == expected
    for job in blocks:  # a batch of K seeds holds K seeds' memory; its time limit covers them one after another
        [item] = job.items
        assert job.resources["mem_mb"] == FLOOR["mem_mb"] * len(item.seeds)


def test_short_runs_are_packed_into_even_jobs_of_about_pack_minutes(smoke):
    work = {}
    for i, (env, algo) in enumerate(sorted({(r.config.env, r.config.algo) for r in smoke})):
        work[(env, algo)] = 2.0 + 2 * i  # seconds per run: every (task, method)'s seeds under 30 s
    table = Table(work)
    jobs = plan_jobs(smoke, 1, 0.5, table, FLOOR)
    keys = _all_keys(jobs)
    assert sorted(keys) == sorted(run.key for run in smoke) and len(set(keys)) == len(keys)  # each run once
    items = [item for job in jobs for item in job.items]
    groups = {run.key[:3] for run in smoke}
    assert len(items) == len(groups)  # a (task, method, config)'s seeds stay together: one seed batch
    item_work = {(i.env, i.algo, i.hash): work[(i.env, i.algo)] * len(i.seeds) for i in items}
    total = sum(item_work.values())
    assert len(jobs) == math.ceil(total / 30)
    loads = [sum(item_work[(i.env, i.algo, i.hash)] for i in job.items) for job in jobs]
    assert max(loads) - min(loads) <= max(item_work.values())  # LPT: no job a whole item above another
    assert [job.id for job in plan_jobs(smoke, 1, 0.5, table, FLOOR)] == [job.id for job in jobs]  # stable
    for job, load in zip(jobs, loads, strict=True):  # one start-up (60 s) for the job, then each run's time
        assert job.resources["runtime"] == max(FLOOR["runtime"], math.ceil((60 + load) / 60))
    big = Table({key: 600.0 for key in work})  # 10 minutes a run: one job per seed block, limits not shared
    assert all(len(job.items) == 1 for job in plan_jobs(smoke, 2, 0.5, big, FLOOR))
    assert max(job.resources["runtime"] for job in plan_jobs(smoke, 2, 0.5, big, FLOOR)) == 2 * 10 + 1


def test_runs_sized_on_their_own_are_never_packed(smoke):
    """A run whose config states its runtime, a GPU run and a run without a rate get jobs of their own."""
    def with_resources(run, resources):
        return dataclasses.replace(run, config=dataclasses.replace(run.config, resources=resources))

    mappo = [run for run in smoke if run.config.algo == "mappo" and run.config.env == "matrix/acpo-3x3"]
    changed = {mappo[0].key: {"runtime": 30}, mappo[-1].key: {"gpus": 1}}  # its other pair still packs with ACPI
    runs = [with_resources(run, changed[run.key]) if run.key in changed else run for run in smoke]
    table = Table({(r.config.env, r.config.algo): 1.0 for r in smoke if r.config.algo != "ippo"})  # ippo: no rate
    jobs = plan_jobs(runs, 1, 5, table, FLOOR)
    alone = {key for job in jobs if len(job.items) == 1 for key in job.run_keys}
    packed = {key for job in jobs if len(job.items) > 1 for key in job.run_keys}
    assert set(changed) <= alone
    assert all(key in alone for key in _all_keys(jobs) if key[1] == "ippo")
    assert packed and not packed & alone
    gpu_job = next(job for job in jobs if mappo[-1].key in job.run_keys)
    assert gpu_job.resources["gpus"] == 1


def test_the_default_suite_packs_into_a_few_jobs_with_the_real_rates():
    runs = plan_suite("default")
    jobs = plan_jobs(runs, 1, 0.5, RatesTable.load(), load_floor())
    assert sorted(_all_keys(jobs)) == sorted(run.key for run in runs)
    assert 2 <= len(jobs) <= 20  # ~100 runs of a few seconds: a handful of jobs, more than the two cores


def test_bad_settings_and_job_files_are_one_line_errors(smoke, tmp_path, capsys):
    with pytest.raises(CoopbenchError, match="seeds_per_job 0"):
        plan_jobs(smoke, 0, 0, Table({}), FLOOR)
    with pytest.raises(CoopbenchError, match="pack_minutes -1"):
        plan_jobs(smoke, 1, -1, Table({}), FLOOR)
    bad = tmp_path / "bad.json"
    for text, message in [("{", "not readable JSON"), ('{"items": [{"env": "x"}]}', "not a job"),
                          ('{"items": []}', "has no runs")]:
        bad.write_text(text)
        with pytest.raises(CoopbenchError, match=message):
            read_job_spec(bad)
    assert main(["run-job", str(tmp_path / "missing.json"), "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and "re-run snakemake" in err[0]
    assert not (tmp_path / "r").exists()


TINY = ["run.total_env_steps=256", "run.eval_interval=128", "run.eval_episodes=2", "algo.rollout_length=16",
        "algo.n_envs=4"]


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


def _hash(algo, env):
    from coopbench.config import parse_set, resolve

    return resolve(algo, env, parse_set(TINY)).hash


def test_a_packed_job_writes_each_runs_solo_bytes_and_survives_a_failing_item(tmp_path, capsys):
    """Two (task, method)s, one with two seeds (a seed batch), and an item whose config no longer resolves to its
    planned hash: the good runs write exactly what their own `coopbench run` writes, the bad one fails the job
    at the end with its reason, and a retry skips what finished."""
    pairs = [("mappo", "matrix/cora-mtg", [0, 1]), ("ippo", "matrix/acpo-3x3", [2])]
    items = [{"env": env, "algo": algo, "hash": _hash(algo, env), "seeds": seeds, "set": TINY}
             for algo, env, seeds in pairs]
    items.insert(1, {"env": "matrix/cora-mtg", "algo": "ippo", "hash": "000000000000", "seeds": [0], "set": TINY})
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"job": "pack-test", "items": items}))
    packed = tmp_path / "packed"
    assert main(["run-job", str(job_file), "--results-dir", str(packed)]) == 2
    err = capsys.readouterr().err
    assert "1 of the 3 items" in err and "ippo matrix/cora-mtg seeds 0" in err and "differs from the planned" in err
    for algo, env, seeds in pairs:
        for seed in seeds:
            solo = tmp_path / f"solo-{algo}-{seed}"
            assert main(["run", algo, env, "--seed", str(seed), *_sets(TINY), "--results-dir", str(solo)]) == 0
            [mine] = packed.glob(f"runs/{env}/{algo}/*/seed-{seed}")
            [alone] = solo.glob(f"runs/{env}/{algo}/*/seed-{seed}")
            for name in ("metrics.parquet", "model.pt"):
                assert (mine / name).read_bytes() == (alone / name).read_bytes(), (algo, seed, name)
    capsys.readouterr()
    assert main(["run-job", str(job_file), "--results-dir", str(packed)]) == 2
    assert capsys.readouterr().err.count("already complete") == 3


def test_the_estimate_counts_the_jobs_the_workflow_makes():
    from coopbench.estimate import estimate, format_estimate

    table = RatesTable.load()
    unpacked = estimate("default", table=table, job_settings=(1, 0))
    assert unpacked.grouped_jobs == unpacked.total.jobs == len(plan_suite("default"))
    packed = estimate("default", table=table, job_settings=(1, 0.5))
    assert packed.grouped_jobs == len(plan_jobs(plan_suite("default"), 1, 0.5, table, load_floor()))
    assert packed.grouped_jobs < packed.total.jobs
    assert packed.grouped_core_hours_limit < packed.total.core_hours_limit  # one start-up and floor per job
    assert f"pack_minutes 0.5, config/workflow.yaml): {packed.grouped_jobs} jobs" in format_estimate(packed, table)


def test_the_workflow_can_still_ask_for_one_run_of_a_packed_job(tmp_path):
    """The suite's stages wait on the jobs' markers; a target naming one run's manifest gets its job and the check
    that the job wrote that run's files. The job files are written with the plan, before anything runs."""
    from tests.test_workflow import snakemake

    run = plan_suite("smoke")[0]
    target = run.config.run_dir("results", run.seed) / "manifest.json"
    proc = snakemake("-n", "-p", "--cores", "1", "--config", "suite=smoke", "pack_minutes=0.5", "--", str(target),
                     cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"rule run_job:", "rule run:"} <= set(proc.stdout.splitlines())
    [job_file] = [p for p in (tmp_path / "results/jobs").glob("*.json")
                  if run.key in [(i.env, i.algo, i.hash, s) for i in read_job_spec(p) for s in i.seeds]]
    assert f"coopbench run-job results/jobs/{job_file.name}" in proc.stdout
