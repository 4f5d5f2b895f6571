"""Epsilon-greedy exploration with linear annealing, restricted to the available actions.

PyMARL's `DecayThenFlatSchedule` (linear) and `EpsilonGreedyActionSelector`: with probability epsilon an
agent takes an action drawn uniformly from its available ones, otherwise its greedy one. LAN App. B:
epsilon from 1 to 0.05 over the first 50k timesteps.
"""

from __future__ import annotations

import torch

from algorithms.blocks.q_targets import masked_argmax, with_fallback


def linear_epsilon(env_steps: int, start: float, finish: float, anneal_steps: int) -> float:
    """Epsilon after `env_steps` environment steps: linear from `start` to `finish`, then flat."""
    if env_steps >= anneal_steps:
        return finish
    return start + env_steps / anneal_steps * (finish - start)


def epsilon_greedy(q: torch.Tensor, avail: torch.Tensor | None, epsilon: float) -> torch.Tensor:
    """Actions `[..., N]` from `q [..., N, A]`: uniform over the available actions with probability `epsilon`,
    else the greedy available action. Draws from the global torch RNG (checkpointed by the driver)."""
    greedy = masked_argmax(q, avail)
    if epsilon <= 0.0:
        return greedy
    # Uniform over the available actions: the argmax of uniform noise, unavailable actions pushed below it
    # (one rand and one argmax; torch.multinomial costs ~5x more per step).
    noise = torch.rand(q.shape, device=q.device)
    if avail is not None:  # (without a mask every action is available: nothing to push down)
        noise.masked_fill_(~with_fallback(avail, q), -1.0)
    uniform = noise.argmax(-1)
    explore = torch.rand(greedy.shape, device=q.device) < epsilon
    return torch.where(explore, uniform, greedy)
