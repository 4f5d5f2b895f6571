"""Speed of CORA's batched strong-epsilon-core QP (algorithms/core_qp.py) against a per-sample reference solver.

    python benchmarks/core_qp_speed.py [--batch 4096] [--agents 5] [--lams 1 0] [--repeats 5] [--ref-samples 200]
                                       [--threads 1] [--json out.json]

Data: grand advantage A_N ~ N(0, 1); for each of the 2^n - 2 proper coalitions A_C = |C| / n * A_N + N(0, 0.5^2)
(correlated with A_N, as a critic's coalition values are). The batched solve of the whole batch is timed over
--repeats runs after a warm-up (min / median / max). The references solve one sample at a time, on the first
--ref-samples samples, and their time is extrapolated linearly to the batch (printed as such):
  * cvxpy + Clarabel: one parameterized problem (DPP), only the parameters change per sample (cvxpy's
    recommended way to re-solve); default Clarabel tolerances.
  * Clarabel directly: one solver object, `update(q=..., b=...)` per sample (no cvxpy overhead).
For lam = 0 every method computes the same tie-break: the LP (min eps), then the least-variance allocation with
eps <= eps* (+ 1e-9 for the references): two solves per sample for the references.
One torch thread by default (`--threads`); the references are single-threaded.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from algorithms.core_qp import all_proper_coalitions, solve_core_allocation

TARGET_BATCH_S = 1.0
TARGET_RATIO = 100.0


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def make_data(batch: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    members = all_proper_coalitions(n)
    a_n = torch.randn(batch, generator=g, dtype=torch.float64)
    a_c = members.sum(-1) / n * a_n[:, None] + 0.5 * torch.randn(batch, members.shape[0], generator=g,
                                                                 dtype=torch.float64)
    return a_c, a_n, members


class CvxpyReference:
    """CORA eq. 8 as parameterized cvxpy problems (stage 2 only for lam = 0)."""

    def __init__(self, members: np.ndarray, lam: float):
        import cvxpy as cp

        m, n = members.shape
        self.cp, self.lam = cp, lam
        self.a_c, self.a_n, self.level = cp.Parameter(m), cp.Parameter(), cp.Parameter()
        self.A, self.eps = cp.Variable(n), cp.Variable()
        constraints = [cp.sum(self.A) == self.a_n, self.eps >= 0,
                       members.astype(float) @ self.A >= self.a_c - self.eps]
        variance = cp.sum_squares(self.A - self.a_n / n)
        if lam > 0:
            self.problems = [cp.Problem(cp.Minimize(self.eps + lam * variance), constraints)]
        else:
            self.problems = [cp.Problem(cp.Minimize(self.eps), constraints),
                             cp.Problem(cp.Minimize(variance), [*constraints, self.eps <= self.level])]

    def solve(self, a_c: np.ndarray, a_n: float) -> np.ndarray:
        self.a_c.value, self.a_n.value = a_c, a_n
        self.problems[0].solve(solver=self.cp.CLARABEL)
        if self.lam == 0:
            self.level.value = float(self.eps.value) + 1e-9
            self.problems[1].solve(solver=self.cp.CLARABEL)
        return np.asarray(self.A.value)


class ClarabelReference:
    """CORA eq. 8 with Clarabel directly: x = (A, eps), A x + s = b, s in {0} x R_+; data updated per sample."""

    def __init__(self, members: np.ndarray, lam: float):
        import clarabel

        m, n = members.shape
        self.n, self.lam = n, lam
        rows = [np.append(np.ones(n), 0.0), *(-np.append(members[k].astype(float), 1.0) for k in range(m)),
                np.append(np.zeros(n), -1.0)]
        settings = clarabel.DefaultSettings()
        settings.verbose = False

        def solver(P, rows):
            A = sp.csc_matrix(np.stack(rows))
            cones = [clarabel.ZeroConeT(1), clarabel.NonnegativeConeT(A.shape[0] - 1)]
            return clarabel.DefaultSolver(sp.csc_matrix(P), np.zeros(n + 1), A, np.zeros(A.shape[0]), cones, settings)

        if lam > 0:
            self.solvers = [solver(np.diag(np.append(np.full(n, 2.0 * lam), 0.0)), rows)]
        else:  # the LP, then the least variance with eps <= eps* + 1e-9 (one more row)
            self.solvers = [solver(np.zeros((n + 1, n + 1)), rows),
                            solver(np.diag(np.append(np.full(n, 2.0), 0.0)), [*rows, np.append(np.zeros(n), 1.0)])]

    def solve(self, a_c: np.ndarray, a_n: float) -> np.ndarray:
        n, lam = self.n, self.lam
        b = np.concatenate([[a_n], -a_c, [0.0]])
        if lam > 0:
            self.solvers[0].update(q=np.append(np.full(n, -2.0 * lam * a_n / n), 1.0), b=b)
            return np.asarray(self.solvers[0].solve().x[:n])
        self.solvers[0].update(q=np.append(np.zeros(n), 1.0), b=b)
        eps = self.solvers[0].solve().x[-1]
        self.solvers[1].update(q=np.append(np.full(n, -2.0 * a_n / n), 0.0), b=np.append(b, eps + 1e-9))
        return np.asarray(self.solvers[1].solve().x[:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--lams", type=float, nargs="+", default=[1.0, 0.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ref-samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    a_c, a_n, members = make_data(args.batch, args.agents, args.seed)
    n_ref = min(args.ref_samples, args.batch)
    results = {"threads": torch.get_num_threads(), "batch": args.batch, "agents": args.agents,
               "coalitions": members.shape[0], "repeats": args.repeats, "ref_samples": n_ref, "lams": {}}
    print(f"torch threads: {torch.get_num_threads()}; batch {args.batch}, n = {args.agents}, all "
          f"{members.shape[0]} proper coalitions; references timed on {n_ref} samples, extrapolated to {args.batch}")
    for lam in args.lams:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = solve_core_allocation(a_c, a_n, members, lam)  # warm-up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = solve_core_allocation(a_c, a_n, members, lam)
                times.append(time.perf_counter() - start)
        batched = summary(times)
        entry = {"batched_s": batched, "iterations": out.iterations, "warnings": [str(w.message) for w in caught]}
        print(f"lam = {lam:g}: batched {batched['min']:.3f}/{batched['median']:.3f}/{batched['max']:.3f} s "
              f"(min/median/max), {out.iterations} batched IPM iterations"
              + (f"; WARNINGS: {entry['warnings']}" if caught else ""), flush=True)
        mem_np = members.numpy()
        for name, cls in (("cvxpy+clarabel", CvxpyReference), ("clarabel direct", ClarabelReference)):
            ref = cls(mem_np, lam)
            ref.solve(a_c[0].numpy(), float(a_n[0]))  # warm-up (cvxpy compiles the problem here)
            start = time.perf_counter()
            credits = np.stack([ref.solve(a_c[b].numpy(), float(a_n[b])) for b in range(n_ref)])
            per_sample = (time.perf_counter() - start) / n_ref
            full = per_sample * args.batch
            ratio = full / batched["median"]
            diff = float(np.abs(credits - out.credits[:n_ref].numpy()).max())
            entry[name] = {"per_sample_s": per_sample, "extrapolated_batch_s": full, "speedup_vs_median": ratio,
                           "max_abs_credit_diff": diff}
            print(f"  {name:16s} {per_sample * 1e3:.3f} ms/sample -> {full:.2f} s for {args.batch} (extrapolated); "
                  f"batched is {ratio:.0f}x faster; max |credit difference| {diff:.1e}", flush=True)
        ok_time = batched["median"] <= TARGET_BATCH_S
        ok_cvx = entry["cvxpy+clarabel"]["speedup_vs_median"] >= TARGET_RATIO
        ok_direct = entry["clarabel direct"]["speedup_vs_median"] >= TARGET_RATIO
        entry["targets"] = {"batch_le_1s": ok_time, "ratio_ge_100_vs_cvxpy": ok_cvx,
                            "ratio_ge_100_vs_clarabel_direct": ok_direct}
        print(f"  targets: batched <= {TARGET_BATCH_S:g} s: {'met' if ok_time else 'MISSED'}; "
              f">= {TARGET_RATIO:g}x vs cvxpy: {'met' if ok_cvx else 'MISSED'}; "
              f">= {TARGET_RATIO:g}x vs Clarabel direct: {'met' if ok_direct else 'MISSED'}", flush=True)
        results["lams"][str(lam)] = entry
    if args.json:
        from coopbench.base.io import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
