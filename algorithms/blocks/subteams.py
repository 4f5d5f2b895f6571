"""BN's DAGs for deep MARL (BN 6.2, App. B.1 and B.3): dependency scores from the agents' positions, Algorithm 1
(dependency-based subteams under an edge budget B), a random DAG under the same budget, and the topology a
BN actor samples over at a step.

Everything is batched over DAGs `[..., N, N]` (one per environment copy or stored step: the heuristic DAG is
"recomputed dynamically from the state", BN 6.2), in the parent-mask convention of algorithms/blocks/dag.py
(`parents[..., i, j]` True iff j is a parent of i).

Algorithm 1, batched: every copy starts from singleton subteams and no edges; per round, every copy still
merging finds the pair of subteams (C, C') with the highest average score d(C, C') = sum_{i in C, j in C'}
d_ij / (|C| |C'|), adds all |C| |C'| edges from C to C' and merges them; a copy stops for good when one subteam
is left or when the chosen pair's edges would exceed B (line 5's `break`, not a search for a cheaper pair).
Subteams live in N slots (`member[..., i, k]`: agent i is in slot k); a merge moves C' into C's slot, so one
matrix product per round gives every copy's pairwise sums. Ties go to the first pair in row-major slot order.
`n_subteams=K` also stops a copy once K subteams are left (BN 6.2.2 uses VAST's budget K = ceil(eta N)
subteams instead of an edge count).

Edges always go from the merged C (the lower slot) to C', so each subteam is fully connected in the order of
its merges and no edge joins two subteams: the DAG satisfies Assumption 3 (i) and (iii) with the subteams
returned (tests/test_bn_subteams.py checks it).
"""

from __future__ import annotations

from typing import Literal

import torch

from algorithms.blocks.dag import full_dag, product_dag
from coopbench.base.errors import CoopbenchError
from environments.registry import ENVIRONMENTS

DependencyScore = Literal["neg_state_distance", "neg_manhattan", "neg_euclidean"]
Topology = Literal["full", "product", "random", "heuristic"]


def dependency_scores(positions: torch.Tensor, score: DependencyScore) -> torch.Tensor:
    """d_ij `[..., N, N]` from positions `[..., N, D]` (BN App. B.3): the negative distance.

    neg_state_distance: -|s^i - s^j| of the Coordination Game's binary local states (1D positions);
    neg_manhattan: -(|x_i - x_j| + |y_i - y_j|) (Aloha's 2x5 grid); neg_euclidean: -||p_i - p_j||_2
    (Predator-Prey, Warehouse, Battle). On 1D positions all three coincide."""
    gap = positions.unsqueeze(-2) - positions.unsqueeze(-3)  # [..., N, N, D]
    if score == "neg_euclidean":
        return -gap.pow(2).sum(-1).sqrt()
    if score in ("neg_manhattan", "neg_state_distance"):
        return -gap.abs().sum(-1)
    raise ValueError(f"unknown dependency score {score!r}: one of neg_state_distance, neg_manhattan, neg_euclidean")


def heuristic_subteams(scores: torch.Tensor, budget: float = float("inf"),
                       n_subteams: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BN Algorithm 1 on every copy of `scores [..., N, N]`: `(parents [..., N, N] bool, subteam [..., N] long)`.

    `subteam[..., i]` is the slot of agent i's subteam (the lowest member's index); `budget` is B, the most edges
    (line 5); `n_subteams` stops merging once that many subteams are left (BN 6.2.2's K)."""
    *batch, n, _ = scores.shape
    scores = scores.reshape(-1, n, n).to(torch.float64)
    copies = scores.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=scores.device)
    member = eye.expand(copies, n, n).to(torch.float64)  # [C, agent, slot]: singletons (line 1)
    parents = torch.zeros(copies, n, n, dtype=torch.bool, device=scores.device)
    edges = torch.zeros(copies, dtype=torch.float64, device=scores.device)
    active = torch.ones(copies, dtype=torch.bool, device=scores.device)
    stop_at = 1 if n_subteams is None else max(1, n_subteams)
    for _ in range(n - 1):
        sizes = member.sum(1)  # [C, slot]
        active &= (sizes > 0).sum(-1) > stop_at  # line 2: more than one (or K) subsets
        if not bool(active.any()):
            break
        # d(C, C') for every pair of occupied slots: (M^T d M) / (|C| |C'|) (line 3)
        pair_sums = member.transpose(1, 2) @ scores @ member
        pair_sizes = sizes.unsqueeze(-1) * sizes.unsqueeze(-2)
        valid = (pair_sizes > 0) & ~eye
        average = torch.where(valid, pair_sums / pair_sizes.clamp(min=1), torch.full_like(pair_sums, -torch.inf))
        best = average.flatten(1).argmax(-1)
        k, k2 = best // n, best % n
        c = torch.arange(copies, device=scores.device)
        cost = pair_sizes[c, k, k2]  # |E_new| = |C| |C'| (line 4)
        active &= edges + cost <= budget  # line 5: the budget would be exceeded -> this copy is done
        if not bool(active.any()):
            break
        in_c, in_c2 = member[c, :, k] > 0, member[c, :, k2] > 0  # [C, N]
        new_edges = in_c2.unsqueeze(-1) & in_c.unsqueeze(-2)  # all edges from C to C': parents[v, u], u in C
        parents |= new_edges & active.view(-1, 1, 1)  # line 6
        edges += torch.where(active, cost, torch.zeros_like(cost))
        merged = member[c, :, k] + member[c, :, k2]
        keep = active.view(-1, 1)
        member[c, :, k] = torch.where(keep, merged, member[c, :, k])
        member[c, :, k2] = torch.where(keep, torch.zeros_like(merged), member[c, :, k2])
    subteam = member.argmax(-1)
    return parents.view(*batch, n, n), subteam.view(*batch, n)


