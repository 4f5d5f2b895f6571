"""Fixed-size on-policy rollout storage (named tensors with a leading `[T, B]`), what the learners learn from, and
the minibatches of PPO's epochs."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.seed_streams import SeedStreams

# What the critic and actor updates read from a rollout (absent fields, e.g. memories of feed-forward nets, skipped).
UPDATE_FIELDS = ["actor_in", "critic_in", "avail", "actions", "log_probs", "values", "advantages", "returns", "starts",
                 "actor_memory", "critic_memory"]


class RolloutStorage:
    def __init__(self, length: int):
        self.length = length
        self.fields: dict[str, torch.Tensor] = {}

    def insert(self, t: int, **values: torch.Tensor | None) -> None:
        for name, value in values.items():
            if value is None:
                continue
            if name not in self.fields:  # allocate lazily, shaped like the first value
                self.fields[name] = torch.empty((self.length, *value.shape), dtype=value.dtype, device=value.device)
            self.fields[name][t] = value

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.fields[name]

    def sequences(self, names: list[str], chunk_length: int, seeded: bool = False) -> dict[str, torch.Tensor]:
        """Cut `[T, B, ...]` into chunks of `chunk_length` steps, time first: `[L, (T/L)*B, ...]`.

        Recurrent learners back-propagate through each chunk; feed-forward ones use `chunk_length=1`,
        which is the flat `[1, T*B, ...]` batch. Minibatches are drawn over the second dimension.
        A seed batch's rollout (`seeded`) is `[T, K, B, ...]` and becomes `[L, K, (T/L)*B, ...]`: each seed's
        chunks stay its own, in the order a solo run has them, and minibatches are drawn over the third dimension.
        """
        out = {}
        for name in names:
            if name not in self.fields:
                continue
            x = self.fields[name]
            steps, lead, rest = x.shape[0], x.shape[1:2 + seeded], x.shape[2 + seeded:]
            chunks = steps // chunk_length
            # [chunks, L, (K,) B, ...] -> [L, (K,) chunks, B, ...] -> [L, (K,) chunks * B, ...]
            x = x.reshape(chunks, chunk_length, *lead, *rest).movedim(0, 1 + seeded)
            out[name] = x.reshape(chunk_length, *lead[:-1], chunks * lead[-1], *rest)
        return out


def update_batch(storage: RolloutStorage, advantages: torch.Tensor, returns: torch.Tensor,
                 config: OnPolicyConfig, seeded: bool = False) -> dict[str, torch.Tensor]:
    """The rollout with its advantages and value targets `[T, (K,) B, L]`, cut into the chunks the updates read."""
    storage.fields["advantages"] = advantages
    storage.fields["returns"] = returns
    return storage.sequences(UPDATE_FIELDS, config.chunk_length if config.recurrent else 1, seeded)


def minibatch_indices(n_samples: int, n_minibatches: int, device: torch.device) -> list[torch.Tensor]:
    """A random partition of range(n_samples) into `n_minibatches` near-equal parts."""
    return list(torch.randperm(n_samples, device=device).chunk(n_minibatches))


def minibatches(batch: dict[str, torch.Tensor], epochs: int, n_minibatches: int,
                streams: SeedStreams | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """`epochs` random partitions of the sequences (second dimension) into `n_minibatches` minibatches.

    With `streams` (a seed batch's `[L, K, S, ...]` sequences) each seed draws its own partition of its own S
    sequences from its own stream; a minibatch is `[L, K, S / n_minibatches, ...]`."""
    actions = batch["starts"]  # every update batch has the episode starts: [L, (K,) S]
    if streams is None:
        for _ in range(epochs):
            for idx in minibatch_indices(actions.shape[1], n_minibatches, actions.device):
                yield {k: v[:, idx] for k, v in batch.items()}
        return
    n_seeds, n_samples = streams.n_seeds, actions.shape[2]
    offsets = torch.arange(n_seeds, device=actions.device).unsqueeze(1) * n_samples
    for _ in range(epochs):
        for idx in streams.permutations(n_samples).chunk(n_minibatches, dim=1):
            # seed k's rows idx[k] as rows k * S + idx[k] of the flattened [L, K*S, ...]: one index_select per field
            # (indexing [L, K, S] with two index tensors takes a slower general kernel)
            rows, shape = (idx + offsets).flatten(), idx.shape
            yield {k: v.flatten(1, 2).index_select(1, rows).unflatten(1, shape) for k, v in batch.items()}


def seed_mean(x: torch.Tensor, n_seeds: int | None) -> torch.Tensor:
    """The mean over everything (a scalar), or with `n_seeds` K the mean of each seed's entries, `[K]`: the seed
    dimension is third from last, `[..., K, batch, learners]`. A seed batch's loss is the sum of these: seed k's
    weights then get exactly seed k's gradient."""
    if n_seeds is None:
        return x.mean()
    return x.movedim(-3, 0).reshape(n_seeds, -1).mean(1)


def learning_rewards(reward: torch.Tensor, reward_mode: str, learning_reward: str) -> torch.Tensor:
    """`[B, N]` rewards the agents learn from. Team tasks already give every agent the team reward."""
    if learning_reward == "team" and reward_mode == "private":
        # The cooperative objective is the team return, the sum of private rewards (AS 3).
        return reward.sum(dim=-1, keepdim=True).expand_as(reward)
    return reward
