"""MAPPO with a BN actor (BN 6.2.1; algorithms/bn_mappo.py, algorithms/blocks/dag_policy.py)."""

from __future__ import annotations

import pytest
import torch

from algorithms.blocks.dag import full_dag, line_dag, product_dag, topological_levels
from algorithms.blocks.dag_policy import DagPolicy, parent_block
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.bn_mappo import BNMAPPO, BNMAPPOConfig
from algorithms.mappo import MAPPO
from coopbench.base.io import read_json, read_parquet
from coopbench.config import parse_set, resolve
from coopbench.run import execute
from environments import make
from environments.base import EnvSpec
from environments.seed_batch import seed_view

CPU = torch.device("cpu")


def spec(n: int = 4, actions: int = 3) -> EnvSpec:
    return EnvSpec(name="test/dag", family="test", n_agents=n, obs_dim=2, state_dim=2 * n, n_actions=actions,
                   episode_limit=10)


def copy_parent_policy(n: int, actions: int) -> DagPolicy:
    """A BN actor whose agents copy their parents' action (logit 20 per parent that took it), roots uniform."""
    policy = DagPolicy(spec(n, actions), OnPolicyConfig(hidden_sizes=[8]), 2, CPU, parent_observations=False)
    linear = policy.net.head.linear
    hidden = policy.net.torso.out_features
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        for j in range(n):  # the parent block: slot j, action a -> logit a
            for a in range(actions):
                linear.weight[0, hidden + j * actions + a, a] = 20.0
    return policy