def subteam_lists(subteam: torch.Tensor) -> list[list[int]]:
    """One copy's subteam slots `[N]` as a partition (lists of agents, by slot)."""
    slots = sorted(set(subteam.tolist()))
    return [[i for i, s in enumerate(subteam.tolist()) if s == slot] for slot in slots]


def contiguous_ids(subteam: torch.Tensor, n_subteams: int) -> torch.Tensor:
    """Slots `[..., N]` (agent indices) renumbered 0..K-1 by first member, for K-way one-hots (VAST's sub-teams)."""
    n = subteam.shape[-1]
    used = torch.nn.functional.one_hot(subteam, n).amax(-2)  # [..., slot] 1 where occupied
    rank = used.cumsum(-1) - 1  # a slot's position among the occupied ones
    return rank.gather(-1, subteam).clamp(max=n_subteams - 1)


def random_dag(n: int, budget: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random DAG with min(B, N(N-1)/2) edges: a uniformly random agent order, then that many of its forward
    pairs drawn uniformly (BN 6.2.1's `random`, "constrained under the same edge budget B" as the heuristic)."""
    order = torch.randperm(n, generator=generator)
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    forward = rank.unsqueeze(1) > rank.unsqueeze(0)  # [i, j]: j precedes i in the order
    candidates = forward.nonzero()
    pick = torch.randperm(candidates.shape[0], generator=generator)[: min(budget, candidates.shape[0])]
    parents = torch.zeros(n, n, dtype=torch.bool)
    parents[candidates[pick, 0], candidates[pick, 1]] = True
    return parents


def positions_from_views(env_name: str):
    """The task's `positions_from_views(obs, state) -> [..., N, D]` (a static method of its environment class,
    for tasks whose observations or state hold the agents' positions), or None."""
    if env_name not in ENVIRONMENTS.names():
        return None
    return getattr(ENVIRONMENTS.get(env_name).load(), "positions_from_views", None)


def agent_positions(timestep, from_views=None) -> torch.Tensor | None:
    """The agents' positions `[B, N, D]` at a step: the task's `extras["positions"]` (native tasks), else
    `from_views(obs, state)` (see `positions_from_views`), else None."""
    if "positions" in timestep.extras:
        return timestep.extras["positions"]
    return None if from_views is None else from_views(timestep.obs, timestep.state)


class DagTopology:
    """The DAG a BN actor samples over at a step (BN 6.2.1): `full`, `product`, `random` (drawn once from the run's
    generator, B edges) or `heuristic` (Algorithm 1 on the step's dependency scores, recomputed every step)."""

    def __init__(self, kind: Topology, n: int, env_name: str, device: torch.device, edge_budget: int,
                 score: DependencyScore, seed_generator: torch.Generator | None = None):
        self.kind, self.n, self.budget, self.score, self.device = kind, n, edge_budget, score, device
        fixed = {"full": full_dag, "product": product_dag}
        self.fixed = None
        if kind in fixed:
            self.fixed = fixed[kind](n).to(device)
        elif kind == "random":
            self.fixed = random_dag(n, edge_budget, seed_generator).to(device)
        self.from_views = positions_from_views(env_name)
        self.env_name = env_name

    def __call__(self, timestep) -> torch.Tensor:
        """`parents [(K,) B, N, N]` for the copies of `timestep` (`[(K,) B, ...]`). In a seed batch (docs/
        architecture.md, "Seed batches") a random DAG is K seeds' DAGs, `fixed [K*N, N]` seed-major as their
        states stack, each drawn by its seed's solo construction; the fixed full and product DAGs are shared."""
        if self.fixed is not None:
            lead = timestep.obs.shape[:-2]
            per_seed = self.fixed.view(-1, *([1] * (len(lead) - 1)), self.n, self.n)
            return per_seed.expand(*lead, self.n, self.n)
        return self._heuristic(agent_positions(timestep, self.from_views))

    def of_views(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """`parents [..., N, N]` at stored steps `obs [..., N, D]`, `state [..., S]` (via positions_from_views)."""
        if self.fixed is not None:
            return self.fixed.expand(*obs.shape[:-2], self.n, self.n)
        return self._heuristic(None if self.from_views is None else self.from_views(obs, state))

    def _heuristic(self, positions: torch.Tensor | None) -> torch.Tensor:
        if positions is None:
            raise CoopbenchError(f"the heuristic DAG needs the agents' positions and {self.env_name} exposes none "
                                 "(no extras['positions'], no positions_from_views)",
                                 "use topology full, product or random on this task, or expose its positions")
        parents, _ = heuristic_subteams(dependency_scores(positions.to(self.device).float(), self.score), self.budget)
        return parents

    def state_dict(self) -> dict:
        return {"dag_topology": self.fixed} if self.kind == "random" else {}

    def load_state_dict(self, state: dict) -> None:
        if self.kind == "random":
            self.fixed = state["dag_topology"].to(self.device)
