"""The trust-region step (TRPO, Schulman et al. 2015, App. C): natural-gradient direction by conjugate
gradient on Fisher-vector products, scaled to the KL radius, then a backtracking line search.

Written here rather than taken from a library: no maintained library exposes TRPO's step apart
from its own training loop, and HATRPO needs it on one agent's slice of batched parameters. In a seed batch it
runs on `[K, P]`, one row of parameters per seed: every row has its own CG step sizes, step scale and line search,
run in lockstep over the fixed iteration counts, with per-row masks where a lone run would `break` or `return`, and
reductions only along each row, so each seed steps as it would alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Inner products along the last dimension: one per system (per seed of a seed batch), each along its own row."""
    return (a * b).sum(-1)


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iterations: int = 10,
                       tolerance: float = 1e-10) -> torch.Tensor:
    """Approximately solve `A x = b` for symmetric positive-definite `A` given as `matvec`.

    `b [..., P]`: each leading index (a seed of a seed batch) is its own system with its own step sizes. They run
    in lockstep, `iterations` products at most; a system whose residual falls below `tolerance` stops there (its x
    kept, as a lone run's `break`) while the others go on."""
    x = torch.zeros_like(b)
    residual, direction = b.clone(), b.clone()
    residual_sq = dot(residual, residual)
    active = torch.ones_like(residual_sq, dtype=torch.bool)
    for _ in range(iterations):
        a_direction = matvec(direction)
        alpha = (residual_sq / dot(direction, a_direction)).unsqueeze(-1)
        moving = active.unsqueeze(-1)
        x = torch.where(moving, x + alpha * direction, x)
        residual = torch.where(moving, residual - alpha * a_direction, residual)
        new_residual_sq = dot(residual, residual)
        active = active & ~(new_residual_sq < tolerance)
        if not active.any():
            break
        beta = (new_residual_sq / residual_sq).unsqueeze(-1)
        direction = torch.where(active.unsqueeze(-1), residual + beta * direction, direction)
        residual_sq = torch.where(active, new_residual_sq, residual_sq)
    return x


def trust_region_step(
    surrogate: Callable[[], torch.Tensor],
    kl: Callable[[], torch.Tensor],
    get_flat: Callable[[], torch.Tensor],
    set_flat: Callable[[torch.Tensor], None],
    flat_grad: Callable[..., torch.Tensor],
    max_kl: float,
    damping: float = 0.1,
    cg_iterations: int = 10,
    line_search_steps: int = 10,
    accept_ratio: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Maximize `surrogate()` subject to `kl() <= max_kl` over the parameters `get_flat`/`set_flat` expose.

    `get_flat()` is `[..., P]`, one row of parameters per problem (per seed of a seed batch, `[K, P]`; `[P]`
    alone); `surrogate()` and `kl()` are `[...]`, one value per row. `flat_grad(y, create_graph=False,
    retain_graph=None)` is the gradient of `y.sum()` with respect to those parameters, `[..., P]`: rows do not
    share parameters, so row k's gradient is that of `y[k]` alone. A candidate is accepted if its KL is within
    `max_kl`, it improves the surrogate, and the improvement is at least `accept_ratio` of the linear prediction;
    each rejection halves the step. Without an accepted candidate a row's parameters are left as they were.
    Every row has its own direction, step size and line search, run in lockstep; returns per-row statistics
    (`policy_loss` is minus the surrogate where the step leaves the parameters).
    """
    old = get_flat().clone()
    loss = surrogate()
    gradient = flat_grad(loss).detach()

    # The parameters stay put during conjugate gradient: build the KL's gradient graph once and
    # back-propagate each product through it (not a fresh forward pass per CG iteration).
    grad_kl = flat_grad(kl(), create_graph=True)

    def fisher_vector_product(vector: torch.Tensor) -> torch.Tensor:
        return flat_grad(dot(grad_kl, vector), retain_graph=True).detach() + damping * vector

    direction = conjugate_gradient(fisher_vector_product, gradient, cg_iterations)
    quadratic = dot(direction, fisher_vector_product(direction))
    valid = torch.isfinite(quadratic) & (quadratic > 0)  # else no step for that row
    scale = torch.where(valid, torch.sqrt(2 * max_kl / quadratic), 0.0)  # 0.5 s^T F s = max_kl
    full_step = torch.where(valid.unsqueeze(-1), direction * scale.unsqueeze(-1), 0.0)
    # The acceptance test in double precision, as Python floats computed it when this step ran one row at a time.
    expected = dot(gradient, full_step).double()
    loss = loss.detach()
    accepted = torch.zeros_like(valid)
    zeros = torch.zeros_like(loss)
    divergence_at, improvement_at, fraction_at = zeros, zeros, zeros
    settled = ~valid  # accepted or without a step: their parameters stay as they are
    flat, fraction = old, 1.0
    with torch.no_grad():
        for _ in range(line_search_steps):
            if settled.all():
                break
            flat = torch.where(settled.unsqueeze(-1), flat, old + fraction * full_step)
            set_flat(flat)
            improvement, divergence = surrogate() - loss, kl()
            ok = ~settled & (divergence.double() <= max_kl) & (improvement > 0) & \
                (improvement.double() / (fraction * expected) > accept_ratio)
            divergence_at = torch.where(ok, divergence, divergence_at)
            improvement_at = torch.where(ok, improvement, improvement_at)
            fraction_at = torch.where(ok, fraction, fraction_at)
            accepted, settled = accepted | ok, settled | ok
            fraction *= 0.5
        if not accepted.all():
            set_flat(torch.where(accepted.unsqueeze(-1), flat, old))
    return {"accepted": accepted.to(loss.dtype), "kl": divergence_at, "improvement": improvement_at,
            "step_fraction": fraction_at, "policy_loss": -(loss + improvement_at)}
