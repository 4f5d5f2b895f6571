"""Seed batches of the off-policy family (docs/architecture.md, "Seed batches"): K seeds of MADDPG, HATD3, AC-TD3 or
BN's MADDPG in one process are K solo runs, bitwise on CPU.

The batch is built as the driver builds it (`run.build_seeds`: each seed under its own `seed_everything`, then
stacked) and trained through warm-up, replay sampling, critic and delayed actor updates, target updates, with the
replay ring wrapping; each seed's state (networks, targets, Adam, replay ring, random streams, counters) must then
equal its solo run's exactly, and so must every iteration's steps, returns and losses.
(tests/test_seed_batch.py's harness assumes the on-policy collect/update API, hence this file.)
"""

import pytest
import torch

from algorithms.registry import capabilities
from coopbench.config import resolve
from coopbench.run import build_seeds
from tests.seed_batch_checks import (
    assert_killed_batch_resumes_identically,
    assert_same_run_files,
    train_batch_and_solos,
)

CPU = torch.device("cpu")
SEEDS = [0, 1, 2]

# 4 copies x 5 steps per iteration, 2 iterations of warm-up, then 2 gradient steps per iteration on 16 samples per
# seed from a ring of 15 rows (it wraps in the 4th iteration); widths that are not multiples of the SIMD blocks.
SMALL = {"n_envs": 4, "train_interval": 5, "warmup_steps": 40, "update_per_train": 0.4, "batch_size": 16,
         "buffer_size": 60, "hidden_sizes": [12, 10]}
CASES = {  # (algo, task, overrides)
    "maddpg": ("maddpg", "differential/cora-2agent", {}),
    # shared actor with ids, BenchMARL's actor loss, tanh torsos (networks.lane_aligned), 3-step returns
    "maddpg-shared-current": ("maddpg", "differential/cora-5agent", {
        "share_parameters": True, "actor_others_actions": "current", "activation": "tanh", "n_step": 3}),
    "hatd3": ("hatd3", "differential/cora-5agent", {"policy_freq": 1}),  # per-seed agent orders, agentwise Adam rows
    "hatd3-shared": ("hatd3", "differential/cora-2agent", {"share_parameters": True, "activation": "elu"}),
    "ac_td3": ("ac_td3", "differential/cora-5agent", {"n_step": 3}),  # chained acting and critics, k-step targets
    "bn_maddpg_random": ("bn_maddpg_random", "differential/cora-5agent", {"edge_budget": 4}),  # a DAG per seed
    "bn_maddpg_heuristic": ("bn_maddpg_heuristic", "particle/bn-predator-prey-15", {  # a DAG per copy and step
        "warmup_steps": 20, "batch_size": 8, "edge_budget": 20}),
}
ITERATIONS = 5


@pytest.mark.parametrize("case", CASES)
def test_a_batch_seed_trains_bitwise_as_its_solo_run(case):
    algo, task, overrides = CASES[case]
    assert capabilities(algo).seed_batch
    config = resolve(algo, task, {"algo": {**SMALL, **overrides}, "run": {"total_env_steps": 10_000}})
    batch, results = train_batch_and_solos(config, SEEDS, ITERATIONS)
    # what the comparison covered: updates after the warm-up (actors too), a wrapped ring, seeds that differ
    learner = batch.learner
    assert learner.updates >= 6 and "policy_loss" in results[-1].losses
    assert learner.replay.size == learner.replay.rows and learner.replay.next != 0
    weights = batch.actor.torso.layers[0].weight.view(len(SEEDS), -1)
    assert not torch.equal(weights[0], weights[1])
    assert len({tuple(r.seeds[k].losses["value_loss"] for r in results[2:]) for k in range(len(SEEDS))}) == 3
    if case == "bn_maddpg_random":  # each seed acts in its own DAG
        dags = batch.topology.fixed.view(len(SEEDS), 5, 5)
        assert not (torch.equal(dags[0], dags[1]) and torch.equal(dags[1], dags[2]))


def test_hatd3_seeds_update_their_agents_in_their_own_orders():
    """The batch draws one order per seed from each seed's update stream (so a seed's order is its solo run's);
    with 5 agents and 3 seeds the orders differ."""
    config = resolve("hatd3", "differential/cora-5agent", {"algo": {**SMALL, "warmup_steps": 0}})
    env, batch = build_seeds(config, SEEDS, CPU)
    streams = [g.get_state() for g in batch.learner.update_streams.generators]
    orders = batch.learner.update_streams.permutations(5)
    for g, s in zip(batch.learner.update_streams.generators, streams, strict=True):
        g.set_state(s)
    assert len({tuple(o.tolist()) for o in orders}) > 1
    for k, seed in enumerate(SEEDS):
        _, solo = build_seeds(config, [seed], CPU)
        assert torch.equal(solo.learner.update_streams.permutations(5)[0], orders[k])


@pytest.mark.parametrize("algo", ["maddpg", "hatd3"])
def test_the_cli_writes_each_seed_of_a_batch_byte_for_byte_as_alone(tmp_path, cli, algo):
    settings = ["--set", "run.total_env_steps=400", "--set", "run.eval_interval=200", "--set", "run.eval_episodes=3",
                "--set", "algo.n_envs=4", "--set", "algo.train_interval=5", "--set", "algo.warmup_steps=100",
                "--set", "algo.batch_size=32", "--set", "algo.buffer_size=200", "--set", "algo.hidden_sizes=[16,16]"]
    task = "differential/cora-2agent"
    batch = cli("run", algo, task, "--seeds", "0-2", "--results-dir", str(tmp_path / "batch"), *settings)
    assert batch.returncode == 0, batch.stderr
    for seed in SEEDS:
        solo = cli("run", algo, task, "--seed", str(seed), "--results-dir", str(tmp_path / "solo"), *settings)
        assert solo.returncode == 0, solo.stderr
    assert_same_run_files(tmp_path / "batch", tmp_path / "solo", 3)


def test_a_killed_batch_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """Each seed's checkpoint holds its slice of the batch (its replay rows, half full here, and its streams); a
    batch killed at its second round of checkpoints (env step 400) and restarted from them ends with every seed's
    bytes of an uninterrupted batch."""
    args = ["run", "maddpg", "differential/cora-2agent", "--seeds", "0-2", "--set", "run.total_env_steps=600",
            "--set", "run.eval_interval=200", "--set", "run.eval_episodes=3", "--set", "algo.n_envs=4",
            "--set", "algo.train_interval=5", "--set", "algo.warmup_steps=100", "--set", "algo.batch_size=32",
            "--set", "algo.buffer_size=400", "--set", "algo.hidden_sizes=[16,16]"]
    assert_killed_batch_resumes_identically(args, 3, tmp_path, monkeypatch, kill_at_save=3)
