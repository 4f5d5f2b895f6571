"""MADDPG with a BN actor (BN 6.2.1, Predator-Prey; algorithms/bn_maddpg.py)."""

from __future__ import annotations

import pytest
import torch

from algorithms.blocks.dag import full_dag, line_dag, topological_levels, topological_order
from algorithms.blocks.dag_policy import deterministic_dag_actions, parent_block
from algorithms.blocks.subteams import random_dag
from algorithms.blocks.td3 import DeterministicActor
from algorithms.bn_maddpg import BNMADDPG, BNMADDPGConfig
from algorithms.maddpg import MADDPG
from algorithms.off_policy import OffPolicyConfig
from coopbench.base.io import read_json
from coopbench.config import parse_set, resolve
from coopbench.run import execute
from environments import make

CPU = torch.device("cpu")


def one_agent_at_a_time(actor, own, parents, action_dim):
    """The reference: agents one by one in a topological order, each on its parents' already chosen actions."""
    actions = torch.zeros(*own.shape[:-1], action_dim)
    for i in topological_order(parents):
        block = parent_block(parents, actions, None)
        actions[..., i, :] = actor(torch.cat([own, block], dim=-1))[..., i, :]
    return actions


@pytest.mark.parametrize("dag", ["full", "line", "random"])
def test_level_by_level_actions_equal_agent_by_agent_ones(dag):
    torch.manual_seed(0)
    n, d, a = 6, 3, 2
    parents = {"full": full_dag(n), "line": line_dag(n), "random": random_dag(n, 7)}[dag]
    actor = DeterministicActor(n, d + n * a, [16, 16], "relu", a, -1.0, 1.0)
    with torch.no_grad():
        for layer in [*actor.torso.layers, actor.out]:
            layer.weight.normal_()  # outputs far from 0, so a wrong parent input shows
    own = torch.randn(5, n, d)
    calls = []
    actor.out.register_forward_hook(lambda module, args, out: calls.append(1))
    ours = deterministic_dag_actions(actor, own, parents.expand(5, n, n), a)
    assert len(calls) == int(topological_levels(parents).max()) + 1  # one batched pass per level
    assert torch.allclose(ours, one_agent_at_a_time(actor, own, parents, a), atol=1e-6)


def test_product_topology_is_maddpgs_actor():
    env = make("particle/bn-predator-prey-15", n_envs=4, seed=0)
    torch.manual_seed(0)
    bn = BNMADDPG(env.spec, BNMADDPGConfig(topology="product", n_envs=4, buffer_size=1000), CPU)
    maddpg = MADDPG(env.spec, OffPolicyConfig(n_envs=4, buffer_size=1000), CPU)
    own = env.spec.obs_dim
    with torch.no_grad():  # MADDPG's actor weights; the parent rows of the first layer stay random
        first, theirs = bn.actor.torso.layers[0], maddpg.actor.torso.layers[0]
        first.weight[:, :own] = theirs.weight
        first.bias.copy_(theirs.bias)
        for ours, other in zip([*bn.actor.torso.layers[1:], bn.actor.out],
                               [*maddpg.actor.torso.layers[1:], maddpg.actor.out], strict=True):
            ours.load_state_dict(other.state_dict())
    timestep = env.reset()
    actions, extra = bn.policy(timestep)
    assert not extra["parents"].any()
    assert torch.allclose(actions, maddpg.policy(timestep)[0], atol=1e-6)


def test_the_update_conditions_on_the_stored_dag_and_actions():
    env = make("particle/bn-predator-prey-15", n_envs=4, seed=0)
    torch.manual_seed(0)
    agent = BNMADDPG(env.spec, BNMADDPGConfig(topology="heuristic", edge_budget=50, n_envs=4, warmup_steps=0,
                                              batch_size=32, train_interval=10, buffer_size=1000), CPU)
    result = agent.train_iteration(env, env.reset())
    stored = agent.learner.replay.data["parents"][:10]  # [T, B, N, N]: each step's heuristic DAG
    assert bool((stored.sum((-2, -1)) <= 50).all()) and stored.any()
    assert result.losses and all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())


@pytest.mark.parametrize("algo", ["bn_maddpg_heuristic", "bn_maddpg_random"])
def test_runs_through_the_driver(tmp_path, algo):
    config = resolve(algo, "particle/bn-predator-prey-15", parse_set(
        ["run.total_env_steps=1000", "run.eval_interval=500", "run.eval_episodes=2", "algo.warmup_steps=500",
         "algo.batch_size=32", "algo.n_envs=2", "algo.train_interval=25", "algo.buffer_size=2000"]))
    run_dir = execute(config, seed=0, results_dir=tmp_path)
    assert read_json(run_dir / "manifest.json")["status"] == "completed"
    assert config.algo_hparams["edge_budget"] == 50 and config.algo_hparams["lr"] == 1.0e-2  # BN 6.2.1, Table 2
