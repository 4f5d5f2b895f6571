"""Measure env-steps/s of a suite's runs, per task and method, into the rates table (config/rates.yaml).

`coopbench estimate SUITE` and the workflow's run jobs (workflow/rules/common.smk) turn these rates into the time
each run needs at its own budget (coopbench/estimate.py). A pair is measured as its run trains: the planned run's
resolved config (the paper's hyperparameters: copies, rollout length, epochs, batch sizes), one torch thread, the
driver's own build / train_iteration / evaluate. Per pair: build the env and the algorithm (timed), warm up until the
first update has happened (value-based methods only learn once their replay holds a batch), then time `--repeats`
chunks of at least `--chunk-seconds` of training each (min / median / max env-steps/s over the chunks), then one
evaluation (timed: the estimate adds one per `run.eval_interval`).

Which pairs: by default one per (task family, method class) of the suite's plan, on the family's task with the most
agents (the slowest task is the safe one for the tasks not measured; the estimate says which pairs it takes from a
measured neighbour); `--all-tasks` measures every planned (task, method); `--pairs ENV:ALGO ...` just those;
`--families` restricts either. Entries of pairs not measured in this call are kept in the output file.

    .venv/bin/python benchmarks/measure_rates.py --suite papers            # ~10 min on a 2-core VM
    .venv/bin/python benchmarks/measure_rates.py --pairs rware/tiny-2ag-hard:qmix --repeats 5
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread, as run jobs use (set before torch is imported).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402

from algorithms.registry import ALGORITHMS  # noqa: E402
from coopbench.base import provenance  # noqa: E402
from coopbench.config import PlannedRun, config_dir, parse_set, plan, resolve  # noqa: E402
from coopbench.run import build, evaluate, seed_everything  # noqa: E402
from environments.registry import make  # noqa: E402

HEADER = """\
# Measured env-steps/s per (task, method): written by benchmarks/measure_rates.py, read by coopbench/estimate.py
# (`coopbench estimate SUITE`, and the runtime the workflow asks Slurm for per run job). Edit `runtime` and
# `assumed` by hand; re-measure `rates` with the script (benchmarks/README.md says how and what was measured).
"""

DEFAULT_RUNTIME = {
    # The time limit of a run job is margin x (startup_s + build + budget / slowest rate + evaluations x
    # evaluation), in whole minutes. 1.5: the measured spread on a shared VM, checkpoint writes, a slower node.
    "margin": 1.5,
    "startup_s": 60,  # interpreter, torch and library imports, planning (what `time coopbench run --help` costs)
    "unmeasured_minutes": 60,  # a run no entry covers and no config's `resources: runtime` sizes (today's floor)
}
# A job's memory is margin x the peak resident memory measured (replay buffers are allocated when built).
DEFAULT_MEMORY = {"margin": 1.5}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def n_agents(env: str, cache: dict[str, int]) -> int:
    if env not in cache:
        handle = make(env, n_envs=1, seed=0)
        cache[env] = handle.spec.n_agents
        handle.close()
    return cache[env]


def choose_pairs(runs: list[PlannedRun], args) -> list[PlannedRun]:
    """One planned run per chosen (task, method): the seed-0 config of each pair (the seeds share one config)."""
    pairs: dict[tuple[str, str], PlannedRun] = {}
    for run in runs:
        if args.families and run.config.env_family not in args.families:
            continue
        pairs.setdefault((run.config.env, run.config.algo), run)
    if args.pairs:
        wanted = [tuple(p.split(":", 1)) for p in args.pairs]
        missing = [f"{e}:{a}" for e, a in wanted if (e, a) not in pairs]
        if missing:
            raise SystemExit(f"measure_rates: suite {args.suite!r} plans no run of {', '.join(missing)} "
                             "(coopbench plan SUITE lists its runs)")
        return [pairs[p] for p in wanted]
    if args.all_tasks:
        return list(pairs.values())
    cache: dict[str, int] = {}
    groups: dict[tuple[str, str], list[PlannedRun]] = {}
    for (_, algo), run in sorted(pairs.items()):
        groups.setdefault((run.config.env_family, ALGORITHMS.get(algo).target), []).append(run)
    # The task with most agents; among its methods of this class the shortest name (the base method, not a variant).
    return [max(group, key=lambda r: (n_agents(r.config.env, cache), -len(r.config.algo), r.config.algo))
            for group in groups.values()]


def with_sets(run: PlannedRun, items: list[str]) -> PlannedRun:
    """`run` with `items` (--set) resolved on top of its planned config."""
    if not items:
        return run
    config = resolve(run.config.algo, run.config.env, parse_set([*run.set_args, *items]))
    return dataclasses.replace(run, config=config, set_args=(*run.set_args, *items))


def cpu_s() -> float:
    """CPU seconds of this process and its living children (the environment workers of the process-pool adapters).

    A run job has its cores to itself; this machine is shared, so wall-clock rates here fall with the load while
    CPU-time rates do not (much): the estimate uses the CPU-time rate where there is one."""
    import psutil

    me = psutil.Process()
    times = [p.cpu_times() for p in [me, *me.children(recursive=True)]]
    return sum(t.user + t.system for t in times)


def rss_mb() -> float:
    """Resident memory of this process and its children (the process-pool adapters' environment workers), MB."""
    import psutil

    me = psutil.Process()
    return sum(p.memory_info().rss for p in [me, *me.children(recursive=True)]) / 2**20


def summary(values: list[float], digits: int) -> dict[str, float]:
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits),
            "max": round(max(values), digits)}