def random_chain(n: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """A chain through the agents in a random order per copy: parents[b, order[k+1], order[k]]."""
    parents = torch.zeros(batch, n, n, dtype=torch.bool)
    for b in range(batch):
        order = torch.randperm(n, generator=generator)
        parents[b, order[1:], order[:-1]] = True
    return parents


def test_agents_sample_in_topological_order_conditioned_on_their_parents_draws():
    n, actions, batch = 5, 3, 256
    policy = copy_parent_policy(n, actions)
    torch.manual_seed(0)
    parents = random_chain(n, batch, torch.Generator().manual_seed(0))
    obs = torch.randn(batch, n, 2)
    step = policy.step(obs, None, policy.initial_memory(batch), torch.zeros(batch, dtype=torch.bool), parents, False)
    # every agent copied its parent's actual draw, down each chain whatever the index order: one action per copy
    assert bool((step.actions == step.actions[:, :1]).all())
    assert len(set(step.actions[:, 0].tolist())) == actions  # the roots drew at random
    # the stored input holds the parents' one-hot actions, zero-padded elsewhere; its re-evaluation gives the
    # very log-probabilities that were sampled with (what PPO's ratio needs)
    assert torch.equal(step.actor_in[..., 2 + n:], parent_block(parents, torch.nn.functional.one_hot(
        step.actions, actions).float(), None))
    mb = {"actor_in": step.actor_in.unsqueeze(0), "starts": torch.zeros(1, batch, dtype=torch.bool)}
    replay = policy.net.head.log_prob(policy.sequence_params(mb), step.actions.unsqueeze(0))[0]
    assert torch.allclose(replay, step.log_probs, atol=1e-5)


def test_sampling_respects_action_masks_even_against_the_parents():
    n, actions, batch = 4, 3, 512
    policy = copy_parent_policy(n, actions)
    torch.manual_seed(1)
    avail = torch.rand(batch, n, actions) < 0.6
    avail[..., 0] |= ~avail.any(-1)  # at least one action each
    parents = line_dag(n).expand(batch, n, n)
    step = policy.step(torch.randn(batch, n, 2), avail, policy.initial_memory(batch),
                       torch.zeros(batch, dtype=torch.bool), parents, False)
    assert bool(avail.gather(-1, step.actions.unsqueeze(-1)).all())
    # where the parent's action is available to the child, the child copies it (it conditions on the draw)
    parent_action = step.actions[:, :-1]
    can_copy = avail[:, 1:].gather(-1, parent_action.unsqueeze(-1)).squeeze(-1)
    assert bool((step.actions[:, 1:][can_copy] == parent_action[can_copy]).all())


@pytest.mark.parametrize(("dag", "levels"), [(product_dag(5), 1), (full_dag(5), 5), (line_dag(5), 5)])
def test_one_batched_pass_per_topological_level(dag, levels):
    policy = copy_parent_policy(5, 2)
    calls = []
    policy.net.head.linear.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    batch = 16
    parents = dag.expand(batch, 5, 5)
    policy.step(torch.randn(batch, 5, 2), None, policy.initial_memory(batch), torch.zeros(batch, dtype=torch.bool),
                parents, False)
    assert len(calls) == levels == int(topological_levels(dag).max()) + 1
    assert all(shape[:2] == (batch, 5) for shape in calls)  # every agent of every copy in each pass


def test_product_topology_is_mappos_independent_policy():
    env = make("coordination/bn-cg-5", n_envs=8, seed=0)
    config = BNMAPPOConfig(topology="product", n_envs=8)
    torch.manual_seed(0)
    bn = BNMAPPO(env.spec, config, CPU)
    mappo = MAPPO(env.spec, OnPolicyConfig(**config.model_dump(exclude={"topology", "edge_budget", "dependency_score",
                                                                        "parent_observations"})), CPU)
    hidden = bn.actor.net.torso.out_features
    with torch.no_grad():  # MAPPO's actor weights in the BN actor; the parent block's rows stay random
        bn.actor.net.torso.load_state_dict(mappo.actor.net.torso.state_dict())
        bn.actor.net.head.linear.weight[:, :hidden] = mappo.actor.net.head.linear.weight
        bn.actor.net.head.linear.bias.copy_(mappo.actor.net.head.linear.bias)
        assert bn.actor.net.head.linear.weight[:, hidden:].abs().sum() > 0
    # the same random stream (a seed batch of one each): the same uniforms for the same step's draws
    mappo.actor.streams.load_state_dict(bn.actor.streams.state_dict())
    timestep = env.reset()
    for _ in range(3):
        view = seed_view(timestep, 1)  # [K = 1, B, ...], as the collector shows it to a method
        ours = bn.policy_step(view, bn.initial_memory(8))
        theirs = mappo.policy_step(view, mappo.initial_memory(8))
        assert torch.equal(ours.actions, theirs.actions)
        assert torch.allclose(ours.log_probs, theirs.log_probs, atol=1e-6)
        assert not ours.actor_in[..., theirs.actor_in.shape[-1]:].any()  # no parents: the block is all zeros
        timestep = env.step(ours.actions.flatten(0, 1))


def test_heuristic_topology_uses_the_steps_positions_under_the_budget():
    env = make("coordination/bn-cg-5", n_envs=64, seed=3)
    agent = BNMAPPO(env.spec, BNMAPPOConfig(topology="heuristic", edge_budget=4,
                                            dependency_score="neg_state_distance", n_envs=64), CPU)
    timestep = env.reset()
    parents = agent.topology(timestep)
    assert bool((parents.sum((-2, -1)) <= 4).all())
    # edges only between agents in the same local state (d_ij = 0 beats -1 while the budget lasts)
    same = timestep.state.unsqueeze(-1) == timestep.state.unsqueeze(-2)
    assert bool((~parents | same).all())
    assert len({tuple(p.flatten().tolist()) for p in parents}) > 1  # recomputed per copy from its state


@pytest.mark.parametrize(("algo", "env"), [("bn_mappo_heuristic", "coordination/bn-cg-5"),
                                           ("bn_mappo_random", "aloha/bn-aloha-10"),
                                           ("bn_mappo_full", "coordination/bn-cg-5"),
                                           ("bn_mappo_heuristic", "aloha/bn-aloha-10")])
def test_runs_through_the_driver(tmp_path, algo, env):
    config = resolve(algo, env, parse_set(["run.total_env_steps=2048", "run.eval_interval=1024",
                                           "run.eval_episodes=4", "algo.n_envs=8", "algo.rollout_length=32"]))
    run_dir = execute(config, seed=0, results_dir=tmp_path)
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["status"] == "completed"
    assert read_parquet(run_dir / "metrics.parquet")["env_steps"].tolist() == [0, 1024, 2048]
    state = torch.load(run_dir / "model.pt", weights_only=True)
    if algo == "bn_mappo_random":  # the run's random DAG is part of its checkpoint, within the budget
        assert 0 < int(state["dag_topology"].sum()) <= config.algo_hparams["edge_budget"] == 10
