"""Tabular softmax BN policy gradient (BN sec. 4-5, 6.1; algorithms/bn_tabular.py) and the DAG block
(algorithms/blocks/dag.py), on the exact models of the Coordination Game."""

import itertools

import pytest
import torch
import yaml

from algorithms.blocks.dag import (
    edge_count,
    full_dag,
    is_acyclic,
    line_dag,
    named_dag,
    product_dag,
    satisfies_assumption3,
    subteam_dag,
    subteam_partition,
    topological_levels,
    topological_order,
)
from algorithms.bn_tabular import (
    BNTabular,
    BNTabularConfig,
    DagBatch,
    ExactGame,
    _context_policy,
    best_response_values,
    conditionals,
    construction_seed,
    context_parameters,
    equilibrium_gap,
    evaluate,
    exact_gradient,
    gradient_ascent,
    initial_logits,
    joint_policy,
    objective,
    optimal_value,
    sample_actions,
    tie,
    tied_tables,
)
from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_json, read_parquet
from coopbench.config import config_dir, parse_set, resolve
from coopbench.run import execute
from environments import make

F64 = torch.float64


def coordination(n: int):
    params = yaml.safe_load((config_dir() / "environments" / f"coordination/bn-cg-{n}.yaml").read_text())["params"]
    return make(f"coordination/bn-cg-{n}", n_envs=1, seed=0, **params)


@pytest.fixture(scope="module")
def cg2() -> ExactGame:
    return ExactGame.of(coordination(2).model(), gamma=0.95, horizon="discounted")


@pytest.fixture(scope="module")
def cg3() -> ExactGame:
    return ExactGame.of(coordination(3).model(), gamma=0.9, horizon="discounted")


# --- the DAG block -------------------------------------------------------------------------------------------
def test_named_dags_and_their_levels():
    assert edge_count(product_dag(4)) == 0 and edge_count(full_dag(4)) == 6 and edge_count(line_dag(4)) == 3
    assert topological_levels(full_dag(4)).tolist() == [0, 1, 2, 3]
    assert topological_levels(line_dag(3)).tolist() == [0, 1, 2]
    assert topological_levels(product_dag(3)).tolist() == [0, 0, 0]
    two_three = named_dag("subteams", 5, [2, 3])
    assert subteam_partition([2, 3]) == [[0, 1], [2, 3, 4]]
    assert topological_levels(two_three).tolist() == [0, 1, 0, 1, 2]
    assert edge_count(two_three) == 1 + 3
    # batched: one level vector per DAG
    batch = torch.stack([product_dag(3), full_dag(3), line_dag(3)])
    assert topological_levels(batch).tolist() == [[0, 0, 0], [0, 1, 2], [0, 1, 2]]


