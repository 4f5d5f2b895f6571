"""CORA's credit allocation: the strong epsilon-core QP (CORA eq. 8, sampled form eq. 19), batched in torch.

Per sample (s, a), with n agents, grand advantage A_N and coalition advantages A_C for a set of coalitions:

    minimize_{eps >= 0, A_1..A_n}  eps + lam * sum_i (A_i - A_N / n)^2
    s.t. sum_i A_i = A_N,   sum_{i in C} A_i >= A_C - eps  for every C in the set.

`solve_core_allocation` solves a whole batch at once with a primal-dual interior-point method (Mehrotra
predictor-corrector, float64, one step of iterative refinement near the end) whose Newton systems are n x n
normal equations, factored by a Cholesky vectorized over the batch (LAPACK's for small batches); converged
samples leave the working set, the others iterate until their own KKT residuals are below tol:

* The equality is eliminated: A = A_N / n + U w with U an orthonormal basis of {d : sum d = 0}, so the
  unknowns are y = (w, eps) and all constraints are rows G y >= h (eps >= 0 is one of them).
* Scaling: the objective is not scale-invariant (A = c * Ahat turns lam into lam * c), so each sample is
  divided by c = max(|A_N|, max_C (A_C - |C| A_N / n)^+) (the size of the answer), solved with lam * c and
  mapped back. Coalitions with very negative A_C do not set the scale; they stay as loose rows.
* lam > 0: strictly convex in A, a unique solution, one IPM solve. Where lam * c < 1e-2 (nearly an LP, so
  w is poorly determined at a given duality gap) w is polished: the least ||w|| at the eps found.
* lam = 0 (CORA-PPO "without std") is an LP whose optimal face can be a segment or, with sampled
  coalitions, unbounded. Tie-break (deterministic, documented): the minimum-variance point of the least
  core, i.e. lexicographic -- the smallest eps (eps*) first, then the smallest sum_i (A_i - A_N / n)^2 among
  the allocations with eps <= eps* + 10 tol (in units of c). Not the IPM's own limit (the analytic centre of
  the optimal face, which does not exist for an unbounded face). See `_least_core_min_variance`.
* At the end the credits are projected onto sum_i A_i = A_N and eps is recomputed from them as
  max(0, max_C (A_C - sum_{i in C} A_i)), so every constraint holds with the returned eps up to rounding.

Batch independence: each sample is its own problem, stopped by its own residuals, but three things follow the
working set (the samples not yet converged) rather than the sample: the iterative-refinement step (taken by the
whole working set once any sample's mu < 1e-6), the Cholesky (vectorized from `_VECTOR_CHOLESKY_MIN_BATCH`
active samples on, LAPACK's below) and the shapes of the matrix products. A sample's solution therefore agrees
with the one it gets in another batch to the solver's tolerance, not to the bit: on CORA rollouts (5 seeds x
256 samples, 12 iterations) solving the seeds in one call instead of one call each changed 8 of 46,080 float32
credits of cora on matrix/cora-mtg, by at most 1.1e-13 in standardized units (none of cora_qc's, cora_no_std's
on the 2-agent or cora_m10's on the 5-agent differential game); with one Cholesky path throughout, 1 of them.
A caller that needs a group of samples solved bit for bit as alone gives it its own call: CORA's seed batches
solve each seed separately (`CORA.allocate`).

Why hand-written: no maintained batched QP solver for torch on CPU fits. qpth (last release 2024) has a
batched primal-dual IPM in torch, but it factors Q itself (it checks Q is positive definite by default): eps
has no quadratic term, and lam = 0 is an LP, so it would need a regularizer that changes the solution, and
it stops after a fixed maxIter (20 by default). cvxpylayers and proxsuite's torch layer solve the batch one
problem at a time (no batched linear algebra); OSQP, Clarabel, PIQP, DAQP solve one problem per call. The
tests use Clarabel as the per-sample reference; benchmarks/core_qp_speed.py compares the speeds with cvxpy
and with Clarabel.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import torch

_PROX = 1e-3  # lam = 0: proximal weight delta (scaled units) of the least-core search
_MAX_PROX_STEPS = 20
_POLISH = 1e-2  # lam > 0: lam * scale below this gets the least-variance polish at its eps
_VECTOR_CHOLESKY_MIN_BATCH = 256  # from this many samples on, the Cholesky vectorized over the batch is faster
_ACCEPT = 1e3  # a sample that stalls with KKT residual <= _ACCEPT * tol is accepted without a warning


def all_proper_coalitions(n: int, device=None) -> torch.Tensor:
    """[2^n - 2, n] bool membership matrix of every proper non-empty coalition (row order: by bitmask).

    Row j is the coalition whose bitmask is j + 1: agent i is a member iff bit i is set.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if n > 24:
        raise ValueError(f"n = {n} gives 2^n - 2 coalitions, too many to enumerate; use sample_coalitions")
    masks = torch.arange(1, 2**n - 1, device=device)
    return _masks_to_members(masks, n)


