"""Transition replay for the off-policy family: a ring of time steps of every batched copy, with n-step returns.

Rows are time (one row per `insert`, one entry per copy), so the n steps after a stored transition are the
next n rows of its column: an n-step return is one gather of `[M, n]` entries, no Python loop over samples,
copies or agents. Each row stores the transition t -> t+1 with the view it led to (`next_*`, the
environment's `final_*` view where the episode ended, so a truncated episode bootstraps from its true last
state, HARL's `use_proper_time_limits`).

`sample(batch, n_step, gamma)` draws transitions uniformly (`torch.randint` on the global RNG, which the run
driver checkpoints) and returns, per sample, the discounted sum of the k <= n rewards of its window
(HARL's off-policy buffer `n_step`; ACPO App. N's k-step returns), the view to bootstrap from and the
bootstrap's discount gamma^k. The window stops at the first step that ends the episode (terminated or
truncated) and at the newest stored step; its discount is 0 when its last step terminated (no bootstrap) and
gamma^k otherwise (a truncation, or a window cut by n or by the newest step, bootstraps).
"""

from __future__ import annotations

import torch


class TransitionReplay:
    """`capacity` transitions (rounded up to whole rows of `n_envs`), one tensor `[rows, n_envs, *shape]` per field."""

    def __init__(self, capacity: int, n_envs: int, fields: dict[str, tuple[tuple[int, ...], torch.dtype]],
                 device: torch.device):
        self.rows = -(-capacity // n_envs)
        self.n_envs = n_envs
        needed = {"reward", "terminated", "done"}
        if not needed <= fields.keys():
            raise ValueError(f"a transition replay needs the fields {sorted(needed)}; got {sorted(fields)}")
        self.data = {name: torch.zeros(self.rows, n_envs, *shape, dtype=dtype, device=device)
                     for name, (shape, dtype) in fields.items()}
        self.size = 0  # rows stored
        self.next = 0  # row the next insert goes to

    def insert(self, step: dict[str, torch.Tensor]) -> None:
        """One time step of every copy: each field `[n_envs, *shape]`."""
        for name, tensor in self.data.items():
            tensor[self.next] = step[name]
        self.next = (self.next + 1) % self.rows
        self.size = min(self.size + 1, self.rows)

    def __len__(self) -> int:
        return self.size * self.n_envs

    def sample(self, batch_size: int, n_step: int, gamma: float) -> dict[str, torch.Tensor]:
        """`batch_size` transitions, uniformly; each field at the sampled step, `next_*` fields at the window's
        last step, and `reward` (the window's discounted return), `discount` (gamma^k, 0 after a termination),
        `steps` (k)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        device = self.data["reward"].device
        index = torch.randint(self.size * self.n_envs, (batch_size,)).to(device)
        row, col = index // self.n_envs, index % self.n_envs  # row: age order, 0 = oldest stored
        oldest = (self.next - self.size) % self.rows
        t = (oldest + row) % self.rows
        offsets = torch.arange(n_step, device=device)
        window = (t.unsqueeze(1) + offsets) % self.rows  # [M, n]
        cols = col.unsqueeze(1)
        done = self.data["done"][window, cols]
        stored = offsets < (self.size - row).unsqueeze(1)  # steps up to the newest stored one
        ended_before = (done.long().cumsum(1) - done.long()) > 0  # an earlier step of the window ended the episode
        counts = stored & ~ended_before  # a prefix of the window
        k = counts.sum(1)  # >= 1: the sampled step itself always counts
        rewards = self.data["reward"][window, cols]
        powers = gamma ** offsets.to(rewards.dtype)
        last = (t + k - 1) % self.rows
        continues = (~self.data["terminated"][last, col]).to(rewards.dtype)
        # One flat index per sample into each field's [rows * n_envs, ...] view: index_select, cheaper than
        # indexing with a (row, column) pair of index tensors; the same entries.
        at, at_last = t * self.n_envs + col, last * self.n_envs + col
        batch = {name: tensor.flatten(0, 1).index_select(0, at_last if name.startswith("next_") else at)
                 for name, tensor in self.data.items()}
        batch["reward"] = (rewards * powers * counts.to(rewards.dtype)).sum(1)
        batch["discount"] = gamma ** k.to(rewards.dtype) * continues
        batch["steps"] = k
        return batch

    def state_dict(self) -> dict:
        # Rows fill 0, 1, ... before the ring wraps: the first `size` rows are the ones in use. A full ring (a long
        # run's steady state, ~2 GB on MaMuJoCo at 1M transitions) is handed over as is, not copied: the driver
        # writes the checkpoint before the next step changes it.
        def used(tensor):
            return tensor if self.size == self.rows else tensor[:self.size].clone()

        return {"size": self.size, "next": self.next, "data": {name: used(t) for name, t in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.next = int(state["size"]), int(state["next"])
        for name, tensor in self.data.items():
            tensor.zero_()
            tensor[:self.size] = state["data"][name].to(tensor.device)
