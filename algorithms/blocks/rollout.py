"""Fixed-size on-policy rollout storage: named tensors with a leading `[T, B]`."""

from __future__ import annotations

import torch


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

    def get(self, name: str) -> torch.Tensor | None:
        return self.fields.get(name)

    def flat(self, names: list[str]) -> dict[str, torch.Tensor]:
        """Merge time and copies, `[T, B, ...] -> [T*B, ...]`, for minibatching."""
        return {n: self.fields[n].flatten(0, 1) for n in names if n in self.fields}


    def sequences(self, names: list[str], chunk_length: int) -> dict[str, torch.Tensor]:
        """Cut `[T, B, ...]` into chunks of `chunk_length` steps, time first: `[L, (T/L)*B, ...]`.

        Recurrent learners back-propagate through each chunk; feed-forward ones use `chunk_length=1`,
        which is the flat `[1, T*B, ...]` batch. Minibatches are drawn over the second dimension.
        """
        out = {}
        for name in names:
            if name not in self.fields:
                continue
            x = self.fields[name]
            steps, copies, rest = x.shape[0], x.shape[1], x.shape[2:]
            chunks = steps // chunk_length
            out[name] = (x.reshape(chunks, chunk_length, copies, *rest).transpose(0, 1)
                         .reshape(chunk_length, chunks * copies, *rest))
        return out


def minibatch_indices(n_samples: int, n_minibatches: int, device: torch.device) -> list[torch.Tensor]:
    """A random partition of range(n_samples) into `n_minibatches` near-equal parts."""
    return list(torch.randperm(n_samples, device=device).chunk(n_minibatches))
