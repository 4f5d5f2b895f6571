"""The trust-region step (TRPO, Schulman et al. 2015, App. C): natural-gradient direction by conjugate
gradient on Fisher-vector products, scaled to the KL radius, then a backtracking line search.

Written here rather than taken from a library: no maintained library exposes TRPO's step apart
from its own training loop, and HATRPO needs it on one agent's slice of batched parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iterations: int = 10,
                       tolerance: float = 1e-10) -> torch.Tensor:
    """Approximately solve `A x = b` for symmetric positive-definite `A` given as `matvec`."""
    x = torch.zeros_like(b)
    residual, direction = b.clone(), b.clone()
    residual_sq = residual @ residual
    for _ in range(iterations):
        a_direction = matvec(direction)
        alpha = residual_sq / (direction @ a_direction)
        x += alpha * direction
        residual -= alpha * a_direction
        new_residual_sq = residual @ residual
        if new_residual_sq < tolerance:
            break
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
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
) -> dict[str, float]:
    """Maximize `surrogate()` subject to `kl() <= max_kl` over the parameters `get_flat`/`set_flat` expose.

    `flat_grad(y, create_graph=False, retain_graph=None)` is the gradient of scalar `y` with respect to
    those parameters, flattened. A candidate is accepted if its KL is within `max_kl`, it improves the
    surrogate, and the improvement is at least `accept_ratio` of the linear prediction; each rejection
    halves the step.
    Without an accepted candidate the parameters are left as they were.
    """
    old = get_flat().clone()
    loss = surrogate()
    gradient = flat_grad(loss).detach()

    # The parameters stay put during conjugate gradient: build the KL's gradient graph once and
    # back-propagate each product through it (not a fresh forward pass per CG iteration).
    grad_kl = flat_grad(kl(), create_graph=True)

    def fisher_vector_product(vector: torch.Tensor) -> torch.Tensor:
        return flat_grad(grad_kl @ vector, retain_graph=True).detach() + damping * vector

    direction = conjugate_gradient(fisher_vector_product, gradient, cg_iterations)
    quadratic = direction @ fisher_vector_product(direction)
    if not torch.isfinite(quadratic) or quadratic <= 0:
        return {"accepted": 0.0, "kl": 0.0, "improvement": 0.0, "step_fraction": 0.0}
    full_step = direction * torch.sqrt(2 * max_kl / quadratic)  # 0.5 s^T F s = max_kl
    expected = gradient @ full_step
    fraction = 1.0
    with torch.no_grad():
        for _ in range(line_search_steps):
            set_flat(old + fraction * full_step)
            improvement, divergence = (surrogate() - loss).item(), kl().item()
            if divergence <= max_kl and improvement > 0 and improvement / (fraction * expected.item()) > accept_ratio:
                return {"accepted": 1.0, "kl": divergence, "improvement": improvement, "step_fraction": fraction}
            fraction *= 0.5
        set_flat(old)
    return {"accepted": 0.0, "kl": 0.0, "improvement": 0.0, "step_fraction": 0.0}
