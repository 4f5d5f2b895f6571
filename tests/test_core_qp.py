"""The batched strong-epsilon-core QP of CORA (eq. 8, sampled eq. 19) against Clarabel, one sample at a time."""

import warnings

import clarabel
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
import torch

from algorithms.core_qp import CoreAllocation, all_proper_coalitions, sample_coalitions, solve_core_allocation

LAMS = (0.0, 0.1, 1.0, 10.0)


def _clarabel(P, q, A, b, n_eq):
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-12
    settings.tol_ktratio = 1e-10
    settings.max_iter = 500
    cones = [clarabel.ZeroConeT(n_eq), clarabel.NonnegativeConeT(A.shape[0] - n_eq)]
    solution = clarabel.DefaultSolver(sp.csc_matrix(P), q, sp.csc_matrix(A), b, cones, settings).solve()
    assert str(solution.status) in ("Solved", "AlmostSolved"), solution.status
    return np.asarray(solution.x)


def reference(a_c: np.ndarray, a_n: float, members: np.ndarray, lam: float):
    """(credits, eps, objective) of CORA eq. 8 for one sample; lam = 0: the least core's minimum-variance point.

    Variables x = (A_1..A_n, eps); Clarabel's form A x + s = b with s in {0} x R_+.
    """
    m, n = members.shape
    rows = [np.append(np.ones(n), 0.0)]  # sum_i A_i = A_N
    rows += [-np.append(members[k].astype(float), 1.0) for k in range(m)]  # sum_{i in C} A_i + eps >= A_C
    rows += [np.append(np.zeros(n), -1.0)]  # eps >= 0
    A = np.stack(rows)
    b = np.concatenate([[a_n], -a_c, [0.0]])
    P = np.diag(np.append(np.full(n, 2.0 * lam), 0.0))
    q = np.append(np.full(n, -2.0 * lam * a_n / n), 1.0)
    x = _clarabel(P, q, A, b, 1)
    if lam == 0:  # lexicographic: eps* first, then the least variance with eps <= eps* + 1e-9 (as the solver)
        level = x[-1] + 1e-9 * max(abs(a_n), np.max(a_c - members.sum(1) * a_n / n, initial=0.0), 1e-300)
        A2 = np.vstack([A, np.append(np.zeros(n), 1.0)])
        P2 = np.diag(np.append(np.full(n, 2.0), 0.0))
        q2 = np.append(np.full(n, -2.0 * a_n / n), 0.0)
        x = _clarabel(P2, q2, A2, np.append(b, level), 1)
    credits = x[:n]
    eps = max(0.0, float(np.max(a_c - members.astype(float) @ credits, initial=0.0)))
    return credits, eps, eps + lam * float(((credits - a_n / n) ** 2).sum())


def objective(out: CoreAllocation, a_n: torch.Tensor, lam: float) -> torch.Tensor:
    n = out.credits.shape[-1]
    return out.epsilon.double() + lam * ((out.credits.double() - a_n.double()[:, None] / n) ** 2).sum(-1)


def random_instance(n: int, m: int | None, batch: int, generator: torch.Generator):
    """Grand advantage ~ N(0, 1); coalition advantages = |C|/n * A_N + N(0, 1); all coalitions or m sampled."""
    members = all_proper_coalitions(n) if m is None else sample_coalitions(n, m, batch, generator=generator)
    a_n = torch.randn(batch, generator=generator, dtype=torch.float64)
    a_c = members.sum(-1) / n * a_n[:, None] + torch.randn(batch, members.shape[-2], generator=generator,
                                                           dtype=torch.float64)
    return a_c, a_n, members


def per_sample_members(members: torch.Tensor, batch: int) -> torch.Tensor:
    return members if members.dim() == 3 else members.expand(batch, -1, -1)


