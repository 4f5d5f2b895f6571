"""CORA Fig. 9 (A.10): error and time of the sampled-coalition credit assignment (eq. 19) against the full one (eq. 8).

    python benchmarks/cora_fig9.py [--quick] [--json out.json]

A command-line wrapper of `leaderboard.analyses.cora_fig9`, the analysis `cora-fig9` that the DAG runs
(`python -m leaderboard analysis cora-fig9 --out FILE`); its docstring and `settings` say what is computed
(n = 7 agents, 20 trials (quick: 5), m = 5 ... 126 sampled coalitions, lam = cora.yaml's variance_weight and
lam = 0, one torch thread). Prints, per lam and m: the violation ratio of all coalition constraints (mean ± std
over trials), the objective gap in percent of J* (mean, max), the relaxation gap, the median milliseconds of
one single-sample solve and the milliseconds per sample of one batched solve. `--json` writes the analysis's
result (settings, values, details).
"""

from __future__ import annotations

import argparse

from leaderboard.analyses import cora_fig9


def print_table(result: dict) -> None:
    settings, values, details = result["settings"], result["values"], result["details"]
    print(f"{settings['agents']} agents, {settings['trials']} trials, {settings['data']} "
          f"(noise {settings['noise']:g}), seed {settings['seed']}, {settings['torch_threads']} torch thread(s)")
    for prefix, lam in (("", settings["lam"]), (settings["lam0_prefix"], 0.0)):
        print(f"\nlam = {lam:g} (J* mean {details[f'lam={lam:g}']['j_star_mean']:.4f})")
        print(f"{'m':>5} {'violation ratio':>17} {'objective gap %':>22} {'relaxation gap %':>17} "
              f"{'ms/solve (B=1)':>15} {'ms/sample (B=' + str(settings['trials']) + ')':>17}")
        column = {key: values[prefix + key] for key in ("violation_ratio", "violation_ratio.std", "objective_gap",
                                                          "objective_gap.max", "relaxation_gap", "time_s",
                                                          "time_s.batched_per_sample")}
        for i, m in enumerate(values["m"]):
            print(f"{m:>5} {column['violation_ratio'][i]:>9.3f} ± {column['violation_ratio.std'][i]:.3f} "
                  f"{column['objective_gap'][i]:>10.2f} (max {column['objective_gap.max'][i]:>6.2f}) "
                  f"{column['relaxation_gap'][i]:>17.2f} {1e3 * column['time_s'][i]:>15.2f} "
                  f"{1e3 * column['time_s.batched_per_sample'][i]:>17.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 trials instead of 20")
    parser.add_argument("--json", help="write the analysis's result here")
    args = parser.parse_args()
    result = cora_fig9(quick=args.quick)
    print_table(result)
    if args.json:
        from coopbench.base.io import write_json

        write_json(args.json, result)


if __name__ == "__main__":
    main()