def test_cycles_and_self_loops_are_refused():
    cycle = torch.zeros(3, 3, dtype=torch.bool)
    cycle[1, 0] = cycle[2, 1] = cycle[0, 2] = True  # 0 -> 1 -> 2 -> 0
    assert not is_acyclic(cycle)
    with pytest.raises(ValueError, match="cycle"):
        topological_levels(cycle)
    with pytest.raises(ValueError, match="self-loop"):
        topological_levels(torch.eye(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="cycle"):
        DagBatch.of(cycle)
    reverse = torch.zeros(3, 3, dtype=torch.bool)
    reverse[0, 2] = True  # 2 -> 0: agent 0 comes after agent 2
    assert topological_order(reverse) == [1, 2, 0]


def test_assumption3_holds_for_subteam_dags_and_not_for_line():
    assert satisfies_assumption3(subteam_dag([[0], [1, 2]]), [[0], [1, 2]])
    assert satisfies_assumption3(full_dag(3), [[0, 1, 2]])
    assert satisfies_assumption3(product_dag(3), [[0], [1], [2]])
    line = line_dag(3)  # BN 6.1: "all DAGs satisfy Assumption 3, except for the line DAG"
    partitions = [[[0, 1, 2]], [[0], [1, 2]], [[0, 1], [2]], [[0, 2], [1]], [[0], [1], [2]]]
    assert not any(satisfies_assumption3(line, p) for p in partitions)
    assert not satisfies_assumption3(full_dag(3), [[0], [1, 2]])  # edges between the two subteams


# --- the exact gradient ---------------------------------------------------------------------------------------
def reduced_line_objective(game: ExactGame, theta: list[torch.Tensor], lam: float) -> torch.Tensor:
    """eq. 2 written out by hand for the line DAG 0 -> 1 -> 2 on eq. 1's own parameters theta^i(s, a^{P^i}, a^i):
    theta[0] [S, A], theta[1] [S, A_0, A], theta[2] [S, A_1, A]; an independent reference for the tied layout."""
    p0 = torch.softmax(theta[0], -1)  # [S, a0]
    p1 = torch.softmax(theta[1], -1)  # [S, a0, a1]
    p2 = torch.softmax(theta[2], -1)  # [S, a1, a2]
    joint = p0[:, :, None, None] * p1[:, :, :, None] * p2[:, None, :, :]
    value = evaluate(game, joint.reshape(1, game.n_states, -1)).value[0]
    kl = sum((-torch.log(torch.tensor(2.0, dtype=F64)) - torch.log(p).mean(-1)).mean() for p in (p0, p1, p2))
    return value - lam * kl


def tied_from_reduced(theta: list[torch.Tensor]) -> torch.Tensor:
    s = theta[0].shape[0]
    full = torch.empty(1, 3, s, 2, 2, 2, dtype=F64)
    full[0, 0] = theta[0][:, :, None, None].expand(s, 2, 2, 2)
    full[0, 1] = theta[1][:, :, :, None].expand(s, 2, 2, 2)
    full[0, 2] = theta[2][:, None, :, :].expand(s, 2, 2, 2)
    return full


def test_exact_gradient_equals_autograd_and_finite_differences(cg3):
    lam = 0.3
    generator = torch.Generator().manual_seed(3)
    s = cg3.n_states
    theta = [torch.randn(s, 2, generator=generator, dtype=F64), torch.randn(s, 2, 2, generator=generator, dtype=F64),
             torch.randn(s, 2, 2, generator=generator, dtype=F64)]
    dags = DagBatch.of(line_dag(3))
    grad, ev = exact_gradient(cg3, tied_from_reduced(theta), dags, lam)
    leaves = [t.clone().requires_grad_(True) for t in theta]
    reference = reduced_line_objective(cg3, leaves, lam)
    reference.backward()
    assert float(ev.value[0]) == pytest.approx(float(reduced_line_objective(cg3, theta, 0.0)), rel=1e-12)
    # Lemma 1 on the tied layout, read at one copy of each free parameter, equals autograd on eq. 1's parameters
    assert torch.allclose(grad[0, 0][:, :, 0, 0], leaves[0].grad, atol=1e-10)
    assert torch.allclose(grad[0, 1][:, :, :, 0], leaves[1].grad, atol=1e-10)
    assert torch.allclose(grad[0, 2][:, 0, :, :], leaves[2].grad, atol=1e-10)
    # every copy holds the same gradient: theta + eta * grad stays tied
    assert torch.equal(grad, tie(grad, dags, "first"))
    # central finite differences of the objective on a few parameters
    eps = 1e-6
    for agent, index in ((0, (5, 1)), (1, (2, 0, 1)), (2, (7, 1, 0)), (2, (0, 0, 0))):
        plus = [t.clone() for t in theta]
        minus = [t.clone() for t in theta]
        plus[agent][index] += eps
        minus[agent][index] -= eps
        numeric = (reduced_line_objective(cg3, plus, lam) - reduced_line_objective(cg3, minus, lam)) / (2 * eps)
        assert float(leaves[agent].grad[index]) == pytest.approx(float(numeric), abs=1e-6)
    # and the tied autograd of the same objective agrees for every DAG of a batch
    parents = torch.stack([product_dag(3), full_dag(3), line_dag(3), named_dag("subteams", 3, [1, 2])])
    batch = DagBatch.of(parents)
    logits = initial_logits(cg3, batch, [0, 1, 2, 3], 1.0)
    grad, _ = exact_gradient(cg3, logits, batch, lam)
    leaf = logits.clone().requires_grad_(True)
    objective(cg3, leaf, batch, lam).sum().backward()
    assert torch.allclose(tie(leaf.grad, batch, "sum"), grad, atol=1e-10)


def test_context_layout_holds_the_tied_tables_and_their_policy(cg3):
    """The gradient steps' layout (one column per agent and parents' action) holds exactly the tied tables'
    parameters, whatever the parents (here also 2 -> 0, a parent after its child in index order), and gives the
    same policy and, through autograd of the tied objective, the same gradient."""
    backward = torch.zeros(3, 3, dtype=torch.bool)
    backward[0, 2] = True
    parents = torch.stack([product_dag(3), full_dag(3), line_dag(3), named_dag("subteams", 3, [1, 2]), backward])
    batch = DagBatch.of(parents.repeat_interleave(2, 0))
    logits = initial_logits(cg3, batch, list(range(10)), 1.0)
    theta = context_parameters(logits, batch, cg3.n_actions)
    # |S| |A^{P^i}| |A^i| parameters per agent: product 2 + 2 + 2, full 2 + 4 + 8, line 2 + 4 + 4, 1+2 2 + 2 + 4,
    # 2 -> 0 4 + 2 + 2
    assert sorted(t.shape[-2] * t.shape[-1] for t in theta) == [6, 8, 8, 10, 14]
    assert sum(t[0].numel() for t in theta) == cg3.n_states * (6 + 14 + 10 + 8 + 8)
    assert torch.equal(tied_tables(theta, batch, logits.shape), logits)
    cond, joint = _context_policy(theta, batch, logits.shape)
    assert torch.allclose(joint, joint_policy(conditionals(logits, batch)), rtol=1e-13, atol=0.0)
    grad, _ = exact_gradient(cg3, logits, batch, 0.2)
    leaf = logits.clone().requires_grad_(True)
    objective(cg3, leaf, batch, 0.2).sum().backward()
    assert torch.allclose(tie(leaf.grad, batch, "sum"), grad, atol=1e-10)


def test_product_dag_is_independent_softmax_policies(cg3):
    batch = DagBatch.of(product_dag(3))
    logits = initial_logits(cg3, batch, [11], 1.0)
    own = [logits[0, 0][:, :, 0, 0], logits[0, 1][:, 0, :, 0], logits[0, 2][:, 0, 0, :]]  # theta^i(s, a^i)
    pis = [torch.softmax(t, -1) for t in own]
    independent = pis[0][:, :, None, None] * pis[1][:, None, :, None] * pis[2][:, None, None, :]
    assert torch.allclose(joint_policy(conditionals(logits, batch))[0], independent.reshape(cg3.n_states, -1))
    # the gradient of the product DAG is that of N independent softmax policies pi^i(a^i | s)
    leaves = [t.clone().requires_grad_(True) for t in own]
    ps = [torch.softmax(t, -1) for t in leaves]
    joint = (ps[0][:, :, None, None] * ps[1][:, None, :, None] * ps[2][:, None, None, :]).reshape(1, cg3.n_states, -1)
    kl = sum((-torch.log(torch.tensor(2.0, dtype=F64)) - torch.log(p).mean(-1)).mean() for p in ps)
    (evaluate(cg3, joint).value[0] - 0.1 * kl).backward()
    grad, _ = exact_gradient(cg3, logits, batch, 0.1)
    assert torch.allclose(grad[0, 0][:, :, 0, 0], leaves[0].grad, atol=1e-10)
    assert torch.allclose(grad[0, 1][:, 0, :, 0], leaves[1].grad, atol=1e-10)
    assert torch.allclose(grad[0, 2][:, 0, 0, :], leaves[2].grad, atol=1e-10)


def test_full_dag_represents_correlation_a_product_cannot(cg2):
    batch = DagBatch.of(torch.stack([product_dag(2), full_dag(2)]))
    logits = torch.zeros(2, 2, cg2.n_states, 2, 2, dtype=F64)
    logits[1, 1, :, 0, 0] = logits[1, 1, :, 1, 1] = 20.0  # full: agent 1 copies agent 0, who is uniform
    joint = joint_policy(conditionals(logits, batch)).view(2, cg2.n_states, 2, 2)
    assert torch.allclose(joint[1], torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=F64).expand_as(joint[1]), atol=1e-8)
    # a product policy's joint has rank 1 in every state: it never puts 1/2 on (0, 0) and on (1, 1) and 0 elsewhere
    assert all(torch.linalg.matrix_rank(joint[0, s]) == 1 for s in range(cg2.n_states))
    assert all(torch.linalg.matrix_rank(joint[1, s]) == 2 for s in range(cg2.n_states))


