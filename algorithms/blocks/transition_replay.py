"""Transition replay for the off-policy family: a ring of time steps of every batched copy, with n-step returns.

Rows are time (one row per `insert`, one entry per copy), so the n steps after a stored transition are the
next n rows of its column: an n-step return is one gather of `[M, n]` entries, no Python loop over samples,
copies or agents. Each row stores the transition t -> t+1 with the view it led to (`next_*`, the
environment's `final_*` view where the episode ended, so a truncated episode bootstraps from its true last
state, HARL's `use_proper_time_limits`).

`sample(batch, n_step, gamma)` draws transitions uniformly (from the replay's own random stream, in its
checkpoint) and returns, per sample, the discounted sum of the k <= n rewards of its window
(HARL's off-policy buffer `n_step`; ACPO App. N's k-step returns), the view to bootstrap from and the
bootstrap's discount gamma^k. The window stops at the first step that ends the episode (terminated or
truncated) and at the newest stored step; its discount is 0 when its last step terminated (no bootstrap) and
gamma^k otherwise (a truncation, or a window cut by n or by the newest step, bootstraps).

Seed batches (docs/architecture.md): with `n_seeds` K the replay is K rings, seed-major (rows k * R .. (k + 1) * R - 1
are seed k's, R rows each), filled in step (every seed inserts a row at every step, so they share `size` and
`next`), each sampled by its own stream (`SeedStreams`); a sample is K blocks of transitions, block k from seed
k's ring, `[K * batch, ...]`. Everything after the draw is gathers and elementwise arithmetic (the window's return
summed step by step, the discount looked up in a table of gamma^k), so seed k's block is what its solo run samples.
"""

from __future__ import annotations

import torch

from algorithms.blocks.seed_streams import SeedStreams


class TransitionReplay:
    """`capacity` transitions per seed (rounded up to whole rows of `n_envs`), one tensor `[K * rows, n_envs, *shape]`
    per field."""

    def __init__(self, capacity: int, n_envs: int, fields: dict[str, tuple[tuple[int, ...], torch.dtype]],
                 device: torch.device, n_seeds: int = 1):
        self.rows = -(-capacity // n_envs)
        self.n_envs, self.n_seeds = n_envs, n_seeds
        needed = {"reward", "terminated", "done"}
        if not needed <= fields.keys():
            raise ValueError(f"a transition replay needs the fields {sorted(needed)}; got {sorted(fields)}")
        self.data = {name: torch.zeros(n_seeds * self.rows, n_envs, *shape, dtype=dtype, device=device)
                     for name, (shape, dtype) in fields.items()}
        self.size = 0  # rows stored (per seed)
        self.next = 0  # row the next insert goes to (in every seed's ring)
        self.streams = SeedStreams(n_seeds, torch.device("cpu"))  # which transitions each seed samples

    def _rings(self, tensor: torch.Tensor) -> torch.Tensor:
        """`[K, rows, n_envs, ...]`: the seeds' rings (a view)."""
        return tensor.view(self.n_seeds, self.rows, *tensor.shape[1:])

    def insert(self, step: dict[str, torch.Tensor]) -> None:
        """One time step of every copy: each field `[K * n_envs, *shape]`, seed-major."""
        for name, tensor in self.data.items():
            self._rings(tensor)[:, self.next] = step[name].view(self.n_seeds, self.n_envs, *tensor.shape[2:])
        self.next = (self.next + 1) % self.rows
        self.size = min(self.size + 1, self.rows)

    def __len__(self) -> int:
        return self.size * self.n_envs  # per seed

    def sample(self, batch_size: int, n_step: int, gamma: float) -> dict[str, torch.Tensor]:
        """`batch_size` transitions per seed, uniformly, `[K * batch_size, ...]` seed-major; each field at the sampled
        step, `next_*` fields at the window's last step, and `reward` (the window's discounted return), `discount`
        (gamma^k, 0 after a termination), `steps` (k)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        device = self.data["reward"].device
        index = torch.stack([torch.randint(self.size * self.n_envs, (batch_size,), generator=generator, device="cpu")
                             for generator in self.streams.generators]).to(device)  # [K, M], each seed's own draw
        row, col = index // self.n_envs, index % self.n_envs  # row: age order, 0 = oldest stored
        oldest = (self.next - self.size) % self.rows
        t = (oldest + row) % self.rows
        offsets = torch.arange(n_step, device=device)
        window = (t.unsqueeze(-1) + offsets) % self.rows  # [K, M, n]
        ring = (torch.arange(self.n_seeds, device=device) * self.rows).view(-1, 1)  # each seed's first row
        cols = col.unsqueeze(-1)
        entries = ((ring.unsqueeze(-1) + window) * self.n_envs + cols).flatten()  # into each field's flat entries
        rewards, done = (self.data[name].view(-1)[entries].view(window.shape) for name in ("reward", "done"))
        stored = offsets < (self.size - row).unsqueeze(-1)  # steps up to the newest stored one
        ended_before = (done.long().cumsum(-1) - done.long()) > 0  # an earlier step of the window ended the episode
        counts = stored & ~ended_before  # a prefix of the window
        k = counts.sum(-1)  # >= 1: the sampled step itself always counts
        powers = gamma ** torch.arange(n_step + 1, device=device, dtype=rewards.dtype)  # gamma^0 .. gamma^n
        last = (t + k - 1) % self.rows
        # One flat index per sample into each field's [K * rows * n_envs, ...] view: index_select, cheaper than
        # indexing with (row, column) index tensors; the same entries.
        at = ((ring + t) * self.n_envs + col).flatten()
        at_last = ((ring + last) * self.n_envs + col).flatten()
        continues = (~self.data["terminated"].view(-1)[at_last]).to(rewards.dtype)
        batch = {name: tensor.flatten(0, 1).index_select(0, at_last if name.startswith("next_") else at)
                 for name, tensor in self.data.items()}
        reward = torch.zeros_like(rewards[..., 0])
        for j in range(n_step):  # the window's discounted sum, step by step (elementwise: the same in any batch)
            reward = reward + rewards[..., j] * powers[j] * counts[..., j].to(rewards.dtype)
        batch["reward"] = reward.flatten()
        batch["discount"] = powers[k.flatten()] * continues
        batch["steps"] = k.flatten()
        return batch

    def state_dict(self) -> dict:
        # Rows fill 0, 1, ... before the ring wraps: the first `size` rows of each seed's ring are the ones in use.
        # A full ring (a long run's steady state, ~2 GB on MaMuJoCo at 1M transitions) is handed over as is, not
        # copied: the driver writes the checkpoint before the next step changes it. Seed-major either way.
        def used(tensor):
            if self.size == self.rows:
                return tensor
            return self._rings(tensor)[:, :self.size].reshape(self.n_seeds * self.size, *tensor.shape[1:])

        return {"size": self.size, "next": self.next, "data": {name: used(t) for name, t in self.data.items()},
                "streams": self.streams.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.next = int(state["size"]), int(state["next"])
        self.streams.load_state_dict(state["streams"])
        for name, tensor in self.data.items():
            tensor.zero_()
            stored = state["data"][name].to(tensor.device)
            self._rings(tensor)[:, :self.size] = stored.view(self.n_seeds, self.size, *tensor.shape[1:])
