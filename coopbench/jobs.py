"""Which planned runs share a run job: what the workflow schedules (workflow/rules/run.smk) and `coopbench run-job`
executes.

A job is a list of items, each item one (task, method, config) and some of its planned seeds trained in one go
(a seed batch where the method can, docs/architecture.md "Seed batches"). Two settings of config/workflow.yaml
decide the jobs:

- `seeds_per_job: K` cuts each (task, method, config)'s planned seeds, in order, into blocks of K: one job each.
- `pack_minutes: M` (0: off) packs short runs. A (task, method, config) whose seeds' estimated work (config/rates.yaml
  at the run's budget, without the per-job start-up the table adds) is under M minutes becomes one item with all
  its seeds, and such items share jobs of about M minutes of work: as many jobs as M-minute portions of the total,
  filled longest item first into the job with the least work so far (LPT scheduling), so jobs come out even. A
  run without a rate, with its own `resources: runtime` or on a GPU is never packed (it is sized on its own).

Why: each process pays the interpreter's and torch's start-up (about 1.5 s here, about a minute on a cluster node,
config/rates.yaml `startup_s`), which is most of a small suite's time (`make leaderboard`: 106 runs of a few
seconds); on a cluster, minute-long jobs are mostly scheduling. Results do not depend on the packing: every run
writes its own directory, byte for byte what its own job would write (tests/test_jobs.py).

Jobs are computed per suite: a suite's runs are packed among themselves only, so a target never runs another
suite's runs, and the same config gives the same jobs (and job ids) on every call.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from coopbench.base.errors import CoopbenchError
from coopbench.config import PlannedRun
from coopbench.estimate import RESOURCE_KEYS, RatesTable, job_resources


@dataclass(frozen=True)
class JobItem:
    """One (task, method, config) and the seeds of it a job trains, with the arguments that reproduce its config."""

    env: str
    algo: str
    hash: str
    seeds: tuple[int, ...]
    set_args: tuple[str, ...]

    def spec(self) -> dict:
        return {"env": self.env, "algo": self.algo, "hash": self.hash, "seeds": list(self.seeds),
                "set": list(self.set_args)}


@dataclass(frozen=True)
class RunJob:
    items: tuple[JobItem, ...]
    resources: dict  # runtime (minutes), mem_mb, cpus_per_task, gpus: what the job asks the scheduler for

    @property
    def id(self) -> str:
        """A name for the job's files, the same for the same items: `pack-<digest>` (several items) or
        `seeds-<digest>`."""
        keys = json.dumps([[i.env, i.algo, i.hash, list(i.seeds)] for i in self.items])
        digest = hashlib.sha1(keys.encode()).hexdigest()[:12]
        return f"{'pack' if len(self.items) > 1 else 'seeds'}-{digest}"

    @property
    def run_keys(self) -> list[tuple[str, str, str, int]]:
        return [(i.env, i.algo, i.hash, seed) for i in self.items for seed in i.seeds]

    def spec(self) -> dict:
        """The job file `coopbench run-job` reads."""
        return {"job": self.id, "items": [item.spec() for item in self.items]}


def _groups(runs: list[PlannedRun]) -> dict[tuple[str, str, str], list[PlannedRun]]:
    """The runs of each (env, algo, hash), in plan order, seeds sorted."""
    groups: dict[tuple[str, str, str], list[PlannedRun]] = {}
    for run in runs:
        groups.setdefault(run.key[:3], []).append(run)
    return {key: sorted(group, key=lambda r: r.seed) for key, group in groups.items()}


def _item(runs: list[PlannedRun]) -> JobItem:
    first = runs[0]
    return JobItem(first.config.env, first.config.algo, first.config.hash, tuple(r.seed for r in runs),
                   first.set_args)


def _work_s(run: PlannedRun, table: RatesTable) -> float | None:
    """The run's estimated seconds without the job's start-up, or None when it is not to be packed."""
    if "runtime" in run.resources or run.config.run["device"] != "cpu" or run.resources.get("gpus", 0) > 0:
        return None
    rate = table.run_rate(run)
    if rate is None:
        return None
    return table.seconds(run, rate, slowest=False) - table.rule.startup_s


def _job(items: list[JobItem], runs: dict, table: RatesTable, floor: dict[str, int]) -> RunJob:
    """A job's resources: the most any of its runs asks for, the memory of its largest seed batch, and a time limit
    for all its runs one after another (an upper bound: a batch is faster per seed). Runs the table prices pay one
    start-up between them; a run sized otherwise keeps its whole limit."""
    members = [[runs[(i.env, i.algo, i.hash, seed)] for seed in i.seeds] for i in items]
    flat = [run for item in members for run in item]
    each = {run.key: job_resources(run, table, floor) for run in flat}
    resources = {key: max(r[key] for r in each.values()) for key in RESOURCE_KEYS}
    # an item's seeds are in memory together (a seed batch holds K networks and K environments)
    resources["mem_mb"] = max(sum(each[run.key]["mem_mb"] for run in item) for item in members)
    if len(flat) > 1:
        if all(_work_s(run, table) is not None for run in flat):
            margin, startup = table.rule.margin, table.rule.startup_s
            seconds = sum(margin * table.seconds(run, table.run_rate(run), slowest=True) for run in flat)
            seconds -= (len(flat) - 1) * margin * startup
            resources["runtime"] = max(floor["runtime"], math.ceil(seconds / 60))
        else:
            resources["runtime"] = sum(r["runtime"] for r in each.values())
    return RunJob(tuple(items), resources)


def plan_jobs(runs: list[PlannedRun], seeds_per_job: int, pack_minutes: float, table: RatesTable,
              floor: dict[str, int]) -> list[RunJob]:
    """The run jobs of one suite's runs (module docstring); every run is in exactly one job."""
    if seeds_per_job < 1:
        raise CoopbenchError(f"seeds_per_job {seeds_per_job}: needs at least 1", "set seeds_per_job: 1 or more")
    if pack_minutes < 0:
        raise CoopbenchError(f"pack_minutes {pack_minutes}: needs 0 (no packing) or more",
                             "set pack_minutes: 0 or a number of minutes")
    by_key = {run.key: run for run in runs}
    jobs: list[RunJob] = []
    short: list[tuple[float, JobItem]] = []
    for group in _groups(runs).values():
        work = [_work_s(run, table) for run in group] if pack_minutes > 0 else [None]
        if None not in work and sum(work) < pack_minutes * 60:
            short.append((sum(work), _item(group)))
            continue
        for start in range(0, len(group), seeds_per_job):
            jobs.append(_job([_item(group[start:start + seeds_per_job])], by_key, table, floor))
    if short:
        n_jobs = max(1, math.ceil(sum(w for w, _ in short) / (pack_minutes * 60)))
        bins: list[tuple[float, list[JobItem]]] = [(0.0, []) for _ in range(n_jobs)]
        for work, item in sorted(short, key=lambda x: -x[0]):  # stable: plan order among equal work
            lightest = min(range(n_jobs), key=lambda b: bins[b][0])
            bins[lightest] = (bins[lightest][0] + work, [*bins[lightest][1], item])
        jobs.extend(_job(items, by_key, table, floor) for _, items in bins if items)
    return jobs


