"""What a suite costs before it runs, and what each run job asks the scheduler for.

The rates table (config/rates.yaml, written by benchmarks/measure_rates.py) holds env-steps/s per (task, method)
measured as runs train (one torch thread, the planned config), with the seconds one evaluation and the build take;
the rate per CPU second (the process and its environment workers) is used where recorded: a job has its core to
itself, the measuring machine may not.
A planned run's time at its own budget is

    startup_s + build_s + total_env_steps / rate + (ceil(total_env_steps / eval_interval) + 1) x eval_s

with the median rate for the bill (`coopbench estimate`) and the slowest measured rate, times the table's margin,
for the job's time limit (the workflow's `runtime`, workflow/rules/common.smk); its memory (`mem_mb`) is the table's
memory margin x the peak resident memory measured (replay buffers are allocated when the method is built).

Precedence of a run job's resources, lowest first: config/workflow.yaml `run_resources` (the least any job asks
for) < the runtime and memory the rates table gives < `resources:` of the task's and the method's config files (the
larger of the two: both are needs of the same job) < `resources:` of the suite's matching overrides (the last matching
rule wins per key); a run no rate covers and no config sizes gets the table's `runtime.unmeasured_minutes`.
The plan (`coopbench.config.plan`) is the one the workflow runs, so the estimate counts exactly its jobs.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coopbench.base.errors import CoopbenchError
from coopbench.config import PlannedRun, config_dir, load_yaml, plan

RESOURCE_KEYS = ("runtime", "mem_mb", "cpus_per_task", "gpus")
MEASURE = ".venv/bin/python benchmarks/measure_rates.py"


class RuntimeRule(BaseModel):
    """How a rate becomes a job's time limit."""

    model_config = ConfigDict(extra="forbid")
    margin: float = Field(ge=1.0, description="time limit = margin x the time at the slowest measured rate")
    startup_s: float = Field(ge=0, description="seconds before training starts (interpreter, imports, planning)")
    unmeasured_minutes: int = Field(gt=0, description="time limit of a run no rate covers and no config sizes")


class MemoryRule(BaseModel):
    """How a measured peak becomes a job's memory request."""

    model_config = ConfigDict(extra="forbid")
    margin: float = Field(ge=1.0, description="mem_mb = margin x the peak resident memory measured")


class RateSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: float = Field(gt=0)
    median: float = Field(gt=0)
    max: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self):
        if not self.min <= self.median <= self.max:
            raise ValueError(f"needs min <= median <= max, got {self.min}, {self.median}, {self.max}")
        return self


class MeasuredRate(BaseModel):
    """One (task, method) as benchmarks/measure_rates.py measured it."""

    model_config = ConfigDict(extra="forbid")
    env: str = Field(min_length=1)
    algo: str = Field(min_length=1)
    device: Literal["cpu", "cuda"] = "cpu"
    env_steps_per_s: RateSummary  # wall clock, on the measuring machine as loaded as it was
    # per CPU second of the process and its environment workers: what a job with its own core gets; used when present
    env_steps_per_cpu_s: RateSummary | None = None
    eval_s: float = Field(ge=0, description="seconds of one evaluation")
    build_s: float = Field(0.0, ge=0, description="seconds to build the environment and the algorithm")
    peak_rss_mb: float | None = Field(None, gt=0, description="peak resident memory (MB), environment workers included")
    chunks: int = Field(gt=0)
    iterations: int = Field(gt=0)
    warmup_env_steps: int = Field(ge=0)
    config_hash: str
    measured: dict[str, str | bool | int | float]  # date, host, cpu, torch_threads, commit, dirty
    measured_with: list[str] = Field(default_factory=list, description="--set values on top of the planned config")
    note: str = ""


class AssumedRate(BaseModel):
    """A rate stated, not measured (tasks this machine cannot run); `why` says where the number comes from."""

    model_config = ConfigDict(extra="forbid")
    envs: list[str] = Field(min_length=1, description="glob patterns of task names")
    algos: list[str] = Field(default_factory=lambda: ["*"], description="glob patterns of method names")
    device: Literal["cpu", "cuda"] = "cpu"
    env_steps_per_s: float = Field(gt=0)
    eval_s: float = Field(0.0, ge=0)
    why: str = Field(min_length=1)


class RatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    runtime: RuntimeRule
    memory: MemoryRule
    assumed: list[AssumedRate] = Field(default_factory=list)
    rates: list[MeasuredRate] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self):
        seen = set()
        for entry in self.rates:
            key = (entry.env, entry.algo, entry.device)
            if key in seen:
                raise ValueError(f"two rates entries for {entry.env} {entry.algo} on {entry.device}: keep one")
            seen.add(key)
        return self


class RunFloor(BaseModel):
    """config/workflow.yaml `run_resources`: the least every run job asks for."""

    model_config = ConfigDict(extra="ignore")
    runtime: int = Field(gt=0)
    mem_mb: int = Field(gt=0)
    cpus_per_task: int = Field(gt=0)
    gpus: int = Field(ge=0)


@dataclass(frozen=True)
class Rate:
    """The rate a run is timed with and where it comes from."""

    slowest: float  # env-steps/s for the time limit
    typical: float  # env-steps/s for the bill
    eval_s: float
    build_s: float
    peak_rss_mb: float | None  # measured; None for an assumed rate
    source: Literal["measured", "same method class", "same family", "assumed"]
    detail: str  # which entry: "rware/tiny-2ag-hard qmix", or the assumption's reason


def _family(env: str) -> str:
    from environments.registry import ENVIRONMENTS

    return ENVIRONMENTS.get(env).family


def _method_class(algo: str) -> str:
    from algorithms.registry import ALGORITHMS

    return ALGORITHMS.get(algo).target


def _slowest(entry: MeasuredRate) -> float:
    return (entry.env_steps_per_cpu_s or entry.env_steps_per_s).min


class RatesTable:
    """config/rates.yaml, validated, with the lookup of a run's rate."""

    def __init__(self, file: RatesFile, path: Path):
        self.file, self.path, self.rule = file, path, file.runtime
        self._by_pair = {(e.env, e.algo, e.device): e for e in file.rates}

    @classmethod
    def load(cls, path: Path | None = None) -> RatesTable:
        path = Path(path) if path is not None else config_dir() / "rates.yaml"
        return cls(load_yaml(path, RatesFile, "the rates table"), path)

    def rate(self, env: str, algo: str, device: str = "cpu") -> Rate | None:
        """The pair's own measurement; else the slowest measurement of a variant of the same method class on this
        task (variants share the code and differ in config); else the slowest of this method (or its class) on
        another task of the family (measure_rates.py measures each family's task with most agents); else the
        first `assumed` entry that matches; None when nothing covers the pair."""
        own = self._by_pair.get((env, algo, device))
        if own is not None:
            return self._measured(own, "measured")
        cls, family = _method_class(algo), _family(env)
        same_class = [e for e in self.file.rates if e.device == device and e.env == env
                      and _method_class(e.algo) == cls]
        if same_class:
            return self._measured(min(same_class, key=_slowest), "same method class")
        same_family = [e for e in self.file.rates if e.device == device and _family(e.env) == family
                       and (e.algo == algo or _method_class(e.algo) == cls)]
        if same_family:
            return self._measured(min(same_family, key=_slowest), "same family")
        for entry in self.file.assumed:
            if (entry.device == device and any(fnmatch.fnmatch(env, p) for p in entry.envs)
                    and any(fnmatch.fnmatch(algo, p) for p in entry.algos)):
                return Rate(entry.env_steps_per_s, entry.env_steps_per_s, entry.eval_s, 0.0, None, "assumed",
                            entry.why)
        return None

    @staticmethod
    def _measured(entry: MeasuredRate, source) -> Rate:
        rates = entry.env_steps_per_cpu_s or entry.env_steps_per_s
        return Rate(rates.min, rates.median, entry.eval_s, entry.build_s, entry.peak_rss_mb, source,
                    f"{entry.env} {entry.algo}")

    def run_rate(self, run: PlannedRun) -> Rate | None:
        return self.rate(run.config.env, run.config.algo, run.config.run["device"])

    def seconds(self, run: PlannedRun, rate: Rate, slowest: bool) -> float:
        """Wall-clock seconds of `run` at `rate` (the slowest measured or the typical one), without margin."""
        total, interval = run.config.run["total_env_steps"], run.config.run["eval_interval"]
        evaluations = math.ceil(total / interval) + 1  # the untrained policy, then every eval_interval steps
        steps_per_s = rate.slowest if slowest else rate.typical
        return self.rule.startup_s + rate.build_s + total / steps_per_s + evaluations * rate.eval_s

    def limit_minutes(self, run: PlannedRun) -> int | None:
        """The time limit the rates give `run` (margin included), or None when no rate covers it."""
        rate = self.run_rate(run)
        if rate is None:
            return None
        return math.ceil(self.rule.margin * self.seconds(run, rate, slowest=True) / 60)


    def mem_mb(self, run: PlannedRun) -> int | None:
        """The memory the measured peak gives `run` (margin included), or None when nothing measured it."""
        rate = self.run_rate(run)
        if rate is None or rate.peak_rss_mb is None:
            return None
        return math.ceil(self.file.memory.margin * rate.peak_rss_mb)


