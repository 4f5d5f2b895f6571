"""A seed batch's state is its seeds' states stacked (docs/architecture.md, "Seed batches").

The rule every seed-batched algorithm's state_dict follows: a tensor with a first dimension is seed-major (K equal
blocks, block k is seed k's), anything else (0-d tensors such as Adam's step, numbers, strings) is the same for every
seed. So a batch's state slices into the solo runs' states and K solo states stack into a batch's. A part whose
seeds' states differ in shape (a replay buffer's packed episodes) holds them as a list under the key `per_seed`, entry
k seed k's. A part the same for every seed whatever its shape (a game's exact model, an exact planner's tables) sits
under the key `shared`: neither sliced nor stacked (stacking checks that the seeds agree). A merged seed batch's
environment (environments/seed_batch.py) slices and stacks its per-copy state by the same rule.
"""

from __future__ import annotations

import torch

PER_SEED = "per_seed"
SHARED = "shared"


def _identical(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def seed_slice(state, k: int, n_seeds: int):
    """Seed k's part of a batch's state: what its solo run's state_dict would hold."""
    if isinstance(state, dict):
        return {key: [value[k]] if key == PER_SEED else value if key == SHARED else seed_slice(value, k, n_seeds)
                for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(seed_slice(value, k, n_seeds) for value in state)
    if isinstance(state, torch.Tensor) and state.dim() > 0:
        if state.shape[0] % n_seeds:
            raise ValueError(f"a batch state's tensor {tuple(state.shape)} is not seed-major over {n_seeds} seeds")
        return state.chunk(n_seeds)[k].clone()
    return state


def seed_stack(states: list):
    """The batch state of K seeds' states (one seed: its state)."""
    if len(states) == 1:
        return states[0]
    first = states[0]
    if isinstance(first, dict):
        if SHARED in first and not all(_identical(first[SHARED], s[SHARED]) for s in states[1:]):
            raise ValueError("the seeds' shared states differ (they were not written by one batch or config)")
        return {key: [entry for s in states for entry in s[key]] if key == PER_SEED
                else first[key] if key == SHARED else seed_stack([s[key] for s in states]) for key in first}
    if isinstance(first, list | tuple):
        return type(first)(seed_stack([s[i] for s in states]) for i in range(len(first)))
    if isinstance(first, torch.Tensor) and first.dim() > 0:
        return torch.cat(states)
    return first