def write_job_file(job: RunJob, path) -> None:
    """The job's file for `coopbench run-job`, written (atomically) only where it is missing or differs, so an
    unchanged plan leaves it, and its modification time, alone."""
    from pathlib import Path

    from coopbench.base.io import write_json

    path = Path(path)
    try:
        if json.loads(path.read_text()) == job.spec():
            return
    except (OSError, ValueError):
        pass
    write_json(path, job.spec())


def read_job_spec(path) -> list[JobItem]:
    """A job file (`RunJob.spec`, written by the workflow) as its items, or one CoopbenchError saying what is wrong."""
    from pathlib import Path

    path = Path(path)
    fix = "re-run snakemake: it writes the job files (results/jobs/<job>.json)"
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise CoopbenchError(f"job file {path} does not exist", fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CoopbenchError(f"job file {path} is not readable JSON ({err})", fix) from None
    try:
        items = [JobItem(str(i["env"]), str(i["algo"]), str(i["hash"]), tuple(int(s) for s in i["seeds"]),
                         tuple(str(s) for s in i["set"])) for i in spec["items"]]
    except (KeyError, TypeError, ValueError) as err:
        raise CoopbenchError(f"job file {path} is not a job (items with env, algo, hash, seeds, set): {err!r}",
                             fix) from None
    if not items or any(not i.seeds for i in items):
        raise CoopbenchError(f"job file {path} has no runs", fix)
    return items