def sample_coalitions(
    n: int, m: int, batch: int, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """[batch, m, n] bool: for each sample, m distinct proper non-empty coalitions drawn uniformly without
    replacement (CORA eq. 19). The order of the m coalitions within a sample is random too.
    """
    if not isinstance(n, int) or n < 2 or n > 62:
        raise ValueError(f"n must be an integer in [2, 62], got {n!r}")
    total = 2**n - 2
    if not 0 <= m <= total:
        raise ValueError(f"m must be in [0, 2^n - 2 = {total}] (distinct proper coalitions), got {m}")
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    if total <= 1 << 12 or 4 * m > total:
        # Random keys, keep the m smallest: a uniform random m-subset in a uniform random order.
        keys = torch.rand(batch, total, generator=generator, device=device)
        masks = keys.argsort(dim=-1)[:, :m] + 1
    else:
        # Rejection of duplicates: every step treats all coalitions alike, so the final set is uniform.
        masks = torch.randint(1, total + 1, (batch, m), generator=generator, device=device)
        while True:
            ordered, order = masks.sort(dim=-1)
            dup = torch.zeros_like(masks, dtype=torch.bool)
            dup[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
            if not dup.any():
                break
            redraw = torch.randint(1, total + 1, (int(dup.sum()),), generator=generator, device=device)
            ordered[dup] = redraw
            masks = torch.empty_like(masks).scatter_(1, order, ordered)
    return _masks_to_members(masks, n)


def _masks_to_members(masks: torch.Tensor, n: int) -> torch.Tensor:
    bits = torch.arange(n, device=masks.device)
    return ((masks.unsqueeze(-1) >> bits) & 1).bool()


@dataclass
class CoreAllocation:
    credits: torch.Tensor  # [B, n] per-agent advantages A_i, same dtype as the input A_N
    epsilon: torch.Tensor  # [B]
    iterations: int  # batched IPM iterations, summed over the solves (several when lam = 0)


def solve_core_allocation(
    coalition_advantages: torch.Tensor,
    grand_advantage: torch.Tensor,
    members: torch.Tensor,
    variance_weight: float,
    *,
    tol: float = 1e-10,
    max_iter: int = 60,
) -> CoreAllocation:
    """Solve CORA eq. 8 (all coalitions) / eq. 19 (sampled coalitions) for a batch of samples at once.

    coalition_advantages: [B, m] A_C; grand_advantage: [B] A_N; members: [m, n] bool (the same coalitions
    for every sample) or [B, m, n] (sampled per sample; duplicates allowed); variance_weight: lam >= 0.
    lam = 0 returns the minimum-variance allocation of the least core (see the module docstring).
    tol: the IPM's stopping tolerance on the scaled KKT residuals (primal, dual, duality gap); max_iter: per
    IPM solve. A sample that stalls (float64's limit on degenerate instances) above 1e3 * tol or reaches
    max_iter draws a RuntimeWarning; its credits are still feasible with its returned eps.
    """
    coalition_advantages, grand_advantage, members = _validate(
        coalition_advantages, grand_advantage, members, variance_weight, tol, max_iter
    )
    out_dtype = grand_advantage.dtype
    device = grand_advantage.device
    B, m = coalition_advantages.shape
    n = members.shape[-1]
    f64 = torch.float64
    if B == 0 or m == 0:  # nothing to solve: without coalitions eps = 0 and the credits are uniform
        credits = (grand_advantage / n).unsqueeze(-1).expand(B, n).clone()
        return CoreAllocation(credits, torch.zeros(B, dtype=out_dtype, device=device), 0)

    a_c = coalition_advantages.to(f64)
    a_n = grand_advantage.to(f64)
    mem = members.to(f64)  # [m, n] or [B, m, n]
    size = mem.sum(-1)  # |C|
    # Deviations d = A - A_N / n satisfy sum_{i in C} d_i >= r_C - eps with r_C = A_C - |C| A_N / n.
    r = a_c - size * (a_n / n).unsqueeze(-1)
    scale = torch.maximum(a_n.abs(), r.clamp(min=0).amax(-1))
    scale = torch.where(scale > 1e-300, scale, torch.ones_like(scale))
    r_hat = r / scale.unsqueeze(-1)
    basis = _zero_sum_basis(n, f64, device)  # [n, n-1]
    m_w = mem @ basis  # coalition rows in w-coordinates: [m, n-1] or [B, m, n-1]
    if m_w.dim() == 2:
        m_w = m_w.unsqueeze(0)

    if variance_weight > 0:
        lam_hat = float(variance_weight) * scale  # the problem in A / scale has lam * scale
        y, iters = _solve_with_eps(m_w, r_hat, 2.0 * lam_hat, None, tol, max_iter)
        w = y[:, :-1]
        flat = (lam_hat < _POLISH).nonzero().squeeze(-1)
        if flat.numel():  # nearly an LP: w is poorly determined at a given gap, polish it at the found eps
            sub = m_w if m_w.shape[0] == 1 else m_w[flat]
            w[flat], it = _min_norm_at_level(sub, r_hat[flat], _violation(sub, w[flat], r_hat[flat]), tol, max_iter)
            iters += it
    else:
        w, iters = _least_core_min_variance(m_w, r_hat, tol, max_iter)
    credits = (a_n / n).unsqueeze(-1) + scale.unsqueeze(-1) * (w @ basis.T)
    credits = credits + ((a_n - credits.sum(-1)) / n).unsqueeze(-1)  # sum_i A_i = A_N (CORA eq. 8)
    credits = credits.to(out_dtype)
    epsilon = _violation(mem, credits.to(f64), a_c).to(out_dtype)
    return CoreAllocation(credits, epsilon, iters)


def _validate(coalition_advantages, grand_advantage, members, variance_weight, tol, max_iter):
    for name, t in (("coalition_advantages", coalition_advantages), ("grand_advantage", grand_advantage),
                    ("members", members)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if grand_advantage.dim() != 1:
        raise ValueError(f"grand_advantage must be [B], got shape {tuple(grand_advantage.shape)}")
    if coalition_advantages.dim() != 2:
        raise ValueError(f"coalition_advantages must be [B, m], got shape {tuple(coalition_advantages.shape)}")
    if not grand_advantage.is_floating_point() or not coalition_advantages.is_floating_point():
        raise ValueError("coalition_advantages and grand_advantage must be floating-point tensors")
    B, m = coalition_advantages.shape
    if grand_advantage.shape[0] != B:
        raise ValueError(f"batch size mismatch: coalition_advantages has B = {B}, "
                         f"grand_advantage has {grand_advantage.shape[0]}")
    if members.dtype != torch.bool:
        raise ValueError(f"members must be a bool tensor, got dtype {members.dtype}")
    if members.dim() == 2:
        if members.shape[0] != m:
            raise ValueError(f"members is [m, n] = {tuple(members.shape)} but coalition_advantages has m = {m}")
    elif members.dim() == 3:
        if members.shape[:2] != (B, m):
            raise ValueError(f"members is [B, m, n] = {tuple(members.shape)} but coalition_advantages is [{B}, {m}]")
    else:
        raise ValueError(f"members must be [m, n] or [B, m, n], got shape {tuple(members.shape)}")
    n = members.shape[-1]
    if n < 2:
        raise ValueError(f"need n >= 2 agents, members has n = {n}")
    if members.numel() and not members.any(-1).all():
        raise ValueError("members has an empty coalition row (every coalition needs at least one agent)")
    if not (isinstance(variance_weight, numbers.Real) and math.isfinite(variance_weight) and variance_weight >= 0):
        raise ValueError(f"variance_weight (lam) must be a finite number >= 0, got {variance_weight!r}")
    if not (tol > 0 and max_iter >= 1):
        raise ValueError(f"need tol > 0 and max_iter >= 1, got tol = {tol}, max_iter = {max_iter}")
    if not (torch.isfinite(coalition_advantages).all() and torch.isfinite(grand_advantage).all()):
        raise ValueError("coalition_advantages and grand_advantage must be finite (found NaN or inf)")
    return coalition_advantages, grand_advantage, members


def _zero_sum_basis(n: int, dtype, device) -> torch.Tensor:
    """Orthonormal basis of {d in R^n : sum d = 0} (Helmert): column j is (1,..,1, -j, 0,..) / sqrt(j (j+1))."""
    basis = torch.zeros(n, n - 1, dtype=dtype, device="cpu")  # built entry by entry, then moved once
    for j in range(1, n):
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -float(j)
        basis[:, j - 1] /= math.sqrt(j * (j + 1))
    return basis.to(device)


def _violation(rows: torch.Tensor, x: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """max(0, max_k (rhs_k - rows_k . x)): the smallest eps with which x satisfies every row."""
    lhs = (rows @ x.unsqueeze(-1)).squeeze(-1)
    return (rhs - lhs).amax(-1).clamp(min=0)


def _least_core_min_variance(m_w, r_hat, tol, max_iter):
    """lam = 0: argmin ||w|| over the least core argmin_w eps(w), eps(w) = max(0, max_k (r_hat_k - m_w_k . w)).

    1. eps* by the proximal point method on the LP: w_{j+1} = argmin eps(w) + delta_j ||w - w_j||^2, w_0 = 0,
       until eps stops decreasing by more than tol (finitely many steps on an LP). Usually w_1 is already
       optimal (delta = 1e-3 is below the LP's exact-regularization threshold, Friedlander & Tseng 2007) and
       w_2 only confirms it; otherwise delta_j shrinks tenfold per further step.
    2. The least ||w|| with eps(w) <= eps* + 10 tol: a strictly convex QP (the delta-QP of step 1 would give
       it too in exact arithmetic, but its flat curvature delta makes w inaccurate at a given gap).
    """
    B = r_hat.shape[0]
    q = torch.full((B,), 2.0 * _PROX, dtype=r_hat.dtype, device=r_hat.device)
    y, iters = _solve_with_eps(m_w, r_hat, q, None, tol, max_iter)
    w = y[:, :-1]
    eps = _violation(m_w, w, r_hat)
    todo = torch.arange(B, device=r_hat.device)
    for step in range(_MAX_PROX_STEPS):
        sub = m_w if m_w.shape[0] == 1 else m_w[todo]
        # The check uses delta; if eps still decreases, later steps shrink delta (longer proximal steps).
        y, it = _solve_with_eps(sub, r_hat[todo], q[todo] * 0.1**step, w[todo], tol, max_iter)
        iters += it
        w_new = y[:, :-1]
        eps_new = _violation(sub, w_new, r_hat[todo])
        better = eps_new < eps[todo] - tol
        todo = todo[better]
        if todo.numel() == 0:
            break
        w[todo], eps[todo] = w_new[better], eps_new[better]
    w, it = _min_norm_at_level(m_w, r_hat, eps, tol, max_iter)
    return w, iters + it


def _min_norm_at_level(m_w, r_hat, level, tol, max_iter):
    """argmin ||w||^2 s.t. m_w w >= r_hat - (level + 10 tol): the least variance at a given eps (strictly convex).

    The 10 tol keeps an interior for the IPM when the set {eps(w) <= level} is thin (as the least core is).
    """
    B, k1 = r_hat.shape[0], m_w.shape[-1]
    f64, device = r_hat.dtype, r_hat.device
    return _ipm(m_w, r_hat - (level + 10 * tol).unsqueeze(-1), torch.full((B, k1), 2.0, dtype=f64, device=device),
                torch.zeros(B, k1, dtype=f64, device=device), tol, max_iter)


def _solve_with_eps(m_w, r_hat, q_w, center, tol, max_iter):
    """IPM on y = (w, eps): min eps + q_w / 2 ||w - center||^2 s.t. m_w w + eps >= r_hat, eps >= 0."""
    bg, m, k1 = m_w.shape
    B = r_hat.shape[0]
    f64, device = r_hat.dtype, r_hat.device
    g = torch.cat([torch.cat([m_w, torch.ones(bg, m, 1, dtype=f64, device=device)], -1),
                   torch.cat([torch.zeros(bg, 1, k1, dtype=f64, device=device),
                              torch.ones(bg, 1, 1, dtype=f64, device=device)], -1)], 1)
    h = torch.cat([r_hat, torch.zeros(B, 1, dtype=f64, device=device)], 1)
    qd = torch.cat([q_w.unsqueeze(-1).expand(B, k1), torch.zeros(B, 1, dtype=f64, device=device)], -1)
    c = torch.zeros(B, k1 + 1, dtype=f64, device=device)
    c[:, -1] = 1.0
    if center is not None:
        c[:, :-1] = -q_w.unsqueeze(-1) * center
    return _ipm(g, h, qd, c, tol, max_iter, has_eps=True)


def _ipm(g, h, qd, c, tol, max_iter, has_eps=False):
    """Batched Mehrotra predictor-corrector for min c.y + 1/2 sum qd y^2 s.t. g y >= h.

    g: [1 or B, p, k]; h: [B, p]; qd, c: [B, k], qd >= 0; has_eps: y's last entry is eps (started above every
    row). Returns (y [B, k], iterations). A sample leaves the working set when its scaled KKT residual (primal,
    dual, gap) is <= tol, or when it stops improving (float64's limit on degenerate instances): then its best
    iterate is kept. Inside, the batch is the last dimension (contiguous vectors for the k x k algebra).
    """
    B, p = h.shape
    k = qd.shape[-1]
    f64, device = h.dtype, h.device
    shared = g.shape[0] == 1
    g = g[0] if shared else g.permute(1, 2, 0).contiguous()  # [p, k] or [p, k, B]
    gg = (g[:, :, None] * g[:, None, :]).reshape(p, k * k).T.contiguous() if shared else None  # rows' outer products
    h, qd, c = h.T.contiguous(), qd.T.contiguous(), c.T.contiguous()
    # Start: y = 0 but eps (if any) above every row; slacks >= 1; duals 1 / p. x = (s, z): [2, p, B].
    y = torch.zeros(k, B, dtype=f64, device=device)
    if has_eps:
        y[-1] = h.clamp(min=0).amax(0) + 1.0
    x = torch.full((2, p, B), 1.0 / p, dtype=f64, device=device)
    x[0] = (_g_mul(g, shared, y) - h).clamp(min=1.0)
    y_best = y.clone()
    best = torch.full((B,), math.inf, dtype=f64, device=device)
    since_best = torch.zeros(B, dtype=torch.long, device=device)
    y_out = torch.empty_like(y)
    merit_out = torch.empty(B, dtype=f64, device=device)
    active = torch.arange(B, device=device)
    inv_h_scale = 1.0 / (1.0 + h.abs())
    inv_c_scale = 1.0 / (1.0 + c.abs())
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - `it` is the iteration count returned
        s, z = x[0], x[1]
        rp = _g_mul(g, shared, y) - s - h
        rd = qd * y + c - _gt_mul(g, shared, z)
        gap = (s * z).sum(0)
        obj = ((0.5 * qd * y + c) * y).sum(0)
        merit = torch.maximum(torch.maximum((rp * inv_h_scale).abs().amax(0), (rd * inv_c_scale).abs().amax(0)),
                              gap / (1.0 + obj.abs()))
        better = merit < best
        y_best = torch.where(better, y, y_best)
        best = torch.where(better, merit, best)
        since_best = torch.where(better, 0, since_best + 1)
        # Done: converged, or stalled at float64's limit on a degenerate instance (then the best iterate is kept).
        done = (best <= tol) | ((best <= _ACCEPT * tol) & ((since_best >= 3) | (merit > 1e6 * best)))
        if done.any():
            y_out[:, active[done]] = y_best[:, done]
            merit_out[active[done]] = best[done]
            keep = ~done
            if not keep.any():
                break
            active, best, since_best, gap = active[keep], best[keep], since_best[keep], gap[keep]
            y, x, h, qd, c, inv_h_scale, inv_c_scale, y_best, rp, rd = (
                t[..., keep] for t in (y, x, h, qd, c, inv_h_scale, inv_c_scale, y_best, rp, rd))
            if not shared:
                g = g[..., keep]
            s, z = x[0], x[1]
        mu = gap / p
        inv_x = x.reciprocal()
        inv_s = inv_x[0]
        w = z * inv_s
        hmat = (gg @ w).view(k, k, -1) if shared else torch.einsum("pkb,plb->klb", g * w[:, None], g)
        hmat.diagonal(dim1=0, dim2=1).add_((qd + 1e-12).T)  # + a tiny proximal term, for flat directions
        chol = _cholesky(hmat) if hmat.shape[-1] >= _VECTOR_CHOLESKY_MIN_BATCH else _cholesky_lapack(hmat)
        dx = torch.empty_like(x)
        # Predictor (affine scaling, r_c = -s z), then Mehrotra's centring + second-order corrector.
        t_aff = torch.addcmul(z, w, rp).neg_()
        _newton(g, shared, chol, rp, rd, w, t_aff, dx)
        alpha = _max_step(inv_x, dx).clamp(max=1.0)
        x_aff = torch.addcmul(x, alpha, dx)
        sigma = ((x_aff[0] * x_aff[1]).sum(0) / gap).clamp(0.0, 1.0) ** 3
        t = torch.addcmul(sigma * mu, dx[0], dx[1], value=-1.0).mul_(inv_s).add_(t_aff)
        dy = _newton(g, shared, chol, rp, rd, w, t, dx)
        if mu.min() < 1e-6:
            # One step of iterative refinement on the unreduced system: near the end the normal matrix is
            # ill-conditioned (some slacks far smaller than others), and its error would stall rd.
            e1 = qd * dy - _gt_mul(g, shared, dx[1]) + rd
            dx_fix = torch.empty_like(dx)
            dy = dy + _newton(g, shared, chol, None, e1, w, None, dx_fix)
            dx += dx_fix
        alpha = (0.99 * _max_step(inv_x, dx)).clamp(max=1.0)
        y = torch.addcmul(y, alpha, dy)
        x = torch.addcmul(x, alpha, dx)
    else:
        y_out[:, active] = y_best
        merit_out[active] = best
    bad = merit_out > _ACCEPT * tol
    if bad.any():
        warnings.warn(f"core QP: {int(bad.sum())} of {B} samples stopped (max_iter = {max_iter} or stalled) with "
                      f"scaled KKT residual up to {float(merit_out.max()):.1e} > {_ACCEPT:.0e} * tol; their credits "
                      f"are feasible with the returned eps but may be suboptimal", RuntimeWarning, stacklevel=3)
    return y_out.T, it


def _g_mul(g, shared, v):  # g v: [p, B] from v [k, B]
    return g @ v if shared else (g * v).sum(1)


def _gt_mul(g, shared, v):  # g^T v: [k, B] from v [p, B]
    return g.T @ v if shared else (g * v[:, None]).sum(0)


def _cholesky(hmat: torch.Tensor) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
    """Cholesky factors of a batch of small SPD matrices [k, k, B], vectorized over B: (L rows, 1 / diag).
    Python loops over the k^2 / 2 entries, each a torch op on B-vectors: for large batches, faster than LAPACK's
    loop over the B matrices.

    A pivot that rounding made tiny (a direction with no curvature left) is replaced by a huge one, so that the
    step has no component along it (the usual modified Cholesky of interior-point codes).
    """
    k = hmat.shape[0]
    rows = [[None] * (i + 1) for i in range(k)]
    inv_diag = []
    for j in range(k):
        d = hmat[j, j]
        for m in range(j):
            d = d - rows[j][m] * rows[j][m]
        d = torch.where(d > 1e-14 * hmat[j, j].clamp(min=1e-300), d, torch.full_like(d, 1e128)).sqrt()
        inv = d.reciprocal()
        rows[j][j] = d
        inv_diag.append(inv)
        for i in range(j + 1, k):
            v = hmat[i, j]
            for m in range(j):
                v = v - rows[i][m] * rows[j][m]
            rows[i][j] = v * inv
    return rows, inv_diag


def _cholesky_lapack(hmat: torch.Tensor) -> torch.Tensor:
    """LAPACK's Cholesky of [k, k, B] (faster than `_cholesky` for small batches), as [B, k, k]; a matrix that
    rounding made indefinite gets its diagonal shifted."""
    hmat = hmat.permute(2, 0, 1)
    chol, info = torch.linalg.cholesky_ex(hmat)
    for shift in (1e-12, 1e-10, 1e-8, 1e-6, 1e-4):
        if not info.any():
            break
        bad = (info > 0).nonzero().squeeze(-1)
        eye = torch.eye(hmat.shape[-1], dtype=hmat.dtype, device=hmat.device)
        fixed = hmat[bad] + (shift * hmat[bad].diagonal(dim1=-2, dim2=-1).amax(-1))[:, None, None] * eye
        chol[bad], info[bad] = torch.linalg.cholesky_ex(fixed)
    return chol


def _chol_solve(chol, b: torch.Tensor) -> torch.Tensor:
    """Solve L L^T x = b for b [k, B] with the factors of `_cholesky` or `_cholesky_lapack`."""
    if isinstance(chol, torch.Tensor):
        return torch.cholesky_solve(b.T.unsqueeze(-1), chol).squeeze(-1).T
    rows, inv_diag = chol
    k = len(rows)
    y = [None] * k
    for i in range(k):
        v = b[i]
        for m in range(i):
            v = v - rows[i][m] * y[m]
        y[i] = v * inv_diag[i]
    x = [None] * k
    for i in range(k - 1, -1, -1):
        v = y[i]
        for m in range(i + 1, k):
            v = v - rows[m][i] * x[m]
        x[i] = v * inv_diag[i]
    return torch.stack(x)


def _newton(g, shared, chol, rp, rd, w, t, dx):
    """Newton step for the residuals rp, rd and complementarity r_c, given t = S^-1 (r_c - Z rp).

    Returns dy and writes (ds, dz) into dx; chol factors g^T W g + diag(qd) (W = Z / S). rp = t = None: zero.
    """
    dy = _chol_solve(chol, -rd if t is None else _gt_mul(g, shared, t) - rd)
    gdy = _g_mul(g, shared, dy)
    if rp is None:
        dx[0] = gdy
        torch.mul(w, gdy, out=dx[1]).neg_()
    else:
        torch.add(gdy, rp, out=dx[0])
        torch.addcmul(t, w, gdy, value=-1.0, out=dx[1])
    return dy


def _max_step(inv_x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Largest alpha >= 0 with x + alpha dx >= 0, per sample (x > 0 given as 1 / x; inf where dx >= 0)."""
    worst = (dx * inv_x).flatten(0, 1).amin(0)
    return torch.where(worst < 0, -1.0 / worst, torch.full_like(worst, math.inf))
