"""Training time of HAPPO, HATRPO and ACPO relative to MAPPO as the team grows (ACPO Fig. 5 / App. J).

    python benchmarks/runtime_vs_agents.py [--agents 2 4 8 12] [--algos ...] [--repeats 5] [--json out.json]

On RWARE `<map>-<N>ag-hard` with each algorithm's papers-suite hyperparameters (`resolve(algo, env)`),
each repeat runs one training iteration per algorithm, timing its collection and its `update`
separately, the algorithms one after another inside the repeat so they share the machine's load.
Reported per N: seconds (min / median / max over repeats) and ratios to MAPPO measured in the same
repeat, for the update alone and for the whole iteration (collection + update: ACPO's Fig. 5 claim is
about training time, and ACPO's belief chain costs at collection). One torch thread (`--threads`); the
environment copies step in this process (`n_workers=0`), so nothing else competes for the cores.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from algorithms.registry import ALGORITHMS
from coopbench.config import resolve
from coopbench.run import seed_everything
from environments.registry import ENVIRONMENTS

ALGOS = ("mappo", "happo", "hatrpo", "acpo")


def build(algo: str, env_name: str, seed: int):
    config = resolve(algo, env_name)
    cls = ALGORITHMS.get(algo).load()
    hparams = cls.Config(**config.algo_hparams)
    env = ENVIRONMENTS.get(env_name).load()(n_envs=hparams.n_envs, seed=seed, n_workers=0, **config.env_params)
    return cls(env.spec, hparams, torch.device("cpu")), env


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[2, 4, 8, 12])
    parser.add_argument("--map", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), help="MAPPO is always included (the reference)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    algos = ["mappo", *[a for a in args.algos if a != "mappo"]]
    results = {"threads": torch.get_num_threads(), "map": args.map, "repeats": args.repeats, "tasks": {}}
    print(f"torch threads: {torch.get_num_threads()}; seconds and ratios to MAPPO in the same repeat "
          "(min/median/max)")
    for n in args.agents:
        env_name = f"rware/{args.map}-{n}ag-hard"
        seed_everything(0)
        learners = {algo: build(algo, env_name, seed=0) for algo in algos}
        timesteps = {algo: env.reset() for algo, (_, env) in learners.items()}
        update_s = {algo: [] for algo in algos}
        collect_s = {algo: [] for algo in algos}
        for repeat in range(args.repeats + 1):  # the first repeat warms up and is not counted
            for algo in algos:
                agent, env = learners[algo]
                start = time.perf_counter()
                storage, timesteps[algo], _ = agent.collect(env, timesteps[algo])
                collected = time.perf_counter()
                agent.update(storage)
                done = time.perf_counter()
                if repeat:
                    collect_s[algo].append(collected - start)
                    update_s[algo].append(done - collected)
        for _, env in learners.values():
            env.close()
        task = {"steps_per_iteration": learners["mappo"][0].steps_per_iteration}
        total_s = {algo: [c + u for c, u in zip(collect_s[algo], update_s[algo], strict=True)] for algo in algos}
        for algo in algos:
            update_ratio = [u / m for u, m in zip(update_s[algo], update_s["mappo"], strict=True)]
            total_ratio = [t / m for t, m in zip(total_s[algo], total_s["mappo"], strict=True)]
            task[algo] = {"update_s": summary(update_s[algo]), "collect_s": summary(collect_s[algo]),
                          "total_s": summary(total_s[algo]), "update_ratio_to_mappo": summary(update_ratio),
                          "total_ratio_to_mappo": summary(total_ratio)}
            c, u, r, t = (task[algo][k] for k in ("collect_s", "update_s", "update_ratio_to_mappo",
                                                   "total_ratio_to_mappo"))
            print(f"{env_name:24s} {algo:7s} collect {c['median']:.3f} s  update {u['median']:.3f} s  "
                  f"update ratio {r['min']:.2f}/{r['median']:.2f}/{r['max']:.2f}  "
                  f"total ratio {t['min']:.2f}/{t['median']:.2f}/{t['max']:.2f}", flush=True)
        results["tasks"][env_name] = task
    if args.json:
        from coopbench.io import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
