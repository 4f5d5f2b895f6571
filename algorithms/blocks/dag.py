"""Bayesian-network DAGs over agents (BN paper, sec. 3 and 5): parent masks, topological levels, subteams.

A DAG G = (N, E) over N agents is a boolean parent mask `parents[..., i, j]` = True iff (j, i) in E, i.e. agent
j is a parent of agent i (agent i's action is drawn from pi^i(a^i | s, a^{P^i}), BN sec. 3). Leading dimensions
batch DAGs (per seed, per state for the dynamic DAGs of BN 6.2): every function here works on `[..., N, N]`.

Topological levels: level(i) = 0 for a root, else 1 + max over parents. Agents of one level have no edge
between them, so a BN policy is sampled one level at a time (one batched pass per level, never one per agent),
each level conditioning on the actions already drawn for the earlier levels.

The fixed topologies of BN 6.1: product (no edges), full (every pair connected: one subteam, K = 1), line
(agent i -> i + 1, Boehmer et al. 2020; Chen & Zhang 2023) and K subteams of given sizes (full inside each
subteam, no edge between two subteams: Assumption 3 (i) and (iii)). Edges point from lower to higher index.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def product_dag(n: int) -> torch.Tensor:
    """No edges: the product policy pi(a | s) = prod_i pi^i(a^i | s)."""
    return torch.zeros(n, n, dtype=torch.bool)


def full_dag(n: int) -> torch.Tensor:
    """Every agent's parents are all lower-indexed agents (one subteam of all N agents)."""
    return torch.ones(n, n, dtype=torch.bool).tril(-1)


def line_dag(n: int) -> torch.Tensor:
    """Agent i's only parent is agent i - 1 (the chain of BN 6.1's `line`)."""
    parents = torch.zeros(n, n, dtype=torch.bool)
    index = torch.arange(1, n)
    parents[index, index - 1] = True
    return parents


def subteam_partition(sizes: Sequence[int]) -> list[list[int]]:
    """Consecutive agents per subteam: sizes (1, 2) -> [[0], [1, 2]] (BN 6.1 labels DAGs by sizes, e.g. 2+3)."""
    if not sizes or any(int(k) < 1 for k in sizes):
        raise ValueError(f"subteam sizes must be positive integers, got {list(sizes)}")
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    return [list(range(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def subteam_dag(partition: Sequence[Sequence[int]], n: int | None = None) -> torch.Tensor:
    """Fully connected inside every subteam (lower index -> higher), no edge between subteams (Assumption 3)."""
    members = [int(i) for team in partition for i in team]
    n = len(members) if n is None else n
    if sorted(members) != list(range(n)):
        raise ValueError(f"the subteams {[list(t) for t in partition]} are not a partition of agents 0..{n - 1}")
    team_of = torch.empty(n, dtype=torch.long)
    for k, team in enumerate(partition):
        team_of[list(team)] = k
    same = team_of.unsqueeze(0) == team_of.unsqueeze(1)
    return same & full_dag(n)


def named_dag(kind: str, n: int, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """The parent mask of BN 6.1's topology `kind` ("product", "full", "line", "subteams" with `sizes`)."""
    if kind == "product":
        return product_dag(n)
    if kind == "full":
        return full_dag(n)
    if kind == "line":
        return line_dag(n)
    if kind == "subteams":
        if sizes is None or sum(sizes) != n:
            raise ValueError(f"subteam sizes {sizes} must sum to the number of agents {n}")
        return subteam_dag(subteam_partition(sizes), n)
    raise ValueError(f"unknown DAG kind {kind!r}: one of product, full, line, subteams")


def topological_levels(parents: torch.Tensor) -> torch.Tensor:
    """Level `[..., N]` (long) of every agent: 0 for roots, 1 + the largest parent level otherwise.

    Longest-path relaxation, N rounds batched over the leading dimensions; a cycle never settles (some
    level would exceed N - 1) and raises."""
    parents = parents.bool()
    n = parents.shape[-1]
    if parents.shape[-2] != n:
        raise ValueError(f"a parent mask is [..., N, N], got {tuple(parents.shape)}")
    if bool(parents.diagonal(dim1=-2, dim2=-1).any()):
        raise ValueError("an agent cannot be its own parent (self-loop)")
    levels = torch.zeros(parents.shape[:-1], dtype=torch.long, device=parents.device)
    for _ in range(n):
        # candidate[..., i, j] = level(j) + 1 where j is a parent of i
        candidate = torch.where(parents, levels.unsqueeze(-2) + 1, torch.zeros_like(parents, dtype=torch.long))
        updated = candidate.amax(-1)
        if torch.equal(updated, levels):
            return levels
        levels = updated
    raise ValueError("the parent mask has a directed cycle: a BN policy needs a DAG")


def is_acyclic(parents: torch.Tensor) -> bool:
    try:
        topological_levels(parents)
    except ValueError:
        return False
    return True


def topological_order(parents: torch.Tensor) -> list[int]:
    """One DAG `[N, N]`: the agents sorted by level (ties by index), an order in which parents come first."""
    levels = topological_levels(parents)
    if levels.dim() != 1:
        raise ValueError("topological_order takes one DAG [N, N]; use topological_levels for a batch")
    return sorted(range(levels.shape[0]), key=lambda i: (int(levels[i]), i))


def edge_count(parents: torch.Tensor) -> torch.Tensor:
    """|E| per DAG `[...]`."""
    return parents.bool().sum((-2, -1))


def is_subteam(parents: torch.Tensor, team: Sequence[int]) -> bool:
    """Definition 1: every pair of distinct members is connected by an edge (in one direction)."""
    team = list(team)
    sub = parents.bool()[team][:, team]
    connected = sub | sub.T
    return bool((connected | torch.eye(len(team), dtype=torch.bool)).all())


def satisfies_assumption3(parents: torch.Tensor, partition: Sequence[Sequence[int]]) -> bool:
    """Assumption 3 (i) and (iii) for one DAG: `partition` partitions the agents, each part is a subteam, and no
    edge joins two parts. ((ii), the decomposition errors, is a property of the game: bn-decomposition-errors.)"""
    n = parents.shape[-1]
    members = sorted(int(i) for team in partition for i in team)
    if members != list(range(n)):
        return False
    team_of = torch.empty(n, dtype=torch.long)
    for k, team in enumerate(partition):
        team_of[list(team)] = k
    across = team_of.unsqueeze(0) != team_of.unsqueeze(1)
    return all(is_subteam(parents, team) for team in partition) and not bool((parents.bool() & across).any())
