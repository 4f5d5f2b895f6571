"""PPO's clipped surrogate and value losses, the clipped gradient step, and the joint actor update: what every
on-policy method shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from algorithms.blocks.rollout import minibatches

if TYPE_CHECKING:
    from algorithms.blocks.adam import Adam
    from algorithms.blocks.on_policy_config import OnPolicyConfig
    from algorithms.blocks.policy import Policy


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  clip_eps: float) -> torch.Tensor:
    """-E[min(r A, clip(r, 1-eps, 1+eps) A)] with r = pi/pi_old (Schulman et al. 2017, eq. 7)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -torch.minimum(unclipped, clipped).mean()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_eps: float | None = None) -> torch.Tensor:
    """Squared error to the targets; with `clip_eps`, MAPPO's clipped variant (Yu et al. 2022)."""
    error = (values - returns).pow(2)
    if clip_eps is None:
        return 0.5 * error.mean()
    clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
    return 0.5 * torch.maximum(error, (clipped - returns).pow(2)).mean()


def clipped_step(optimizer: Adam, module: torch.nn.Module, loss: torch.Tensor, max_grad_norm: float,
                 **step_args) -> None:
    """One gradient step on `loss` with the gradient norm clipped to `max_grad_norm`."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
    optimizer.step(**step_args)


def ppo_update(policy: Policy, batch: dict[str, torch.Tensor], config: OnPolicyConfig) -> dict[str, float]:
    """Every learner at once: `ppo_epochs` x `num_minibatches` steps on PPO's clipped surrogate with an entropy
    bonus (MAPPO, IPPO: each learner's ratio against its own advantage)."""
    head = policy.net.head
    totals, count = {"policy_loss": 0.0, "entropy": 0.0}, 0
    for mb in minibatches(batch, config.ppo_epochs, config.num_minibatches):
        params = policy.sequence_params(mb)
        entropy = head.entropy(params).mean()
        loss = ppo_clip_loss(head.log_prob(params, mb["actions"]), mb["log_probs"], mb["advantages"], config.clip_eps)
        clipped_step(policy.optimizer, policy.net, loss - config.entropy_coef * entropy, config.max_grad_norm)
        totals["policy_loss"] += loss.item()
        totals["entropy"] += entropy.item()
        count += 1
    return {k: v / count for k, v in totals.items()}
