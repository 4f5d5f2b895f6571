"""Episode replay for the value-based family: whole padded episodes, stored as tensors.

PyMARL's episode buffer (Rashid et al. 2018; LAN App. B: "a replay buffer of 5k episodes ... we
sample a batch of 32 episodes"): an episode is the unit of storage and of sampling, so recurrent
agent networks can be unrolled from the episode's first step. Every field is one preallocated tensor
`[capacity, episode_limit + 1, ...]`; an episode shorter than the limit is padded, and `filled[t]`
marks the transitions that happened. Step `T` (one past the last transition) holds the observation,
state and available actions the episode ended on, so a truncated episode can bootstrap from them.

`EpisodeBuffer.sample` draws distinct episodes uniformly (PyMARL: `np.random.choice(replace=False)`)
from the buffer's own random stream; `state_dict` holds the stored episodes and the stream, so a resumed run
samples exactly what an uninterrupted one would.

Seed batches (docs/architecture.md): with `n_seeds` K the buffer is K rings, seed-major (slots k * capacity ..
(k + 1) * capacity - 1 are seed k's), each with its own size, next slot and random stream; a sample is K blocks
of episodes, block k drawn from seed k's ring by seed k's stream. The learner samples whole episodes (`cut=False`):
every seed's block then has the same time length, `episode_limit + 1`, whatever it drew, so the update's kernels
see each seed in its solo run's shape (PyMARL cuts after the longest sampled episode, a length each seed would draw
differently; the padding it cuts is masked out of every loss, so the cut changes compute, not the update's
terms). Each seed's packed episodes have their own length, so the checkpoint holds them in a `per_seed` list
(coopbench/base/seed_state.py: entry k is seed k's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.blocks.seed_streams import SeedStreams
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
    """A ring of `capacity` episodes per seed; the oldest is overwritten first."""

    def __init__(self, capacity: int, spec: EnvSpec, device: torch.device, n_seeds: int = 1):
        super().__init__(n_seeds * capacity, spec.episode_limit + 1, episode_fields(spec), device)
        self.capacity, self.n_seeds = capacity, n_seeds
        self.sizes = torch.zeros(n_seeds, dtype=torch.long)  # episodes stored, per seed
        self.next = torch.zeros(n_seeds, dtype=torch.long)  # slot (in its ring) each seed's next episode goes to
        self.streams = SeedStreams(n_seeds, torch.device("cpu"))  # which episodes each seed samples

    @property
    def size(self) -> int:
        """Episodes stored (a buffer of one seed; `sizes` holds every seed's)."""
        if self.n_seeds != 1:
            raise ValueError("a seed batch's buffer holds one size per seed: read `sizes`")
        return int(self.sizes[0])

    def insert(self, episodes: dict[str, torch.Tensor], seeds: torch.Tensor | None = None) -> None:
        """Store finished episodes, each field `[E, T + 1, ...]`, episode e into seed `seeds[e]`'s ring (`seeds`
        ascending; None: all seed 0's). More episodes of a seed than its capacity: the last ones win."""
        n = episodes["filled"].shape[0]
        if n == 0:
            return
        if seeds is None:
            seeds = torch.zeros(n, dtype=torch.long, device="cpu")
        seeds = seeds.cpu()  # slot bookkeeping on the CPU, as `next`
        counts = torch.bincount(seeds, minlength=self.n_seeds)
        rank = torch.arange(n, device="cpu") - (counts.cumsum(0) - counts)[seeds]  # its place among its seed's
        slots = seeds * self.capacity + (self.next[seeds] + rank) % self.capacity
        keep = rank >= counts[seeds] - self.capacity  # only a seed's last `capacity` survive: slots stay distinct
        if not bool(keep.all()):
            slots, episodes = slots[keep], {name: value[keep.to(value.device)] for name, value in episodes.items()}
        slots = slots.to(self.data["filled"].device)
        for name, tensor in self.data.items():
            tensor[slots] = episodes[name]
        self.next = (self.next + counts) % self.capacity
        self.sizes = (self.sizes + counts).clamp(max=self.capacity)

    def can_sample(self, batch_size: int) -> bool:
        return bool((self.sizes >= batch_size).all())

    def sample(self, batch_size: int, cut: bool = True) -> dict[str, torch.Tensor]:
        """`batch_size` distinct episodes drawn uniformly from each seed's ring by its stream, seed-major:
        every field is `[K * batch_size, L + 1, ...]`. `cut`: L is the longest sampled episode's length (PyMARL);
        else the episode limit (whole episodes: the same shape for every seed)."""
        if not self.can_sample(batch_size):
            raise ValueError(f"cannot sample {batch_size} episodes from a buffer holding {self.sizes.tolist()}")
        index = torch.cat([torch.randperm(size, generator=generator, device="cpu")[:batch_size] + k * self.capacity
                           for k, (size, generator) in enumerate(zip(self.sizes.tolist(), self.streams.generators,
                                                                     strict=True))])
        index = index.to(self.data["filled"].device)
        if not cut:
            return {name: tensor[index] for name, tensor in self.data.items()}
        longest = int(self.data["filled"][index].sum(1).max())
        return {name: tensor[index, :longest + 1] for name, tensor in self.data.items()}

    def _ring(self, k: int) -> slice:
        return slice(k * self.capacity, k * self.capacity + int(self.sizes[k]))

    def _steps_in_use(self, filled: torch.Tensor) -> torch.Tensor:
        """`[size, T + 1]`: the steps an episode uses, its transitions and the view it ended on (the rest is zeros)."""
        lengths = filled.sum(1, keepdim=True)
        return torch.arange(filled.shape[1], device=lengths.device) <= lengths

    def state_dict(self) -> dict:
        # Only the slots and steps in use, packed: a young buffer, or short episodes padded to a long limit (SMAC),
        # checkpoint at the size of what was played. One entry per seed: their packed lengths differ.
        per_seed = []
        for k in range(self.n_seeds):
            ring = {name: tensor[self._ring(k)] for name, tensor in self.data.items()}
            used = self._steps_in_use(ring["filled"])
            per_seed.append({"size": int(self.sizes[k]), "next": int(self.next[k]), "lengths": ring["filled"].sum(1),
                             "data": {name: tensor[used] for name, tensor in ring.items()}})
        return {"per_seed": per_seed, "streams": self.streams.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if len(state["per_seed"]) != self.n_seeds:
            raise ValueError(f"replay of {len(state['per_seed'])} seeds, this buffer has {self.n_seeds}")
        self.streams.load_state_dict(state["streams"])
        for tensor in self.data.values():
            tensor.zero_()
        for k, seed in enumerate(state["per_seed"]):
            self.sizes[k], self.next[k] = int(seed["size"]), int(seed["next"])
            ring = {name: tensor[self._ring(k)] for name, tensor in self.data.items()}
            lengths = seed["lengths"].to(ring["filled"].device)
            ring["filled"][:] = torch.arange(ring["filled"].shape[1], device=lengths.device) < lengths.unsqueeze(1)
            used = self._steps_in_use(ring["filled"])
            for name, tensor in ring.items():
                tensor[used] = seed["data"][name].to(tensor.device)