def load_floor(path: Path | None = None) -> dict[str, int]:
    """config/workflow.yaml `run_resources` (the workflow reads the same file as its configfile)."""
    path = Path(path) if path is not None else config_dir() / "workflow.yaml"

    class WorkflowFile(BaseModel):
        model_config = ConfigDict(extra="ignore")
        run_resources: RunFloor

    return load_yaml(path, WorkflowFile, "the workflow").run_resources.model_dump()


def load_job_settings(path: Path | None = None) -> tuple[int, float]:
    """config/workflow.yaml `seeds_per_job` and `pack_minutes`: how the workflow groups runs into jobs
    (coopbench/jobs.py)."""
    path = Path(path) if path is not None else config_dir() / "workflow.yaml"

    class WorkflowFile(BaseModel):
        model_config = ConfigDict(extra="ignore")
        seeds_per_job: int = Field(ge=1)
        pack_minutes: float = Field(ge=0)

    file = load_yaml(path, WorkflowFile, "the workflow")
    return file.seeds_per_job, file.pack_minutes


def job_resources(run: PlannedRun, table: RatesTable, floor: dict[str, int]) -> dict[str, int]:
    """runtime (minutes), mem_mb, cpus_per_task and gpus of `run`'s job, by the precedence in the module docstring."""
    asked = run.resources  # the config files' (larger of task and method), then the suite overrides'
    runtime = asked.get("runtime") or table.limit_minutes(run) or table.rule.unmeasured_minutes
    values = {**asked, "runtime": runtime}
    if "mem_mb" not in asked and table.mem_mb(run) is not None:
        values["mem_mb"] = table.mem_mb(run)
    return {key: max(floor[key], values.get(key, floor[key])) for key in RESOURCE_KEYS}


@dataclass
class Bill:
    jobs: int = 0
    core_hours: float = 0.0  # expected: typical rate x cpus
    core_hours_limit: float = 0.0  # at most: the jobs' time limits x cpus (what the scheduler reserves)
    gpu_hours: float = 0.0
    sources: dict[str, int] = field(default_factory=dict)  # jobs per rate source

    def add(self, resources: dict[str, int], hours: float, source: str) -> None:
        self.jobs += 1
        self.core_hours += hours * resources["cpus_per_task"]
        self.core_hours_limit += resources["runtime"] / 60 * resources["cpus_per_task"]
        self.gpu_hours += hours * resources["gpus"]
        self.sources[source] = self.sources.get(source, 0) + 1


@dataclass
class Estimate:
    suite: str
    papers: dict[str, Bill]  # by paper ("acpo") or "suite:<name>" for the suite's own runs
    total: Bill  # every job once (a run serving two papers counts in both rows)
    skipped: int  # pairs the plan leaves out (method not implemented, dependency missing here)
    shared: int  # jobs serving more than one row
    # The workflow's jobs once seeds_per_job and pack_minutes group the runs (coopbench/jobs.py): their number and
    # the core-hours their time limits reserve; the settings they were computed with.
    grouped_jobs: int = 0
    grouped_core_hours_limit: float = 0.0
    job_settings: tuple[int, float] = (1, 0.0)


def _rows(run: PlannedRun) -> list[str]:
    return list(dict.fromkeys(c if c.startswith("suite:") else c.split("/", 1)[0] for c in run.comparisons))


def missing_rates_error(suite: str, pairs: list[tuple[str, str, str]]) -> CoopbenchError:
    shown = ", ".join(f"{env} {algo}" + (f" ({device})" if device != "cpu" else "") for env, algo, device in pairs[:3])
    more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
    args = " ".join(f"{env}:{algo}" for env, algo, _ in pairs[:3])
    return CoopbenchError(f"no rate in config/rates.yaml for {len(pairs)} (task, method) pair"
                          f"{'s' if len(pairs) > 1 else ''} of suite {suite!r}: {shown}{more}",
                          f"measure them with `{MEASURE} --suite {suite} --pairs {args}` (or add an `assumed` entry "
                          "with its reason to config/rates.yaml)")


