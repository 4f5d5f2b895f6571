"""PPO's clipped surrogate and value losses, the clipped gradient step, and the joint actor update: what every
on-policy method shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from algorithms.blocks.rollout import minibatches, seed_mean

ACTOR_FIELDS = ("actor_in", "avail", "actions", "log_probs", "advantages", "starts", "actor_memory")
CRITIC_FIELDS = ("critic_in", "values", "returns", "starts", "critic_memory")

if TYPE_CHECKING:
    from algorithms.blocks.adam import Adam
    from algorithms.blocks.on_policy_config import OnPolicyConfig
    from algorithms.blocks.policy import Policy


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  clip_eps: float, n_seeds: int | None = None) -> torch.Tensor:
    """-E[min(r A, clip(r, 1-eps, 1+eps) A)] with r = pi/pi_old (Schulman et al. 2017, eq. 7); `[K]`, each seed's
    own expectation, in a seed batch (`n_seeds`, see `seed_mean`)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -seed_mean(torch.minimum(unclipped, clipped), n_seeds)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_eps: float | None = None, n_seeds: int | None = None) -> torch.Tensor:
    """Squared error to the targets; with `clip_eps`, MAPPO's clipped variant (Yu et al. 2022). Per seed in a seed
    batch (`n_seeds`)."""
    error = (values - returns).pow(2)
    if clip_eps is None:
        return 0.5 * seed_mean(error, n_seeds)
    clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
    return 0.5 * seed_mean(torch.maximum(error, (clipped - returns).pow(2)), n_seeds)


def clip_grad_norm_per_seed(parameters, max_norm: float, n_seeds: int) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` for each seed of a seed batch on its own: every parameter's first
    dimension is seed-major (networks.AgentLinear), so seed k's gradient is the k-th block of each, its norm is
    taken over those blocks alone and only they are scaled (a global norm would let one seed's large gradient
    shrink the others' steps). Returns the seeds' norms before clipping, `[K]`."""
    grads = [p.grad.view(n_seeds, -1) for p in parameters if p.grad is not None]
    # [K, P] then a reduction along each seed's contiguous row: every seed sums in the order its solo run does
    norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dim=1) for g in grads], dim=1), dim=1)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0).unsqueeze(1)  # torch's clip coefficient, per seed
    for g in grads:
        g.mul_(scale)
    return norms


def clipped_step(optimizer: Adam, module: torch.nn.Module, loss: torch.Tensor, max_grad_norm: float,
                 n_seeds: int | None = None, **step_args) -> None:
    """One gradient step on `loss` with the gradient norm clipped to `max_grad_norm`. In a seed batch
    (`n_seeds`), `loss` is `[K]`, one per seed: their sum is differentiated (seed k's weights get exactly the
    gradient of seed k's loss) and each seed's gradient is clipped on its own."""
    optimizer.zero_grad()
    if n_seeds is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
    else:
        loss.sum().backward()
        clip_grad_norm_per_seed(module.parameters(), max_grad_norm, n_seeds)
    optimizer.step(**step_args)


def ppo_update(policy: Policy, batch: dict[str, torch.Tensor], config: OnPolicyConfig) -> dict[str, float]:
    """Every learner at once: `ppo_epochs` x `num_minibatches` steps on PPO's clipped surrogate with an entropy
    bonus (MAPPO, IPPO: each learner's ratio against its own advantage). In a seed batch the statistics are
    lists, one value per seed."""
    head, seeds = policy.net.head, policy.n_seeds
    totals, count = {"policy_loss": 0.0, "entropy": 0.0}, 0
    actor_batch = {k: v for k, v in batch.items() if k in ACTOR_FIELDS}  # only what the actors read is shuffled
    for mb in minibatches(actor_batch, config.ppo_epochs, config.num_minibatches, policy.streams):
        params = policy.sequence_params(mb)
        entropy = seed_mean(head.entropy(params), seeds)
        loss = ppo_clip_loss(head.log_prob(params, mb["actions"]), mb["log_probs"], mb["advantages"], config.clip_eps,
                             seeds)
        clipped_step(policy.optimizer, policy.net, loss - config.entropy_coef * entropy, config.max_grad_norm,
                     seeds)
        totals["policy_loss"] += statistic(loss, seeds)
        totals["entropy"] += statistic(entropy, seeds)
        count += 1
    return {k: v / count if seeds is None else (v / count).tolist() for k, v in totals.items()}


def statistic(value: torch.Tensor, n_seeds: int | None) -> float | torch.Tensor:
    """A loss as it is summed for the report: a float, or in a seed batch the `[K]` tensor (synced once, by the
    `.tolist()` at the end of the update, not once per minibatch)."""
    return value.item() if n_seeds is None else value.detach()
