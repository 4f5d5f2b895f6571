"""CORA Fig. 9 (A.10): error and time of the sampled-coalition credit assignment (eq. 19) against the full one (eq. 8).

    python benchmarks/cora_fig9.py [--agents 7] [--trials 20] [--m 5 10 20 40 60 80 100 126] [--lams 1 0]
                                   [--noise 0.5] [--threads 1] [--seed 0] [--json out.json]

Each trial draws one sample: A_N ~ N(0, 1) and, for each of the 2^n - 2 proper coalitions (126 for n = 7),
A_C = |C| / n * A_N + N(0, noise^2) (the paper only says "randomly generated"). For each m, every trial draws
m distinct coalitions uniformly (sample_coalitions) and solves eq. 19 on them; the full problem (eq. 8, all
coalitions) is solved once per trial. Reported, over the trials (mean, and max where it says so):

  violation ratio  fraction of ALL 2^n - 2 coalition constraints sum_{i in C} A_i >= A_C - eps that the sampled
                   solution (its credits A^m and its own eps^m) violates by more than 1e-9;
  objective gap    100 * (J(A^m) - J*) / J*, where J(A) = max(0, max_C (A_C - sum_{i in C} A_i))
                   + lam * sum_i (A_i - A_N / n)^2 is the FULL problem's objective at the credits A (with the
                   smallest eps that makes A feasible for all coalitions) and J* = J(A^full) its optimum (>= 0);
  relaxation gap   100 * (J_m(A^m) - J*) / J*: the sampled problem's own optimum against the full one (<= 0);
  time             mean wall time of one solve_core_allocation call for one sample (B = 1), and per sample
                   when the trials are solved as one batch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from algorithms.core_qp import all_proper_coalitions, sample_coalitions, solve_core_allocation


def full_objective(credits: torch.Tensor, a_c: torch.Tensor, a_n: torch.Tensor, members: torch.Tensor,
                   lam: float) -> torch.Tensor:
    """J(A) over all coalitions, per sample: the smallest feasible eps plus the variance term."""
    n = credits.shape[-1]
    eps = (a_c - credits @ members.double().T).amax(-1).clamp(min=0)
    return eps + lam * ((credits - a_n[:, None] / n) ** 2).sum(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=7)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--m", type=int, nargs="+", default=[5, 10, 20, 40, 60, 80, 100, 126])
    parser.add_argument("--lams", type=float, nargs="+", default=[1.0, 0.0])
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, trials = args.agents, args.trials
    g = torch.Generator().manual_seed(args.seed)
    members = all_proper_coalitions(n)
    total = members.shape[0]
    a_n = torch.randn(trials, generator=g, dtype=torch.float64)
    a_c = members.sum(-1) / n * a_n[:, None] + args.noise * torch.randn(trials, total, generator=g,
                                                                        dtype=torch.float64)
    masks = (members.long() * 2 ** torch.arange(n)).sum(-1)  # bitmask of row j is j + 1
    results = {"threads": torch.get_num_threads(), "agents": n, "trials": trials, "noise": args.noise, "lams": {}}
    print(f"torch threads: {torch.get_num_threads()}; n = {n} ({total} proper coalitions), {trials} trials, "
          f"A_C = |C|/n A_N + N(0, {args.noise:g}^2), A_N ~ N(0, 1)")
    for lam in args.lams:
        full = solve_core_allocation(a_c, a_n, members, lam)
        j_star = full_objective(full.credits, a_c, a_n, members, lam)
        print(f"\nlam = {lam:g} (J* mean {j_star.mean():.4f})")
        print(f"{'m':>5} {'violation ratio':>17} {'objective gap %':>22} {'relaxation gap %':>17} "
              f"{'ms/solve (B=1)':>15} {'ms/sample (B=' + str(trials) + ')':>17}")
        rows = []
        for m in args.m:
            m = min(m, total)
            sampled = sample_coalitions(n, m, trials, generator=g)
            rows_idx = (sampled.long() * 2 ** torch.arange(n)).sum(-1) - 1  # row of each sampled coalition
            assert torch.equal(masks[rows_idx], rows_idx + 1)
            sub_c = torch.gather(a_c, 1, rows_idx)
            single_s = []
            for t in range(trials):
                start = time.perf_counter()
                solve_core_allocation(sub_c[t:t + 1], a_n[t:t + 1], sampled[t:t + 1], lam)
                single_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            out = solve_core_allocation(sub_c, a_n, sampled, lam)
            batch_s = (time.perf_counter() - start) / trials
            lhs = out.credits @ members.double().T  # [trials, total]
            violated = (a_c - out.epsilon[:, None] - lhs > 1e-9).double().mean(-1)
            gap = 100 * (full_objective(out.credits, a_c, a_n, members, lam) - j_star) / j_star
            own = out.epsilon + lam * ((out.credits - a_n[:, None] / n) ** 2).sum(-1)
            relax = 100 * (own - j_star) / j_star
            row = {"m": m, "violation_ratio_mean": violated.mean().item(), "violation_ratio_std": violated.std().item(),
                   "objective_gap_pct_mean": gap.mean().item(), "objective_gap_pct_max": gap.max().item(),
                   "relaxation_gap_pct_mean": relax.mean().item(), "ms_per_solve_b1": 1e3 * statistics.mean(single_s),
                   "ms_per_sample_batched": 1e3 * batch_s}
            rows.append(row)
            print(f"{m:>5} {row['violation_ratio_mean']:>9.3f} ± {row['violation_ratio_std']:.3f} "
                  f"{row['objective_gap_pct_mean']:>10.2f} (max {row['objective_gap_pct_max']:>6.2f}) "
                  f"{row['relaxation_gap_pct_mean']:>17.2f} {row['ms_per_solve_b1']:>15.2f} "
                  f"{row['ms_per_sample_batched']:>17.2f}", flush=True)
        results["lams"][str(lam)] = {"j_star_mean": j_star.mean().item(), "rows": rows}
    if args.json:
        from coopbench.io import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
