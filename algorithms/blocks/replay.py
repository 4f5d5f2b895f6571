"""Episode replay for the value-based family: whole padded episodes, stored as tensors.

PyMARL's episode buffer (Rashid et al. 2018; LAN App. B: "a replay buffer of 5k episodes ... we
sample a batch of 32 episodes"): an episode is the unit of storage and of sampling, so recurrent
agent networks can be unrolled from the episode's first step. Every field is one preallocated tensor
`[capacity, episode_limit + 1, ...]`; an episode shorter than the limit is padded, and `filled[t]`
marks the transitions that happened. Step `T` (one past the last transition) holds the observation,
state and available actions the episode ended on, so a truncated episode can bootstrap from them.

`EpisodeBuffer.sample` draws distinct episodes uniformly (PyMARL: `np.random.choice(replace=False)`)
from the global torch RNG, which the run driver checkpoints; `state_dict` holds the stored episodes,
so a resumed run samples exactly what an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from environments.base import EnvSpec


@dataclass(frozen=True)
class Field:
    shape: tuple[int, ...]  # per time step
    dtype: torch.dtype


def episode_fields(spec: EnvSpec) -> dict[str, Field]:
    """What one episode of `spec` stores per step (`t = 0..T`; transitions use `t < T`)."""
    n, n_actions = spec.n_agents, spec.n_actions
    return {
        "obs": Field((n, spec.obs_dim), torch.float32),
        "state": Field((spec.state_dim,), torch.float32),
        "avail": Field((n, n_actions), torch.bool),
        "actions": Field((n,), torch.long),
        "reward": Field((), torch.float32),  # team reward of the transition t -> t+1
        "terminated": Field((), torch.bool),  # t+1 is terminal (no bootstrap); a truncation is not
        "filled": Field((), torch.bool),  # transition t happened (the mask of every loss)
    }


class EpisodeStore:
    """`n` episode slots of `length` steps each, one tensor per field."""

    def __init__(self, n: int, length: int, fields: dict[str, Field], device: torch.device):
        self.fields = fields
        self.data = {name: torch.zeros(n, length, *f.shape, dtype=f.dtype, device=device)
                     for name, f in fields.items()}

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.data[name]


class EpisodeBuffer(EpisodeStore):
    """A ring of `capacity` episodes; the oldest is overwritten first."""

    def __init__(self, capacity: int, spec: EnvSpec, device: torch.device):
        super().__init__(capacity, spec.episode_limit + 1, episode_fields(spec), device)
        self.capacity = capacity
        self.size = 0  # episodes stored
        self.next = 0  # slot the next episode goes to

    def insert(self, episodes: dict[str, torch.Tensor]) -> None:
        """Store K finished episodes, each field `[K, T + 1, ...]` (K may exceed the capacity: the last ones win)."""
        k = episodes["filled"].shape[0]
        if k == 0:
            return
        slots = (self.next + torch.arange(k, device=episodes["filled"].device)) % self.capacity
        if k > self.capacity:  # only the last `capacity` survive; writing them alone keeps the slots distinct
            slots, episodes = slots[-self.capacity:], {n: v[-self.capacity:] for n, v in episodes.items()}
        for name, tensor in self.data.items():
            tensor[slots] = episodes[name]
        self.next = (self.next + k) % self.capacity
        self.size = min(self.size + k, self.capacity)

    def can_sample(self, batch_size: int) -> bool:
        return self.size >= batch_size

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """`batch_size` distinct episodes drawn uniformly, time cut after the longest one's last step.

        Every field is `[batch_size, L + 1, ...]` with L the longest episode's length in the batch."""
        if not self.can_sample(batch_size):
            raise ValueError(f"cannot sample {batch_size} episodes from a buffer holding {self.size}")
        index = torch.randperm(self.size)[:batch_size].to(self.data["filled"].device)
        longest = int(self.data["filled"][index].sum(1).max())
        return {name: tensor[index, :longest + 1] for name, tensor in self.data.items()}

    def _steps_in_use(self) -> torch.Tensor:
        """`[size, T + 1]`: the steps an episode uses, its transitions and the view it ended on (the rest is zeros)."""
        lengths = self.data["filled"][:self.size].sum(1, keepdim=True)
        return torch.arange(self.data["filled"].shape[1], device=lengths.device) <= lengths

    def state_dict(self) -> dict:
        # Only the slots and steps in use, packed: a young buffer, or short episodes padded to a long limit (SMAC),
        # checkpoint at the size of what was played.
        used = self._steps_in_use()
        return {"size": self.size, "next": self.next, "lengths": self.data["filled"][:self.size].sum(1),
                "data": {name: tensor[:self.size][used] for name, tensor in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.next = int(state["size"]), int(state["next"])
        for tensor in self.data.values():
            tensor.zero_()
        lengths = state["lengths"].to(self.data["filled"].device)
        self.data["filled"][:self.size] = torch.arange(self.data["filled"].shape[1], device=lengths.device) \
            < lengths.unsqueeze(1)
        used = self._steps_in_use()
        for name, tensor in self.data.items():
            tensor[:self.size][used] = state["data"][name].to(tensor.device)
