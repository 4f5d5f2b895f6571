"""The random streams of a part (sampling actions, minibatch permutations): one torch.Generator per seed of a seed
batch (docs/architecture.md, "Seed batches"), so that seed k draws in a batch exactly what it draws alone.

Each generator is seeded from the global torch RNG when the part is built, i.e. from the run's seed
(`seed_everything`), and its state is in the part's checkpoint as a `[K, ...]` tensor (seed-major, like every
per-seed tensor, so a batch's state slices into the solo runs' states and back).

Drawing loops over the K generators: torch has no batched generator (one `torch.Generator` is one stream), and a
counter-based generator written in tensor ops would be a second RNG to get right. The loop is K small calls per
draw (one draw per acting step, one per PPO epoch), independent of copies and agents.
"""

from __future__ import annotations

import torch


class SeedStreams:
    def __init__(self, n_seeds: int, device: torch.device):
        self.device = device
        self.generators = []
        for _ in range(n_seeds):
            generator = torch.Generator(device=device)
            generator.manual_seed(int(torch.randint(0, 2**62, ()).item()))
            self.generators.append(generator)

    @property
    def n_seeds(self) -> int:
        return len(self.generators)

    def uniform(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """`[K, *shape]` uniforms in [0, 1), row k from seed k's stream."""
        return torch.stack([torch.rand(shape, generator=g, device=self.device) for g in self.generators])

    def normal(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """`[K, *shape]` standard normals, row k from seed k's stream."""
        return torch.stack([torch.randn(shape, generator=g, device=self.device) for g in self.generators])

    def permutations(self, n: int) -> torch.Tensor:
        """`[K, n]`: a random permutation of range(n) per seed."""
        return torch.stack([torch.randperm(n, generator=g, device=self.device) for g in self.generators])

    def state_dict(self) -> torch.Tensor:
        return torch.stack([g.get_state() for g in self.generators])

    def load_state_dict(self, state: torch.Tensor) -> None:
        if state.shape[0] != len(self.generators):
            raise ValueError(f"random streams of {state.shape[0]} seeds, this part has {len(self.generators)}")
        for generator, row in zip(self.generators, state, strict=True):
            generator.set_state(row.clone())


def inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Categorical draws `[...]` from `probs [..., A]` with `uniforms [...]` in [0, 1): the first action whose
    cumulative probability exceeds u times the row's total (the total, not 1, so rounding never picks an action of
    probability 0). Row by row, so a seed's draws in a batch are its solo run's (where torch.multinomial draws from
    one generator for all rows)."""
    cdf = probs.cumsum(-1)
    return (cdf <= (uniforms * cdf[..., -1]).unsqueeze(-1)).sum(-1).clamp(max=probs.shape[-1] - 1)
