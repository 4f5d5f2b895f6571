"""BN Algorithm 1 (App. B.1), the dependency scores of App. B.3 and the random DAG (algorithms/blocks/subteams.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

from algorithms.blocks.dag import edge_count, is_acyclic, satisfies_assumption3
from algorithms.blocks.subteams import (
    contiguous_ids,
    dependency_scores,
    heuristic_subteams,
    random_dag,
    subteam_lists,
)


def algorithm1_literal(d: torch.Tensor, budget: float, n_subteams: int = 1):
    """Algorithm 1 line by line on one score matrix (Python sets; ties: the first pair in slot order)."""
    n = d.shape[0]
    slots = {i: [i] for i in range(n)}  # a subteam lives in the slot of its lowest member
    edges: set[tuple[int, int]] = set()
    while len(slots) > max(1, n_subteams):
        best, pair = -float("inf"), None
        for a, b in itertools.combinations(sorted(slots), 2):
            avg = sum(float(d[i, j]) for i in slots[a] for j in slots[b]) / (len(slots[a]) * len(slots[b]))
            if avg > best:
                best, pair = avg, (a, b)
        a, b = pair
        new = {(u, v) for u in slots[a] for v in slots[b]}  # all edges from C to C'
        if len(edges) + len(new) > budget:
            break
        edges |= new
        slots[a] = slots[a] + slots.pop(b)
    parents = torch.zeros(n, n, dtype=torch.bool)
    for u, v in edges:
        parents[v, u] = True
    return parents, sorted(sorted(t) for t in slots.values())


def test_dependency_scores_are_the_papers_negative_distances():
    pos = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -2.0]])
    man = dependency_scores(pos, "neg_manhattan")
    euc = dependency_scores(pos, "neg_euclidean")
    assert man[0, 1] == -3 and man[1, 2] == -6 and man[2, 2] == 0
    assert euc[0, 1] == pytest.approx(-(5 ** 0.5)) and euc[0, 2] == pytest.approx(-(13 ** 0.5))
    states = torch.tensor([[0.0], [1.0], [1.0]])
    assert dependency_scores(states, "neg_state_distance").tolist() == [[0, -1, -1], [-1, 0, 0], [-1, 0, 0]]


def test_merges_the_pair_with_the_highest_average_score_not_the_highest_sum():
    # After {0, 1} merges (d01 = -1 is the best pair), the averages are ({0,1},{2}) -5.75, ({0,1},{3}) -4,
    # ({2},{3}) -5: Algorithm 1 merges {0,1} with {3}; by the sum it would take {2,3} (-5 > -8).
    d = torch.tensor([[0.0, -1.0, -1.5, -4.0],
                      [-1.0, 0.0, -10.0, -4.0],
                      [-1.5, -10.0, 0.0, -5.0],
                      [-4.0, -4.0, -5.0, 0.0]])
    parents, team = heuristic_subteams(d, budget=3)
    assert subteam_lists(team) == [[0, 1, 3], [2]]
    assert edge_count(parents) == 3 and parents[1, 0] and parents[3, 0] and parents[3, 1]
    # one more edge of budget does not help: the next merge ({0,1,3} with {2}) needs 3 more
    assert torch.equal(heuristic_subteams(d, budget=5)[0], parents)
    assert edge_count(heuristic_subteams(d, budget=6)[0]) == 6  # everything merged: the full DAG


def test_stops_when_the_best_pair_exceeds_the_budget_even_if_a_cheaper_pair_fits():
    # {0,1} and {2,3} merge first (2 edges); the best next pair is the two teams (4 edges > 3 left of B = 5)
    # although the merge would be the only one left: line 5 breaks.
    d = -torch.tensor([[0, 1, 2, 2], [1, 0, 2, 2], [2, 2, 0, 1], [2, 2, 1, 0]], dtype=torch.float)
    parents, team = heuristic_subteams(d, budget=5)
    assert edge_count(parents) == 2 and subteam_lists(team) == [[0, 1], [2, 3]]


@pytest.mark.parametrize("n", [3, 5, 10])
def test_batched_algorithm1_matches_the_literal_one_and_respects_budget_and_assumption3(n):
    torch.manual_seed(n)
    positions = torch.rand(64, n, 2) * 5
    scores = dependency_scores(positions, "neg_euclidean")
    for budget in (0, 1, 4, 10, 50):
        parents, team = heuristic_subteams(scores, budget)
        assert bool((edge_count(parents) <= budget).all())
        for b in range(scores.shape[0]):
            ref_parents, ref_teams = algorithm1_literal(scores[b], budget)
            assert torch.equal(parents[b], ref_parents), (budget, b)
            partition = subteam_lists(team[b])
            assert sorted(sorted(t) for t in partition) == ref_teams
            assert is_acyclic(parents[b])
            assert satisfies_assumption3(parents[b], partition)


def test_n_subteams_stops_at_k_subteams_with_contiguous_ids():
    torch.manual_seed(0)
    scores = dependency_scores(torch.rand(32, 16, 2), "neg_euclidean")
    parents, team = heuristic_subteams(scores, n_subteams=4)
    for b in range(32):
        partition = subteam_lists(team[b])
        assert len(partition) == 4 and satisfies_assumption3(parents[b], partition)
        ref_parents, ref_teams = algorithm1_literal(scores[b], float("inf"), n_subteams=4)
        assert torch.equal(parents[b], ref_parents)
    ids = contiguous_ids(team, 4)
    assert ids.min() == 0 and ids.max() == 3
    same = lambda x: x.unsqueeze(-1) == x.unsqueeze(-2)  # noqa: E731
    assert torch.equal(same(ids), same(team))  # the same grouping, relabelled


def test_coordination_game_scores_group_agents_in_the_same_local_state():
    states = torch.tensor([[0.0], [1.0], [0.0], [1.0], [1.0]])
    parents, team = heuristic_subteams(dependency_scores(states, "neg_state_distance"), budget=4)
    assert edge_count(parents) == 4
    assert subteam_lists(team) == [[0, 2], [1, 3, 4]]  # 1 + 3 edges: same-state agents, the budget used exactly


@pytest.mark.parametrize(("n", "budget"), [(5, 4), (10, 10), (15, 50), (4, 100)])
def test_random_dag_respects_the_budget_and_is_acyclic(n, budget):
    generator = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(20):
        parents = random_dag(n, budget, generator)
        assert edge_count(parents) == min(budget, n * (n - 1) // 2)
        assert is_acyclic(parents)
        seen.add(tuple(parents.flatten().tolist()))
    assert len(seen) > 1 or budget >= n * (n - 1) // 2  # random, unless the budget makes it the full DAG


def test_subteam_sizes_that_do_not_sum_to_n_are_refused_at_plan_time():
    from algorithms.capabilities import incompatibility
    from coopbench.config import parse_set, resolve

    ok = resolve("bn_tabular_subteam", "coordination/bn-cg-5", parse_set([]))
    assert incompatibility("bn_tabular_subteam", "coordination/bn-cg-5", ok.algo_hparams) is None
    bad = resolve("bn_tabular_subteam", "coordination/bn-cg-5", parse_set(["algo.subteams=[2,2]"]))
    reason = incompatibility("bn_tabular_subteam", "coordination/bn-cg-5", bad.algo_hparams)
    assert reason == ("bn_tabular_subteam cannot run on coordination/bn-cg-5: its subteam sizes [2, 2] sum to 4, not "
                      "coordination/bn-cg-5's 5 agents (set algo.subteams to sizes that sum to 5)")
