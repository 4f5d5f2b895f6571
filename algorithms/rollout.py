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


def minibatch_indices(n_samples: int, n_minibatches: int, device: torch.device) -> list[torch.Tensor]:
    """A random partition of range(n_samples) into `n_minibatches` near-equal parts."""
    return list(torch.randperm(n_samples, device=device).chunk(n_minibatches))
