"""`coopbench run | run-job | list | plan | estimate | config | render`: the command line, and the only place that turns
errors into exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from coopbench.base.errors import CoopbenchError


def _check_run_options(args: argparse.Namespace):
    from coopbench.base.io import check_results_dir

    if args.threads < 1:
        raise CoopbenchError(f"--threads {args.threads}: needs at least 1", "give --threads a positive integer")
    if not args.checkpoint_interval > 0:
        raise CoopbenchError(f"--checkpoint-interval {args.checkpoint_interval}: needs a positive number of seconds",
                             "give --checkpoint-interval SECONDS > 0")
    return check_results_dir(args.results_dir)


def _run_seeds(algo: str, env: str, seeds: list[int], set_items: list[str], expect_hash: str | None,
               results_dir, args: argparse.Namespace) -> list:
    """`coopbench run`'s work for one (task, method, config) and its seeds; also each item of `run-job`."""
    from coopbench.base.errors import RunLockedError
    from coopbench.base.io import run_lock
    from coopbench.config import check_compatible, parse_set, resolve
    from coopbench.run import execute_seeds, record_failure

    # every check before any file is written
    config = resolve(algo, env, parse_set(set_items))
    check_compatible(config)  # before anything is built: the algorithm's Capabilities against the task
    if expect_hash and expect_hash != config.hash:
        raise CoopbenchError(f"resolved config hash {config.hash} differs from the planned {expect_hash}",
                             "the config files changed after the workflow was planned; re-run snakemake")
    # One process per run directory: a second one is told who holds it and touches nothing.
    with contextlib.ExitStack() as locks:
        for seed in seeds:
            locks.enter_context(run_lock(config.run_dir(results_dir, seed)))
        try:
            return execute_seeds(config, seeds, results_dir, torch_threads=args.threads,
                                 checkpoint_interval_s=args.checkpoint_interval)
        except Exception as error:
            # a seed batch fails as one: each unfinished seed counts the attempt (a finished one keeps its result)
            recorded = [record_failure(config, seed, results_dir, error, args.record_failure_after)
                        for seed in seeds if args.record_failure_after and not isinstance(error, RunLockedError)
                        and not (config.run_dir(results_dir, seed) / "manifest.json").exists()]
            if recorded and all(recorded):
                print(f"coopbench: run recorded as not completed: {' '.join(str(error).split())}", file=sys.stderr)
                return [config.run_dir(results_dir, seed) for seed in seeds]
            raise


def _cmd_run(args: argparse.Namespace) -> None:
    from coopbench.config import check_seed

    seeds = [check_seed(args.seed)] if args.seeds is None else parse_seeds(args.seeds)
    results_dir = _check_run_options(args)
    run_dirs = _run_seeds(args.algo, args.env, seeds, args.set, args.expect_hash, results_dir, args)
    print("\n".join(map(str, run_dirs)))