def measure(run: PlannedRun, args) -> dict:
    config = run.config
    torch.set_num_threads(1)
    device = torch.device("cpu")
    seed_everything(0)
    start = time.perf_counter()
    env, algorithm = build(config, 0, device)
    timestep = env.reset()
    build_s = time.perf_counter() - start
    memory = [rss_mb()]  # what the job holds: sampled after build, warm-up, each chunk and the evaluation
    # Warm-up: until an iteration has updated the networks (losses reported), at least one iteration.
    warm_start, warm_steps = time.perf_counter(), 0
    while True:
        result = algorithm.train_iteration(env, timestep)
        timestep, warm_steps = result.timestep, warm_steps + result.env_steps
        if result.losses or time.perf_counter() - warm_start > args.warmup_cap_seconds:
            break
    learned = bool(result.losses)
    memory.append(rss_mb())
    rates, cpu_rates, iterations = [], [], 0
    for _ in range(args.repeats):
        steps, chunk_start, chunk_cpu = 0, time.perf_counter(), cpu_s()
        while True:  # one chunk: whole iterations, at least --chunk-seconds
            result = algorithm.train_iteration(env, timestep)
            timestep, steps, iterations = result.timestep, steps + result.env_steps, iterations + 1
            if time.perf_counter() - chunk_start >= args.chunk_seconds:
                break
        rates.append(steps / (time.perf_counter() - chunk_start))
        cpu_rates.append(steps / max(cpu_s() - chunk_cpu, 1e-9))
        memory.append(rss_mb())
    eval_start = time.perf_counter()
    evaluate(algorithm, config, 0, device)
    eval_s = time.perf_counter() - eval_start
    memory.append(rss_mb())
    env.close()
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    code = provenance.code_version()
    entry = {"env": config.env, "algo": config.algo, "device": "cpu",
             "env_steps_per_s": summary(rates, 1), "env_steps_per_cpu_s": summary(cpu_rates, 1),
             "eval_s": round(eval_s, 3), "build_s": round(build_s, 3),
             "peak_rss_mb": round(max(memory)),
             "chunks": args.repeats, "iterations": iterations, "warmup_env_steps": warm_steps,
             "config_hash": config.hash,
             "measured": {"date": today, "host": provenance.host(), "cpu": cpu_model(), "torch_threads": 1,
                          "commit": str(code.get("commit", "unknown"))[:12], "dirty": bool(code.get("dirty"))}}
    if args.set:  # the rate holds (a smaller buffer samples as fast); the memory would not be the paper config's
        entry["measured_with"] = list(args.set)
        del entry["peak_rss_mb"]
    if not learned:
        entry["note"] = f"no update within the {args.warmup_cap_seconds:g} s warm-up: collection only"
    return entry