def assert_feasible(out: CoreAllocation, a_c, a_n, members):
    mem = per_sample_members(members, a_n.shape[0]).double()
    lhs = (mem @ out.credits.double().unsqueeze(-1)).squeeze(-1)
    assert (a_c - out.epsilon.double()[:, None] - lhs).max() <= 1e-6
    assert out.epsilon.min() >= -1e-9
    torch.testing.assert_close(out.credits.sum(-1), a_n, rtol=0, atol=1e-9)


CASES = [(n, m) for n in range(2, 8) for m in (None, 1, (2**n - 2) // 2, 2**n - 3) if m != 0]


@pytest.mark.parametrize("lam", LAMS)
def test_matches_clarabel_on_random_instances(lam):
    g = torch.Generator().manual_seed(int(10 * lam))
    for n, m in CASES:
        batch = 5
        a_c, a_n, members = random_instance(n, m, batch, g)
        out = solve_core_allocation(a_c, a_n, members, lam)
        assert out.credits.shape == (batch, n) and out.epsilon.shape == (batch,) and out.iterations > 0
        assert_feasible(out, a_c, a_n, members)
        ours = objective(out, a_n, lam)
        mem = per_sample_members(members, batch)
        for b in range(batch):
            credits, _, ref_obj = reference(a_c[b].numpy(), float(a_n[b]), mem[b].numpy(), lam)
            assert abs(float(ours[b]) - ref_obj) <= 1e-4 * abs(ref_obj) + 1e-8, (n, m, b)
            # lam > 0: the unique solution; lam = 0: the documented tie-break (the reference computes it too).
            np.testing.assert_allclose(out.credits[b].numpy(), credits, rtol=0, atol=1e-5, err_msg=f"{n, m, b}")


def _nnls_kkt(columns: list[np.ndarray], target: np.ndarray) -> float:
    """Residual of min ||K mu - target|| over mu >= 0 (free multipliers enter as a +/- pair of columns)."""
    _, residual = scipy.optimize.nnls(np.stack(columns, 1), target, maxiter=5000)
    return residual


@pytest.mark.parametrize("lam", LAMS)
def test_kkt_conditions_hold(lam):
    """Multipliers recovered by NNLS on the active constraints: stationarity with mu >= 0 (dual feasibility),
    supported on constraints that are tight (complementary slackness). lam = 0 also: the least-variance KKT."""
    g = torch.Generator().manual_seed(7)
    for n, m in [(3, None), (5, None), (6, 20), (7, 40)]:
        a_c, a_n, members = random_instance(n, m, 6, g)
        out = solve_core_allocation(a_c, a_n, members, lam)
        mem = per_sample_members(members, 6).double().numpy()
        for b in range(6):
            A, eps, an = out.credits[b].numpy(), float(out.epsilon[b]), float(a_n[b])
            slack = mem[b] @ A + eps - a_c[b].numpy()
            active = np.flatnonzero(slack <= 1e-7)
            ones = np.ones(n)
            # Stationarity in (A, eps): 2 lam (A - A_N/n) = sum_k mu_k 1_{C_k} + nu 1 and 1 = sum_k mu_k + mu_0.
            cols = [np.append(mem[b][k], 1.0) for k in active] + [np.append(ones, 0.0), np.append(-ones, 0.0)]
            if eps <= 1e-9:
                cols.append(np.append(np.zeros(n), 1.0))  # eps >= 0 is tight
            target = np.append(2 * lam * (A - an / n), 1.0)
            assert _nnls_kkt(cols, target) <= 1e-6, (n, m, b)
            if lam == 0:  # and A is the least-variance point of {eps(A) <= eps}: 2 (A - A_N/n) = sum v_k 1_C + nu 1
                cols = [mem[b][k] for k in active] + [ones, -ones]
                assert _nnls_kkt(cols, 2 * (A - an / n)) <= 1e-6, (n, m, b)


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_negative_grand_advantage_keeps_the_good_coalitions_credit(lam):
    """CORA A.7 ("the core driving principle"): A_N = -1 but A_{1} = 2: agent 1 keeps a positive credit and
    agent 2 absorbs the negative part (sum over the complement <= A_N + eps)."""
    members = all_proper_coalitions(2)  # rows {1}, {2}
    a_c = torch.tensor([[2.0, -3.0]], dtype=torch.float64)
    a_n = torch.tensor([-1.0], dtype=torch.float64)
    out = solve_core_allocation(a_c, a_n, members, lam)
    a1, a2 = out.credits[0].tolist()
    eps = float(out.epsilon[0])
    assert a1 > 0 > a2
    assert a2 <= float(a_n[0]) + eps + 1e-9
    # Closed form: A_1 = 2 - eps, A_2 = -3 + eps, eps = max(0, 2.5 - 1 / (4 lam)).
    expected_eps = max(0.0, 2.5 - 1.0 / (4 * lam)) if lam > 0 else 0.0
    assert eps == pytest.approx(expected_eps, abs=1e-7)
    assert (a1, a2) == pytest.approx((2.0 - expected_eps, -3.0 + expected_eps), abs=1e-7)


@pytest.mark.parametrize(("lam", "atol"), [(0.1, 1e-4), (0.5, 1e-7), (1.0, 1e-7), (10.0, 1e-7)])
def test_two_agent_closed_form_for_larger_variance_weight(lam, atol):
    """Same game; from lam = 1/10 on, eps = 2.5 - 1 / (4 lam) > 0 buys a less unequal split. lam = 1/10 is the
    kink (eps = 0 with a zero multiplier: not strictly complementary), where an IPM's error is ~ sqrt(tol)."""
    members = all_proper_coalitions(2)
    out = solve_core_allocation(torch.tensor([[2.0, -3.0]], dtype=torch.float64),
                                torch.tensor([-1.0], dtype=torch.float64), members, lam)
    eps = 2.5 - 1.0 / (4 * lam)
    assert float(out.epsilon[0]) == pytest.approx(eps, abs=atol)
    assert out.credits[0].tolist() == pytest.approx([2.0 - eps, -3.0 + eps], abs=atol)
    assert out.credits[0, 0] > out.credits[0, 1]


@pytest.mark.parametrize("lam", LAMS)
def test_theorem_3_and_the_complement_bound(lam):
    """Theorem 3: with C* = argmax_C A_C (if above A_N), sum_{i not in C*} A_i <= eps; A.7: for every C with
    A_C >= 0 > A_N, sum_{i not in C} A_i <= A_N + eps."""
    g = torch.Generator().manual_seed(3)
    for n in (3, 5, 7):
        a_c, a_n, members = random_instance(n, None, 64, g)
        a_c = a_c + 0.5  # more samples with a coalition above the grand coalition
        out = solve_core_allocation(a_c, a_n, members, lam)
        outside = (~members).double() @ out.credits.double().T  # [m, B]: sum over the complement of each C
        best = a_c.argmax(-1)
        has_star = a_c.max(-1).values >= a_n
        assert has_star.any()
        star_outside = outside[best, torch.arange(64)]
        assert (star_outside[has_star] <= out.epsilon[has_star] + 1e-9).all()
        rows = (a_c >= 0) & (a_n < 0)[:, None]
        bound = (a_n + out.epsilon)[:, None].expand_as(a_c)
        assert (outside.T[rows] <= bound[rows] + 1e-9).all()


def test_lam_zero_tie_break_is_the_least_variance_point_not_the_centre():
    """n = 2, A_{1} = 2, A_{2} = -10, A_N = 3: the least core (eps* = 0) is A_1 in [2, 13]. The documented
    tie-break gives the least-variance point (2, 1), not the interval's centre (7.5, -4.5)."""
    out = solve_core_allocation(torch.tensor([[2.0, -10.0]], dtype=torch.float64),
                                torch.tensor([3.0], dtype=torch.float64), all_proper_coalitions(2), 0.0)
    assert float(out.epsilon[0]) == pytest.approx(0.0, abs=1e-8)
    assert out.credits[0].tolist() == pytest.approx([2.0, 1.0], abs=1e-7)


def test_lam_zero_tie_break_on_an_unbounded_least_core():
    """One sampled coalition {1} with A_C = 5, A_N = 3 (n = 3): every A_1 >= 5 is in the least core; the
    least-variance point is (5, -1, -1)."""
    members = torch.tensor([[[True, False, False]]])
    out = solve_core_allocation(torch.tensor([[5.0]], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64),
                                members, 0.0)
    assert float(out.epsilon[0]) == pytest.approx(0.0, abs=1e-8)
    assert out.credits[0].tolist() == pytest.approx([5.0, -1.0, -1.0], abs=1e-7)


def test_lam_zero_is_deterministic_and_the_small_lam_limit():
    g = torch.Generator().manual_seed(11)
    a_c, a_n, members = random_instance(6, 20, 32, g)
    first = solve_core_allocation(a_c, a_n, members, 0.0)
    again = solve_core_allocation(a_c, a_n, members, 0.0)
    assert torch.equal(first.credits, again.credits) and torch.equal(first.epsilon, again.epsilon)
    perm = torch.randperm(32, generator=g)
    shuffled = solve_core_allocation(a_c[perm], a_n[perm], members[perm], 0.0)
    torch.testing.assert_close(shuffled.credits, first.credits[perm], rtol=0, atol=1e-9)
    # The least-variance point of the least core is the limit of the lam > 0 solutions as lam -> 0
    # (exactly equal below a threshold: exact regularization of LPs).
    tiny = solve_core_allocation(a_c, a_n, members, 1e-6)
    torch.testing.assert_close(tiny.credits, first.credits, rtol=0, atol=1e-6)


def test_lam_zero_proximal_fallback(monkeypatch):
    """A proximal weight far above the exact-regularization threshold: the first delta-QP misses eps*, so the
    proximal-point continuation and the least-variance phase must recover the documented answer."""
    import algorithms.core_qp as core_qp

    monkeypatch.setattr(core_qp, "_PROX", 10.0)
    g = torch.Generator().manual_seed(12)
    for n, m in [(4, None), (6, 30)]:
        a_c, a_n, members = random_instance(n, m, 6, g)
        out = solve_core_allocation(a_c, a_n, members, 0.0)
        mem = per_sample_members(members, 6)
        for b in range(6):
            credits, eps, _ = reference(a_c[b].numpy(), float(a_n[b]), mem[b].numpy(), 0.0)
            assert float(out.epsilon[b]) == pytest.approx(eps, abs=1e-8)
            np.testing.assert_allclose(out.credits[b].numpy(), credits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("c", [1e-3, 1e3])
def test_scale_robustness(lam, c):
    """A = c * Ahat maps the problem with lam to the one in Ahat with lam * c (the objective is c times)."""
    g = torch.Generator().manual_seed(5)
    a_c, a_n, members = random_instance(5, None, 16, g)
    scaled = solve_core_allocation(c * a_c, c * a_n, members, lam)
    unit = solve_core_allocation(a_c, a_n, members, lam * c)
    torch.testing.assert_close(scaled.credits / c, unit.credits, rtol=0, atol=1e-6)
    torch.testing.assert_close(scaled.epsilon / c, unit.epsilon, rtol=0, atol=1e-7)
    mem = members.double()
    lhs = scaled.credits @ mem.T
    assert ((c * a_c - scaled.epsilon[:, None] - lhs) / c).max() <= 1e-9
    torch.testing.assert_close(scaled.credits.sum(-1), c * a_n, rtol=1e-12, atol=1e-12 * c)


@pytest.mark.parametrize("lam", LAMS)
def test_edge_cases(lam):
    n = 4
    members = all_proper_coalitions(n)
    g = torch.Generator().manual_seed(2)
    a_c, a_n, _ = random_instance(n, None, 8, g)
    # All coalitions very negative: eps = 0 and, for lam > 0 or as the least-variance tie-break, A_i = A_N / n.
    out = solve_core_allocation(a_c - 1e6, a_n, members, lam)
    assert torch.equal(out.epsilon, torch.zeros(8, dtype=torch.float64))
    torch.testing.assert_close(out.credits, (a_n / n)[:, None].expand(8, n), rtol=0, atol=1e-9)
    # A_N = 0 and everything zero.
    out = solve_core_allocation(a_c, torch.zeros(8, dtype=torch.float64), members, lam)
    assert_feasible(out, a_c, torch.zeros(8, dtype=torch.float64), members)
    out = solve_core_allocation(torch.zeros(8, 14, dtype=torch.float64), torch.zeros(8, dtype=torch.float64),
                                members, lam)
    assert out.credits.abs().max() <= 1e-12 and out.epsilon.abs().max() <= 1e-12
    # Duplicate coalitions change nothing.
    dup = solve_core_allocation(torch.cat([a_c, a_c[:, :5]], 1), a_n, torch.cat([members, members[:5]]), lam)
    ref = solve_core_allocation(a_c, a_n, members, lam)
    torch.testing.assert_close(dup.credits, ref.credits, rtol=0, atol=1e-6)
    # Per-sample members equal to the shared ones give the same answer.
    per = solve_core_allocation(a_c, a_n, members.expand(8, -1, -1), lam)
    torch.testing.assert_close(per.credits, ref.credits, rtol=0, atol=1e-8)
    # B = 1 and B = 0; no coalitions at all; float32 in, float32 out.
    one = solve_core_allocation(a_c[:1], a_n[:1], members, lam)
    torch.testing.assert_close(one.credits, ref.credits[:1], rtol=0, atol=1e-8)
    empty = solve_core_allocation(a_c[:0], a_n[:0], members, lam)
    assert empty.credits.shape == (0, n) and empty.epsilon.shape == (0,)
    none = solve_core_allocation(a_c[:, :0], a_n, members[:0], lam)
    torch.testing.assert_close(none.credits, (a_n / n)[:, None].expand(8, n))
    f32 = solve_core_allocation(a_c.float(), a_n.float(), members, lam)
    assert f32.credits.dtype == f32.epsilon.dtype == torch.float32
    torch.testing.assert_close(f32.credits.double(), ref.credits, rtol=0, atol=1e-5)


def test_non_convergence_warns_and_stays_feasible():
    g = torch.Generator().manual_seed(4)
    a_c, a_n, members = random_instance(5, None, 8, g)
    with pytest.warns(RuntimeWarning, match="stopped"):
        out = solve_core_allocation(a_c, a_n, members, 1.0, max_iter=2)
    assert_feasible(out, a_c, a_n, members)


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_large_batch_cholesky_matches_lapack_path(lam):
    """Batches of >= 256 samples factor the Newton matrices with the vectorized Cholesky, small ones with LAPACK:
    the same samples solved both ways agree."""
    g = torch.Generator().manual_seed(8)
    for n, m in [(5, None), (7, 30)]:
        a_c, a_n, members = random_instance(n, m, 300, g)
        big = solve_core_allocation(a_c, a_n, members, lam)
        for part in torch.arange(300).split(100):
            small = solve_core_allocation(a_c[part], a_n[part], members if m is None else members[part], lam)
            torch.testing.assert_close(big.credits[part], small.credits, rtol=0, atol=1e-6)
            torch.testing.assert_close(big.epsilon[part], small.epsilon, rtol=0, atol=1e-8)


def test_converged_solves_do_not_warn():
    g = torch.Generator().manual_seed(6)
    a_c, a_n, members = random_instance(5, None, 512, g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for lam in LAMS:
            solve_core_allocation(a_c, a_n, members, lam)


def test_all_proper_coalitions():
    assert all_proper_coalitions(2).tolist() == [[True, False], [False, True]]
    members = all_proper_coalitions(5)
    assert members.shape == (30, 5) and members.dtype == torch.bool
    masks = (members.long() * 2 ** torch.arange(5)).sum(-1)
    assert masks.tolist() == list(range(1, 31))  # by bitmask, all distinct, none empty or full
    with pytest.raises(ValueError, match="n must be"):
        all_proper_coalitions(1)


def test_sample_coalitions_distinct_uniform_and_seeded():
    g = torch.Generator().manual_seed(0)
    draws = sample_coalitions(3, 2, 30000, generator=g)
    assert draws.shape == (30000, 2, 3) and draws.dtype == torch.bool
    masks = (draws.long() * torch.tensor([1, 2, 4])).sum(-1)
    assert ((masks >= 1) & (masks <= 6)).all() and (masks[:, 0] != masks[:, 1]).all()
    freq = torch.bincount(masks.flatten(), minlength=7)[1:].double() / 30000
    torch.testing.assert_close(freq, torch.full((6,), 1 / 3, dtype=torch.float64), rtol=0, atol=0.02)
    # Each unordered pair equally likely: 15 pairs.
    pairs = torch.bincount(masks.min(-1).values * 8 + masks.max(-1).values, minlength=64)
    pair_freq = pairs[pairs > 0].double() / 30000
    assert len(pair_freq) == 15 and (pair_freq - 1 / 15).abs().max() < 0.01
    a = sample_coalitions(7, 20, 4, generator=torch.Generator().manual_seed(1))
    b = sample_coalitions(7, 20, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    everything = sample_coalitions(4, 14, 3, generator=g)
    for s in everything:
        assert sorted(map(tuple, s.tolist())) == sorted(map(tuple, all_proper_coalitions(4).tolist()))
    large = sample_coalitions(20, 300, 16, generator=g)  # the rejection path
    big_masks = (large.long() * 2 ** torch.arange(20)).sum(-1)
    assert all(len(set(row.tolist())) == 300 for row in big_masks)
    assert ((big_masks >= 1) & (big_masks <= 2**20 - 2)).all()
    with pytest.raises(ValueError, match="m must be"):
        sample_coalitions(3, 7, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grand_advantage": torch.zeros(3, dtype=torch.float64)}, "batch size mismatch"),
        ({"coalition_advantages": torch.zeros(4, 13, dtype=torch.float64)}, "coalition_advantages has m = 13"),
        ({"members": torch.ones(1, 1, dtype=torch.bool), "coalition_advantages": torch.zeros(4, 1,
                                                                                           dtype=torch.float64)},
         "n >= 2"),
        ({"variance_weight": -0.1}, "lam"),
        ({"variance_weight": float("nan")}, "lam"),
        ({"members": all_proper_coalitions(4).clone().index_fill_(0, torch.tensor([3]), False)}, "empty coalition"),
        ({"members": all_proper_coalitions(4).long()}, "bool"),
        ({"members": all_proper_coalitions(4)[None].expand(3, -1, -1)}, "members is"),
        ({"grand_advantage": torch.tensor([0.0, 1.0, float("nan"), 0.0], dtype=torch.float64)}, "finite"),
        ({"grand_advantage": torch.zeros(4, 1, dtype=torch.float64)}, r"grand_advantage must be \[B\]"),
        ({"coalition_advantages": torch.zeros(4, dtype=torch.float64)}, r"\[B, m\]"),
    ],
)
def test_input_errors(kwargs, message):
    args = {"coalition_advantages": torch.zeros(4, 14, dtype=torch.float64),
            "grand_advantage": torch.zeros(4, dtype=torch.float64),
            "members": all_proper_coalitions(4), "variance_weight": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        solve_core_allocation(**args)


def test_reference_helper_agrees_with_itself_on_a_hand_case():
    """Sanity of the test's own reference: the 2-agent case of the mechanism test."""
    for lam in (0.0, 1.0):
        credits, e, _ = reference(np.array([2.0, -3.0]), -1.0, np.array([[True, False], [False, True]]), lam)
        expected = 0.0 if lam == 0 else 2.25
        assert e == pytest.approx(expected, abs=1e-8)
        assert credits.tolist() == pytest.approx([2.0 - expected, -3.0 + expected], abs=1e-7)