def estimate(suite: str, paper: str | None = None, table: RatesTable | None = None,
             floor: dict[str, int] | None = None, job_settings: tuple[int, float] | None = None) -> Estimate:
    """Jobs, core-hours and GPU-hours of `suite` (only `paper`'s experiments with `paper`), per paper and in total;
    the rows count one job per run, `grouped_jobs` the jobs the workflow makes of them (`job_settings`:
    seeds_per_job and pack_minutes, default config/workflow.yaml's)."""
    from coopbench.claims import PAPERS
    from coopbench.jobs import plan_jobs

    if paper is not None and paper not in PAPERS:
        raise CoopbenchError(f"unknown paper {paper!r}", f"choose one of: {', '.join(PAPERS)}")
    table = table if table is not None else RatesTable.load()
    floor = floor if floor is not None else load_floor()
    planned = plan(suite)
    runs = planned.runs
    if paper is not None:
        runs = [r for r in runs if paper in _rows(r)]
        if not runs:
            papers = sorted({row for r in planned.runs for row in _rows(r) if not row.startswith("suite:")})
            raise CoopbenchError(f"suite {suite!r} plans no run of paper {paper!r}",
                                 f"choose one of its papers: {', '.join(papers) or 'none (it has only its own runs)'}")
    missing = sorted({(r.config.env, r.config.algo, r.config.run["device"]) for r in runs
                      if table.run_rate(r) is None})
    if missing:
        raise missing_rates_error(suite, missing)
    papers: dict[str, Bill] = {}
    total, shared = Bill(), 0
    for run in runs:
        rate = table.run_rate(run)
        resources = job_resources(run, table, floor)
        hours = table.seconds(run, rate, slowest=False) / 3600
        rows = [row for row in _rows(run) if paper is None or row == paper]
        shared += len(_rows(run)) > 1
        for row in rows:
            papers.setdefault(row, Bill()).add(resources, hours, rate.source)
        total.add(resources, hours, rate.source)
    skipped = len(planned.skipped) if paper is None else sum(s.comparison.startswith(f"{paper}/")
                                                             for s in planned.skipped)
    job_settings = job_settings if job_settings is not None else load_job_settings()
    jobs = plan_jobs(runs, *job_settings, table, floor)
    limit = sum(job.resources["runtime"] / 60 * job.resources["cpus_per_task"] for job in jobs)
    return Estimate(suite, dict(sorted(papers.items())), total, skipped, shared, len(jobs), limit, job_settings)


def format_estimate(result: Estimate, table: RatesTable) -> str:
    width = max([len("total"), *map(len, result.papers)])
    header = f"{'paper':<{width}}  {'jobs':>6}  {'core-h':>10}  {'core-h limit':>12}  {'GPU-h':>8}"
    lines = [f"# coopbench estimate {result.suite}: from {table.path} (typical rate for core-h; the jobs' time "
             f"limits, {table.rule.margin:g}x the slowest rate, for core-h limit)", header]
    for name, bill in [*result.papers.items(), ("total", result.total)]:
        lines.append(f"{name:<{width}}  {bill.jobs:>6}  {bill.core_hours:>10,.1f}  {bill.core_hours_limit:>12,.1f}  "
                     f"{bill.gpu_hours:>8,.1f}")
    seeds_per_job, pack_minutes = result.job_settings
    if result.grouped_jobs != result.total.jobs:
        lines.append(f"as the workflow runs them (seeds_per_job {seeds_per_job}, pack_minutes {pack_minutes:g}, "
                     f"config/workflow.yaml): {result.grouped_jobs} jobs, core-h limit "
                     f"{result.grouped_core_hours_limit:,.1f}")
    sources = ", ".join(f"{n} {source}" for source, n in sorted(result.total.sources.items()))
    lines.append(f"rates: {sources} (jobs by where their rate comes from)")
    if result.shared:
        lines.append(f"{result.shared} jobs serve more than one paper: counted in each paper's row, once in the total")
    if result.skipped:
        lines.append(f"{result.skipped} pairs not planned (method not implemented, or its simulator missing here): "
                     "not counted")
    return "\n".join(lines)