def test_coordination_optimum_is_reached_only_with_edges(cg2):
    """CG-2: all agents in state 0 pays 3, all in 1 pays 2, a tie pays 0 (BN Alg. 2). From both agents favouring
    action 1 the product policy converges to the all-1 equilibrium; the full DAG reaches V*."""
    batch = DagBatch.of(torch.stack([product_dag(2), full_dag(2)]))
    logits = torch.zeros(2, 2, cg2.n_states, 2, 2, dtype=F64)
    logits[:, 0, :, 1, :] = 1.5  # agent 0's logit of action 1
    logits[:, 1, :, :, 1] = 1.5  # agent 1's logit of action 1 (after either action of agent 0)
    result = gradient_ascent(cg2, logits, batch, lr=1.0, lam=1e-3, iterations=3000, gap_at=[3000])
    v_star = optimal_value(cg2)
    product, full = result.values[:, -1].tolist()
    assert full == pytest.approx(v_star, rel=1e-4)
    assert product < 0.7 * v_star
    assert result.gaps[:, -1].max() < 2e-3  # both are (approximate) equilibria: Theorem 1 holds for both
    assert result.values[1].diff().min() > -1e-9  # small steps: the regularized objective's value rises


# --- the equilibrium gap ----------------------------------------------------------------------------------------
def test_best_response_equals_brute_force_over_deterministic_deviations(cg2):
    """Agent 1 of the full DAG deviates with a table pi'(a^1 | s, a^0): 2^(4 * 2) deterministic tables."""
    batch = DagBatch.of(full_dag(2))
    logits = initial_logits(cg2, batch, [5], 1.0)
    cond = conditionals(logits, batch)
    best = best_response_values(cg2, logits, batch)
    brute = [float("-inf"), float("-inf")]
    s = cg2.n_states
    for bits in itertools.product((0, 1), repeat=s * 2):  # agent 1: a choice per (s, a^0)
        choice = torch.tensor(bits).view(s, 2)
        table = torch.nn.functional.one_hot(choice, 2).to(F64)  # [S, a0, a1]
        joint = (cond[0, 0] * table).reshape(1, s, -1)
        brute[1] = max(brute[1], float(evaluate(cg2, joint).value[0]))
    for bits in itertools.product((0, 1), repeat=s):  # agent 0, a root: a choice per s
        table = torch.nn.functional.one_hot(torch.tensor(bits), 2).to(F64)[:, :, None]  # [S, a0, 1]
        joint = (table * cond[0, 1]).reshape(1, s, -1)
        brute[0] = max(brute[0], float(evaluate(cg2, joint).value[0]))
    assert best[0].tolist() == pytest.approx(brute, rel=1e-10)
    assert float(equilibrium_gap(cg2, logits, batch)[0]) == pytest.approx(
        max(brute) - float(evaluate(cg2, joint_policy(cond)).value[0]), rel=1e-10)