def load_existing(path: Path) -> dict:
    if not path.exists():
        return {"runtime": dict(DEFAULT_RUNTIME), "memory": dict(DEFAULT_MEMORY), "assumed": [], "rates": []}
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("runtime", dict(DEFAULT_RUNTIME))
    data.setdefault("memory", dict(DEFAULT_MEMORY))
    data.setdefault("assumed", [])
    data.setdefault("rates", [])
    return data


def write(path: Path, data: dict) -> None:
    data["rates"] = sorted(data["rates"], key=lambda e: (e["env"], e["algo"], e.get("device", "cpu")))
    # Leaf mappings and lists on one line ({min: .., median: .., max: ..}): one entry is a few lines.
    body = yaml.safe_dump({k: data[k] for k in ("runtime", "memory", "assumed", "rates")}, sort_keys=False, width=118,
                          default_flow_style=None)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(HEADER + body)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="papers", help="the suite whose planned runs are measured (papers)")
    parser.add_argument("--families", nargs="*", default=[], help="only these task families (e.g. vmas rware)")
    parser.add_argument("--pairs", nargs="*", default=[], metavar="ENV:ALGO", help="only these planned pairs")
    parser.add_argument("--all-tasks", action="store_true", help="every planned (task, method), not one per class")
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks per pair (min/median/max over them)")
    parser.add_argument("--chunk-seconds", type=float, default=1.5, help="least training time per chunk")
    parser.add_argument("--warmup-cap-seconds", type=float, default=60.0,
                        help="stop warming up after this long even if no update happened yet")
    parser.add_argument("--out", type=Path, default=config_dir() / "rates.yaml")
    parser.add_argument("--dry-run", action="store_true", help="list the pairs that would be measured")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="measure with this value on top of the planned config (e.g. a smaller replay buffer "
                             "where the paper's does not fit this machine's memory); recorded in the entry")
    args = parser.parse_args(argv)
    runs = [with_sets(run, args.set) for run in choose_pairs(plan(args.suite).runs, args)]
    print(f"{len(runs)} pairs of suite {args.suite!r}", file=sys.stderr)
    if args.dry_run:
        for run in runs:
            print(f"{run.config.env}:{run.config.algo}")
        return 0
    data = load_existing(args.out)
    failed = []
    for index, run in enumerate(runs, 1):
        label = f"{run.config.env}:{run.config.algo}"
        started = time.perf_counter()
        try:
            entry = measure(run, args)
        except Exception as err:  # one broken pair must not lose the others' measurements
            failed.append(label)
            print(f"[{index}/{len(runs)}] {label}: FAILED {type(err).__name__}: {err}", file=sys.stderr)
            traceback.print_exc(limit=3)
            continue
        data["rates"] = [e for e in data["rates"] if (e["env"], e["algo"], e.get("device", "cpu")) !=
                         (entry["env"], entry["algo"], "cpu")] + [entry]
        write(args.out, data)  # after every pair: an interrupted measurement keeps what it has
        rate = entry["env_steps_per_s"]
        cpu = entry["env_steps_per_cpu_s"]
        print(f"[{index}/{len(runs)}] {label}: {rate['min']:,.0f} / {rate['median']:,.0f} / {rate['max']:,.0f} "
              f"env-steps/s, {cpu['min']:,.0f} / {cpu['median']:,.0f} / {cpu['max']:,.0f} per CPU s (min/median/max "
              f"of {args.repeats}), eval {entry['eval_s']} s, build {entry['build_s']} s, peak "
              f"{entry.get('peak_rss_mb', '?')} MB, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if failed:
        print(f"not measured: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
