"""Epsilon-greedy exploration with linear annealing, restricted to the available actions.

PyMARL's `DecayThenFlatSchedule` (linear) and `EpsilonGreedyActionSelector`: with probability epsilon an
agent takes an action drawn uniformly from its available ones, otherwise its greedy one. LAN App. B:
epsilon from 1 to 0.05 over the first 50k timesteps.

The learner draws its uniforms from its own streams (`exploration_uniforms`: one generator per seed of a seed batch,
docs/architecture.md), each seed with its own epsilon (its own step count), and only for the seeds that act.
"""

from __future__ import annotations

import torch

from algorithms.blocks.q_targets import masked_argmax, with_fallback
from algorithms.blocks.seed_streams import SeedStreams


def linear_epsilon(env_steps: int, start: float, finish: float, anneal_steps: int) -> float:
    """Epsilon after `env_steps` environment steps: linear from `start` to `finish`, then flat."""
    if env_steps >= anneal_steps:
        return finish
    return start + env_steps / anneal_steps * (finish - start)


def linear_epsilons(env_steps: torch.Tensor, start: float, finish: float, anneal_steps: int) -> torch.Tensor:
    """`linear_epsilon` of every seed's step count `env_steps [K]` (float64, `[K]`). In Python floats (float64,
    the same operations in the same order, so the same values) then one tensor: acting asks for it every env step,
    and the K scalars cost less than the handful of tensor ops a vectorised ramp dispatches."""
    return torch.tensor([linear_epsilon(steps, start, finish, anneal_steps) for steps in env_steps.tolist()],
                        dtype=torch.float64, device=env_steps.device)


def exploration_uniforms(streams: SeedStreams, n: int, draw: list[bool]) -> torch.Tensor:
    """`[K, n]` uniforms in [0, 1): row k from seed k's stream where `draw[k]`, zeros elsewhere (nothing drawn, so a
    seed that does not act leaves its stream where its solo run has it)."""
    out = torch.zeros(streams.n_seeds, n, device=streams.device)
    for row, generator, on in zip(out, streams.generators, draw, strict=True):
        if on:
            row.uniform_(generator=generator)
    return out


def epsilon_greedy(q: torch.Tensor, avail: torch.Tensor | None, epsilon: float | torch.Tensor,
                   uniforms: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Actions `[..., N]` from `q [..., N, A]`: uniform over the available actions with probability `epsilon`,
    else the greedy available action. `uniforms` (noise shaped like `q`, one more shaped like the actions) come from
    the caller's streams, `epsilon` then broadcasting over the actions (a seed batch: `[K, 1, 1]`, seed k's own);
    without them, drawn from the global torch RNG."""
    greedy = masked_argmax(q, avail)
    if uniforms is None:
        if epsilon <= 0.0:
            return greedy
        uniforms = torch.rand(q.shape, device=q.device), torch.rand(greedy.shape, device=q.device)
    noise, chance = uniforms
    # Uniform over the available actions: the argmax of uniform noise, unavailable actions pushed below it
    # (one rand and one argmax; torch.multinomial costs ~5x more per step).
    if avail is not None:  # (without a mask every action is available: nothing to push down)
        noise = noise.masked_fill(~with_fallback(avail, q), -1.0)
    return torch.where(chance < epsilon, noise.argmax(-1), greedy)