# --- decentralized sampling -------------------------------------------------------------------------------------
def test_sampling_follows_the_topological_order_not_the_index_order(cg3):
    """Agent 0's only parent is agent 2 (2 -> 0) and agent 0 copies it; agent 2 is uniform. Drawing in index order
    would read agent 2's action before it exists; by levels every draw agrees."""
    parents = torch.zeros(3, 3, dtype=torch.bool)
    parents[0, 2] = True
    batch = DagBatch.of(parents)
    logits = torch.zeros(1, 3, cg3.n_states, 2, 2, 2, dtype=F64)
    logits[0, 0, :, 0, :, 0] = 30.0  # a0 = 0 after a2 = 0
    logits[0, 0, :, 1, :, 1] = 30.0  # a0 = 1 after a2 = 1
    logits = tie(logits, batch, "first")
    cond = conditionals(logits, batch)
    states = torch.randint(0, cg3.n_states, (4000,), generator=torch.Generator().manual_seed(0))
    actions = sample_actions(cond, topological_levels(parents), states,
                             torch.rand(4000, 3, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(actions[:, 0], actions[:, 2])
    assert 0.45 < actions[:, 2].double().mean() < 0.55  # the root is uniform
    # the empirical joint matches pi(a | s) summed over states
    counts = torch.bincount((actions * torch.tensor([4, 2, 1])).sum(-1), minlength=8).double() / len(states)
    expected = joint_policy(cond)[0][states].mean(0)
    assert torch.allclose(counts, expected, atol=0.03)


# --- through the run driver ------------------------------------------------------------------------------------
def test_config_is_checked():
    with pytest.raises(ValueError, match="subteams"):
        BNTabularConfig(dag="subteams")
    with pytest.raises(ValueError, match="only for dag"):
        BNTabularConfig(dag="full", subteams=[1, 2])
    spec = coordination(3).spec
    with pytest.raises(CoopbenchError, match="sum to the number of agents"):
        BNTabular(spec, BNTabularConfig(dag="subteams", subteams=[2, 2]), torch.device("cpu"))


@pytest.mark.parametrize("algo", ["bn_tabular_full", "bn_tabular_subteam"])
def test_runs_through_the_driver_and_matches_the_batched_solver(tmp_path, algo):
    config = resolve(algo, "coordination/bn-cg-3", parse_set(
        ["run.total_env_steps=2560", "run.eval_interval=1280", "run.eval_episodes=8"]))
    run_dir = execute(config, seed=0, results_dir=tmp_path)
    manifest = read_json(run_dir / "manifest.json")
    metrics = read_parquet(run_dir / "metrics.parquet")
    assert manifest["status"] == "completed" and manifest["env_steps"] == 2560
    assert metrics["env_steps"].tolist() == [0, 1280, 2560]
    # The run's policy after its 10 steps is the batched solver's for seed 0 (theta_0 from the run's seed)
    state = torch.load(run_dir / "model.pt", weights_only=True)
    hparams = BNTabularConfig(**config.algo_hparams)
    game = ExactGame.of(coordination(3).model(), hparams.gamma, "discounted")
    batch = DagBatch.of(named_dag(hparams.dag, 3, hparams.subteams))
    torch.manual_seed(0)
    start = initial_logits(game, batch, [construction_seed()], hparams.init_std)
    result = gradient_ascent(game, start, batch, hparams.lr, hparams.reg, iterations=10)
    assert state["steps"] == 10
    assert torch.allclose(state["logits"], result.logits, atol=1e-12)


# --- the analyses (leaderboard/analyses.py) ---------------------------------------------------------------------
def _claim_keys(analysis: str) -> set[str]:
    from coopbench.claims import load_paper

    return {c.key for c in load_paper("bn").claims if c.analysis == analysis}


def test_equilibrium_gap_analysis_serves_every_claim_key():
    from leaderboard.analyses import bn_equilibrium_gap

    result = bn_equilibrium_gap(seeds=2)
    values = result["values"]
    assert _claim_keys("bn-equilibrium-gap") <= set(values)
    for key in _claim_keys("bn-equilibrium-gap"):
        gaps = values[key.replace("final_gap", "gaps")]
        assert len(values[key + "s"]) == 2 and min(values[key + "s"]) >= 0.0
        assert gaps[-1] < 0.5 * gaps[0]  # from theta_0 ~ N(0, 1) the gap falls (by ~100x at 50 seeds)
    assert result["settings"]["bn/fig1-cg-5"]["iterations"] == 2000  # the experiment's budget / 256 steps


def test_additive_fits_find_zero_error_where_it_exists_and_not_elsewhere():
    """BN B.2's fit on a 2-agent XOR: a single subteam fits it exactly; two subteams (an additive f(x0) + g(x1))
    cannot do better than max error 1/2 (the constant 1/2 is the best additive fit)."""
    from leaderboard.analyses import BN_TABLE1_PARTITIONS, AdditiveFit, _partition, fit_additive_mlps

    bits = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    xor = (bits[:, :1] != bits[:, 1:]).float()
    additive = (2 * bits[:, :1] - bits[:, 1:]).float()
    problems = [AdditiveFit(bits, xor, [[0, 1]]), AdditiveFit(bits, xor, [[0], [1]]),
                AdditiveFit(bits, additive, [[0], [1]])]
    fitted = fit_additive_mlps(problems, epochs=1500, lr=1e-3, hidden=32, generator=torch.Generator().manual_seed(0))
    errors = [float((f - p.targets).abs().max()) for f, p in zip(fitted, problems, strict=True)]
    assert errors[0] < 0.02 and errors[2] < 0.02
    assert errors[1] == pytest.approx(0.5, abs=0.02)
    # Table 1's rows are the partitions the claims name
    keys = {f"n{n}.{label}.eps_{w}" for n, labels in BN_TABLE1_PARTITIONS.items() for label in labels for w in "pr"}
    assert keys == _claim_keys("bn-decomposition-errors")
    assert _partition("2+3", 5) == [[0, 1], [2, 3, 4]] and _partition("product", 2) == [[0], [1]]
