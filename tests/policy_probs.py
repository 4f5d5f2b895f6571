"""What an on-policy learner's policy is at a timestep, for behaviour tests (no production code needs it)."""

import torch


@torch.no_grad()
def policy_probs(agent, timestep) -> torch.Tensor:
    """pi(. | x_l) of every learner l at `timestep` from fresh memory, `[B, L, n_actions]`: the network re-run on
    the inputs a greedy step decided on (for ACPO: each agent's own input with the greedy beliefs it acted on)."""
    seeds = getattr(agent, "n_seeds", None)  # a seed-batched method: tensors [K, B, ...] (K = 1 here)
    if seeds is not None:
        from environments.seed_batch import seed_view

        timestep = seed_view(timestep, seeds)
    memory = agent.initial_memory(timestep.done.shape[-1])
    step = agent.policy_step(timestep, memory, deterministic=True)
    features, _ = agent.actor.net.torso(step.actor_in, memory, timestep.done)
    probs = agent.actor.net.head.params(features, step.avail).exp()
    return probs if seeds is None else probs.flatten(0, 1)