def _cmd_run_job(args: argparse.Namespace) -> None:
    """Every item of a job file in turn (coopbench/jobs.py). An item that fails does not stop the others: the job
    fails at the end, naming them, and a retry skips what finished (each run resumes or is complete)."""
    from coopbench.config import check_seed
    from coopbench.jobs import read_job_spec

    items = read_job_spec(args.job_file)
    for item in items:
        for seed in item.seeds:
            check_seed(seed, f"job file {args.job_file}")
    results_dir = _check_run_options(args)
    failed = []
    for item in items:
        try:
            run_dirs = _run_seeds(item.algo, item.env, list(item.seeds), list(item.set_args), item.hash, results_dir,
                                  args)
            print("\n".join(map(str, run_dirs)), flush=True)
        except Exception as error:  # noqa: BLE001 - reported per item below, the job fails at the end
            what = f"{item.algo} {item.env} seeds {','.join(map(str, item.seeds))}"
            print(f"coopbench: {what} failed: {' '.join(str(error).split()) or type(error).__name__}",
                  file=sys.stderr, flush=True)
            if not isinstance(error, CoopbenchError):
                import traceback

                traceback.print_exc()
            failed.append(what)
    if failed:
        raise CoopbenchError(f"{len(failed)} of the {len(items)} items of job {args.job_file} failed: "
                             f"{'; '.join(failed)}", "see the lines above; a retry resumes them and skips the rest")


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0-4`, `--seeds 0,2,5` or `--seeds 0-2,7`: the seeds of one batch, in order."""
    from coopbench.config import check_seed

    seeds = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise CoopbenchError(f"--seeds {text!r}: {part!r} is not a seed or a range",
                                 "give seeds as 0-4, 0,2,5 or 0-2,7") from None
        seeds += [check_seed(seed, "--seeds") for seed in range(first, last + 1)]
    if not seeds or len(set(seeds)) != len(seeds):
        raise CoopbenchError(f"--seeds {text!r}: {'no seed' if not seeds else 'a seed appears twice'}",
                             "give each seed once, e.g. 0-4")
    return seeds


def _cmd_list(args: argparse.Namespace) -> None:
    from algorithms.registry import ALGORITHMS
    from environments.registry import ENVIRONMENTS

    for title, registry in (("environments", ENVIRONMENTS), ("algorithms", ALGORITHMS)):
        if args.kind in (None, title):
            print(f"# {title}")
            for entry in registry.entries():
                print(f"{entry.name}\t{entry.family}\t{entry.summary}")


def _cmd_plan(args: argparse.Namespace) -> None:
    from coopbench.base.io import check_results_dir
    from coopbench.config import plan_suite

    results_dir = check_results_dir(args.results_dir)
    for run in plan_suite(args.suite):
        print(run.config.run_dir(results_dir, run.seed))


def _cmd_estimate(args: argparse.Namespace) -> None:
    from coopbench.estimate import RatesTable, estimate, format_estimate

    table = RatesTable.load()
    print(format_estimate(estimate(args.suite, paper=args.paper, table=table), table))


def _cmd_config(args: argparse.Namespace) -> None:
    import json

    from coopbench.config import explain

    config, which = explain(args.algo, args.env, suite=args.suite, experiment=args.experiment, set_items=args.set)
    sections = {"env.params": config.env_params, "algo.hparams": config.algo_hparams, "run": config.run}
    if args.json:
        print(json.dumps({"algo": config.algo, "env": config.env, "hash": config.hash, "which": which,
                          "config": config.to_dict(), "origins": config.origins}))
        return
    print(f"# {config.algo} on {config.env}: {which}")
    print(f"hash: {config.hash}")
    for title, values in sections.items():
        section = title.split(".")[0]
        print(f"{title}:")
        width = max((len(f"{k}: {json.dumps(v)}") for k, v in values.items()), default=0)
        for key, value in values.items():
            print(f"  {f'{key}: {json.dumps(value)}':<{width}}  # {config.origins[f'{section}.{key}']}")


def _cmd_render(args: argparse.Namespace) -> None:
    import json

    from coopbench.render import render_run

    report = render_run(args.run_dir, episodes=args.episodes, stochastic=args.stochastic, out=args.out,
                        fps=args.fps, max_frames=args.max_frames, seed=args.seed, device=args.device)
    print(json.dumps(report))


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("COOPBENCH_TORCH_THREADS", "1")),
                        help="torch threads (default 1, or $COOPBENCH_TORCH_THREADS)")
    parser.add_argument("--checkpoint-interval", type=float, default=300.0, metavar="SECONDS",
                        help="checkpoint at least this often, besides after every evaluation")
    parser.add_argument("--record-failure-after", type=int, default=0, metavar="N",
                        help="(workflow) after N failed attempts, or at once for a missing dependency, write the "
                             "failure as the run's result (status and reason) and exit 0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coopbench", description="Cooperative MARL reproducibility harness")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate one algorithm on one environment with one seed (or several, "
                         "--seeds: one process, a seed batch where the method can)")
    run.add_argument("algo")
    run.add_argument("env")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int)
    which.add_argument("--seeds", metavar="LIST", help="several seeds in one process, as one seed batch where the "
                       "method can (docs/architecture.md): 0-4, 0,2,5 or 0-2,7")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a config value (sections: env, algo, run); repeatable")
    run.add_argument("--expect-hash", help="fail unless the resolved config has this hash (used by the workflow)")
    _run_options(run)
    run.set_defaults(func=_cmd_run)

    job = sub.add_parser(
        "run-job", help="(workflow) train every run of a job file, one after another in one process",
        description="Run each item of JOB_FILE (results/jobs/<job>.json, written by the workflow from "
                    "seeds_per_job and pack_minutes: coopbench/jobs.py) as `coopbench run ALGO ENV --seeds ... --set "
                    "... --expect-hash ...` would; each run writes its own directory. An item that fails does not "
                    "stop the rest; the job then exits non-zero naming it.")
    job.add_argument("job_file", metavar="JOB_FILE")
    _run_options(job)
    job.set_defaults(func=_cmd_run_job)

    lst = sub.add_parser("list", help="print the registered environments and algorithms, with their family")
    lst.add_argument("kind", nargs="?", choices=["environments", "algorithms"])
    lst.set_defaults(func=_cmd_list)

    plan = sub.add_parser("plan", help="print the run directories a suite consists of")
    plan.add_argument("suite")
    plan.add_argument("--results-dir", default="results")
    plan.set_defaults(func=_cmd_plan)

    est = sub.add_parser(
        "estimate", help="print a suite's jobs, core-hours and GPU-hours per paper and in total, before it runs",
        description="Plan SUITE as the workflow does and price every run job from the measured env-steps/s in "
                    "config/rates.yaml (benchmarks/measure_rates.py): core-h at the typical rate, core-h limit at the "
                    "jobs' time limits (what the scheduler reserves), GPU-h. A pair with no rate is an error that "
                    "says how to measure it.")
    est.add_argument("suite")
    est.add_argument("--paper", help="only this paper's experiments (acpo, as, bn, cora, lan)")
    est.set_defaults(func=_cmd_estimate)

    cfg = sub.add_parser(
        "config", help="print a run's resolved config with the origin of every value, and its hash",
        description="Resolve ALGO on ENV as the plan does (with --suite: as that suite plans it; with --experiment "
                    "PAPER/ID: in that experiment of claims/<paper>.yaml, or in that comparison of the suite) and "
                    "print every env parameter, hyperparameter and run value with where it came from: class default, "
                    "config/algorithms/<algo>.yaml (and the file `inherits:` took it from), an override pattern and "
                    "its source, the paper's settings, the experiment's budget, the suite's overrides, the command "
                    "line. The hash is the one `coopbench plan` and the workflow use for that run.")
    cfg.add_argument("algo")
    cfg.add_argument("env")
    cfg.add_argument("--suite", help="as this suite plans the pair")
    cfg.add_argument("--experiment", metavar="PAPER/ID",
                     help="in this experiment (or suite:NAME, the suite's own runs)")
    cfg.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a config value on top (sections: env, algo, run); repeatable")
    cfg.add_argument("--json", action="store_true", help="one JSON line: config, hash, origins")
    cfg.set_defaults(func=_cmd_config)

    render = sub.add_parser(
        "render", help="replay a completed run's trained policy: per-episode returns, optionally an animation",
        description="Rebuild a completed run's environment and algorithm from RUN_DIR/manifest.json, load "
                    "RUN_DIR/model.pt and play --episodes episodes as the run's evaluation does (greedy; environment "
                    "seed = the run's seed + 1000003): with --episodes equal to the run's run.eval_episodes the "
                    "returns are those of its final evaluation. Prints one JSON line (returns, their mean and std). "
                    "--out FILE.gif (or .webp) records the first episode (grid worlds, particle tasks, MPE, VMAS, "
                    "MaMuJoCo with EGL; other tasks say they cannot render).")
    render.add_argument("run_dir", metavar="RUN_DIR", help="results/runs/<env>/<algo>/<hash>/seed-<n>")
    render.add_argument("--episodes", type=int, default=4, help="episodes to play, one per copy (default 4)")
    render.add_argument("--stochastic", action="store_true",
                        help="sample actions from the policy (seeded with --seed) instead of taking the greedy ones")
    render.add_argument("--seed", type=int, help="seed of the episodes (default: the run's own seed)")
    render.add_argument("--out", metavar="FILE.gif", help="write an animation of the first episode (.gif or .webp)")
    render.add_argument("--fps", type=float, default=10.0, help="animation frames per second (default 10)")
    render.add_argument("--max-frames", type=int, default=500, help="record at most this many steps (default 500)")
    render.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="torch device (default cpu)")
    render.set_defaults(func=_cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CoopbenchError as err:
        print(f"coopbench: error: {' '.join(str(err).split())}", file=sys.stderr)  # always one line
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
