"""Seed batches (issue 18): one K-seed job against K single-seed jobs of coopbench itself, total env-steps/s.

For each task, MAPPO at the paper's own hyperparameters (as `coopbench run mappo TASK` resolves them: the config
file's per-task overrides with their sources), K seeds at a small budget:

- batch:  one process, `coopbench run mappo TASK --seeds 0-(K-1) --threads T`;
- solo:   K processes `coopbench run mappo TASK --seed k --threads T`, one after another (the same cores as the
          batch: the comparison is per core, as on a cluster where each job gets T cores).

Reported per task, min / median / max over repeats (the two sides alternate which goes first, so the load of the
shared machine hits both alike):
- `jobs`: K x budget env steps over the wall time of the whole processes (start-up, evaluations, writing: what a
  scheduler sees; small budgets weigh the start-up heavily);
- `training`: the same over the manifests' `wall_time_s` (from the first evaluation to the last; what a long run
  at the paper's budget approaches);
- the paired ratio batch / solo of each, per repeat.

    .venv/bin/python benchmarks/seed_batch.py [--tasks T ...] [--seeds 8] [--steps 10000] [--repeats 3]
                                              [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import single_thread_env, summary  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TASKS = ["gridworld/lan-checkers", "gridworld/as-coop-predation-8", "coordination/bn-cg-3"]


def job(task: str, seeds: str, steps: int, threads: int, results: Path) -> float:
    """Wall seconds of one `coopbench run` process (`seeds`: `--seed k` or `--seeds 0-7`)."""
    flag = "--seeds" if "-" in seeds or "," in seeds else "--seed"
    cmd = [sys.executable, "-m", "coopbench", "run", "mappo", task, flag, seeds, "--threads", str(threads),
           "--results-dir", str(results), "--set", f"run.total_env_steps={steps}",
           "--set", f"run.eval_interval={max(steps // 4, 1)}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=single_thread_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall


def manifests(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("runs/**/manifest.json"))]


def one_repeat(task: str, n_seeds: int, steps: int, threads: int, batch_first: bool) -> dict:
    out = {}
    sides = ["batch", "solo"] if batch_first else ["solo", "batch"]
    for side in sides:
        with tempfile.TemporaryDirectory() as tmp:
            results = Path(tmp)
            if side == "batch":
                wall = job(task, f"0-{n_seeds - 1}", steps, threads, results)
                inside = manifests(results)[0]["wall_time_s"]  # shared by the batch's seeds
            else:
                wall = sum(job(task, str(seed), steps, threads, results) for seed in range(n_seeds))
                inside = sum(m["wall_time_s"] for m in manifests(results))
            done = manifests(results)
            assert len(done) == n_seeds and all(m["status"] == "completed" for m in done)
            total = sum(m["env_steps"] for m in done)
            out[side] = {"jobs": total / wall, "training": total / inside, "wall_s": wall,
                         "threads": done[0]["torch_threads"], "seed_batch": done[0]["seed_batch"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10_000, help="env steps per seed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every job")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    report = {"seeds": args.seeds, "steps_per_seed": args.steps, "threads": args.threads, "repeats": args.repeats,
              "commit": commit, "tasks": {}}
    for task in args.tasks:
        runs = [one_repeat(task, args.seeds, args.steps, args.threads, batch_first=r % 2 == 0)
                for r in range(args.repeats)]
        entry = {}
        for measure in ("jobs", "training"):
            entry[measure] = {side: summary([r[side][measure] for r in runs]) for side in ("batch", "solo")}
            entry[measure]["ratio"] = summary([r["batch"][measure] / r["solo"][measure] for r in runs])
        entry["threads"] = runs[0]["batch"]["threads"]
        report["tasks"][task] = entry
        print(f"\n{task}: {args.seeds} seeds x {args.steps} env steps, {entry['threads']} torch thread(s)")
        print(f"{'total env-steps/s':26s} {'min':>9s} {'median':>9s} {'max':>9s}")
        for measure in ("jobs", "training"):
            for side in ("batch", "solo"):
                s = entry[measure][side]
                print(f"{measure + ' ' + side:26s} " + " ".join(f"{s[k]:9,.0f}" for k in ("min", "median", "max")))
            s = entry[measure]["ratio"]
            print(f"{measure + ' batch / solo':26s} " + " ".join(f"{s[k]:9.2f}" for k in ("min", "median", "max")))
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
