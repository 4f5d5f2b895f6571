"""AC-TD3's update time against HATD3's as the team grows: MaMuJoCo HalfCheetah 2x3 against 6x1 (issue 15).

    .venv/bin/python benchmarks/ac_td3_update_time.py [--envs mamujoco/halfcheetah-2x3 mamujoco/halfcheetah-6x1]
                                                     [--updates 20] [--repeats 3] [--threads 1] [--json out.json]

What is timed: gradient steps alone (`sample` from the replay + the method's `update`), the part that differs
between the two (collection differs only by AC-TD3's N-pass acting chain). Each method runs with its resolved
config for the task (`coopbench config ac_td3 <task>`: ACPO Table 3's MLP [128, 128, 128], batch 1000, TD3's
policy_freq 2, the task's n-step), so an even `--updates` holds as many actor steps as critic steps / 2. The
replay is filled with 2000 random transitions of the task's shapes (the update's cost does not depend on the
values); the task is built once, with one copy, for its spec. HATD3 updates its N actors one after another (N
critic passes of the batch); AC-TD3 runs its N critics Q^(i) as N rows of one batched critic, and the target
actors' chain (N passes) for the next actions. Per repeat, the two methods alternate order; reported: ms per
update, min / median / max over repeats, and the per-repeat ratio AC-TD3 / HATD3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ALGOS = ("hatd3", "ac_td3")


def build(algo: str, env: str, seed: int):
    from algorithms.registry import ALGORITHMS
    from coopbench.config import resolve
    from coopbench.run import seed_everything
    from environments.registry import make

    config = resolve(algo, env)
    seed_everything(seed)
    task = make(env, n_envs=1, seed=seed, device="cpu", **config.env_params)
    spec = task.spec
    task.close()
    cls = ALGORITHMS.get(algo).load()
    hparams = cls.Config(**config.algo_hparams)
    algorithm = cls(spec, hparams, torch.device("cpu"))
    replay = algorithm.learner.replay
    rows = -(-2000 // hparams.n_envs)
    for _ in range(rows):  # random values; 1% of the steps end an episode
        replay.insert({name: torch.rand(t.shape[1:]) < 0.01 if t.dtype == torch.bool else torch.randn(t.shape[1:])
                       for name, t in replay.data.items()})
    return algorithm, hparams, spec


def time_updates(algorithm, updates: int) -> float:
    start = time.perf_counter()
    for _ in range(updates):
        algorithm.update(algorithm.learner.sample())
        algorithm.learner.updates += 1
    return (time.perf_counter() - start) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["mamujoco/halfcheetah-2x3", "mamujoco/halfcheetah-6x1"])
    parser.add_argument("--updates", type=int, default=20, help="timed gradient steps per repeat (even)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "threads": torch.get_num_threads(),
                     "updates": args.updates, "repeats": args.repeats, "envs": {}}
    for env in args.envs:
        built = {algo: build(algo, env, 0) for algo in ALGOS}
        for algo in ALGOS:
            time_updates(built[algo][0], 2)  # warm-up
        ms = {algo: [] for algo in ALGOS}
        for r in range(args.repeats):
            for algo in ALGOS if r % 2 == 0 else ALGOS[::-1]:
                ms[algo].append(1000 * time_updates(built[algo][0], args.updates))
        ratios = [a / h for a, h in zip(ms["ac_td3"], ms["hatd3"], strict=True)]
        spec, hp = built["hatd3"][2], built["hatd3"][1]
        results["envs"][env] = {"n_agents": spec.n_agents, "batch_size": hp.batch_size,
                                "hidden_sizes": hp.hidden_sizes, "n_step": {a: built[a][1].n_step for a in ALGOS},
                                "ms_per_update": {a: {"min": min(v), "median": statistics.median(v), "max": max(v)}
                                                  for a, v in ms.items()},
                                "ratio_ac_td3_over_hatd3": {"min": min(ratios), "median": statistics.median(ratios),
                                                            "max": max(ratios)}}
        line = results["envs"][env]
        print(f"{env:26s} N={spec.n_agents}  ms/update min/median/max: " + "  ".join(
            f"{a} {line['ms_per_update'][a]['min']:.1f}/{line['ms_per_update'][a]['median']:.1f}/"
            f"{line['ms_per_update'][a]['max']:.1f}" for a in ALGOS)
            + f"  AC-TD3/HATD3 {min(ratios):.2f}/{statistics.median(ratios):.2f}/{max(ratios):.2f}", flush=True)
    results["loadavg"] = {"before": load_before, "after": os.getloadavg()}
    print(f"torch threads {results['threads']}; load average before {load_before[0]:.2f}, after "
          f"{results['loadavg']['after'][0]:.2f} ({os.cpu_count()} CPUs)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
