"""Training time of HAPPO, HATRPO and ACPO relative to MAPPO as the team grows (ACPO Fig. 5 / App. J).

    python benchmarks/runtime_vs_agents.py [--agents 2 4 8 12] [--map tiny] [--repeats 5] [--quick] [--json out.json]

A command-line wrapper of `leaderboard.analyses.acpo_fig5`, the analysis `acpo-fig5` that the DAG runs
(`python -m leaderboard analysis acpo-fig5 --out FILE`); its docstring and `settings` say what is measured
(RWARE `<map>-<N>ag-hard`, papers-suite hyperparameters, one warm-up repeat, then each repeat times one training
iteration of every algorithm, one after another, on one torch thread with in-process environments). Prints,
per N and algorithm: median seconds of collection and of update, and the ratio to MAPPO in the same repeat
(min/median/max over repeats) of the update alone and of the whole iteration. `--json` writes the analysis's
result (settings, values, details).
"""

from __future__ import annotations

import argparse
import statistics

from leaderboard.analyses import FIG5_AGENTS, acpo_fig5


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f}"


def print_table(result: dict) -> None:
    settings = result["settings"]
    print(f"{settings['torch_threads']} torch thread(s), {settings['repeats']} repeat(s) after "
          f"{settings['warmup_repeats']} warm-up; seconds (median) and ratios to MAPPO in the same repeat "
          "(min/median/max)")
    for env_name in settings["envs"]:
        timed = result["details"][env_name]
        for algo in settings["algos"]:
            line = (f"{env_name:24s} {algo:7s} collect {statistics.median(timed['collect_s'][algo]):.3f} s  "
                    f"update {statistics.median(timed['update_s'][algo]):.3f} s")
            if algo != settings["reference"]:
                ratios = {key: [a / r for a, r in zip(timed[key][algo], timed[key][settings["reference"]],
                                                       strict=True)] for key in ("update_s", "total_s")}
                line += f"  update ratio {spread(ratios['update_s'])}  total ratio {spread(ratios['total_s'])}"
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=list(FIG5_AGENTS))
    parser.add_argument("--map", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--repeats", type=int, help="timed repeats (default 5, with --quick 1)")
    parser.add_argument("--quick", action="store_true", help="one repeat unless --repeats says otherwise")
    parser.add_argument("--json", help="write the analysis's result here")
    args = parser.parse_args()
    result = acpo_fig5(args.quick, agents=args.agents, repeats=args.repeats, rware_map=args.map)
    print_table(result)
    if args.json:
        from coopbench.base.io import write_json

        write_json(args.json, result)


if __name__ == "__main__":
    main()
