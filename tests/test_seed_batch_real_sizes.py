"""Seed batches at the sizes real runs reach, on real tasks: each seed of a batch of three, built as the driver
builds it (`run.build_seeds`), trains bitwise as its solo run. The families' seed-batch tests use small networks
and batches; these cases are the ones where batch-shaped rounding showed only at size (tests/
test_seed_batch_kernels.py has the kernels): weight gradients over ~1,000+ rows (off-policy batches of 1,024, MAPPO's
default minibatches, value-based batches of whole episodes), a team reward expanded over ten agents (ALOHA)."""

import pytest
import torch

from coopbench.config import resolve
from coopbench.run import build_seeds, seed_slice
from tests.seed_batch_checks import assert_same_state, train

CPU = torch.device("cpu")
SEEDS = [0, 1, 2]
OFF_POLICY = {"warmup_steps": 200, "batch_size": 1024, "update_per_train": 0.05, "train_interval": 50}
VALUE_BASED = {"batch_episodes": 4, "buffer_episodes": 8}
CASES = {  # (algo, task, overrides, iterations): the configs' defaults otherwise
    "maddpg-batch-1024": ("maddpg", "differential/cora-5agent", OFF_POLICY, 5),
    "ac_td3-batch-1024": ("ac_td3", "differential/cora-5agent", OFF_POLICY, 5),
    "qmix-aloha-team-reward": ("qmix", "aloha/bn-aloha-10", VALUE_BASED, 6),
    "lan_mean-exchange": ("lan_mean", "gridworld/as-exchange", VALUE_BASED, 6),
    "vast_heuristic-coordination": ("vast_heuristic", "coordination/bn-cg-5", VALUE_BASED, 6),  # BN Algorithm 1
    "mappo-aloha-default": ("mappo", "aloha/bn-aloha-10", {}, 2),
    "happo-coordination-default": ("happo", "coordination/bn-cg-5", {}, 2),
    "ippo-per-agent-aloha": ("ippo", "aloha/bn-aloha-10", {"share_parameters": False}, 2),  # bmm over seeds x agents
}


@pytest.mark.parametrize("case", CASES)
def test_a_batch_seed_trains_bitwise_as_its_solo_run_at_real_sizes(case):
    algo, task, overrides, iterations = CASES[case]
    config = resolve(algo, task, {"algo": overrides, "run": {"total_env_steps": 10_000_000}})
    solos = []
    for seed in SEEDS:
        env, algorithm = build_seeds(config, [seed], CPU)
        train(algorithm, env, iterations)
        solos.append(algorithm.state_dict())
    env, batch = build_seeds(config, SEEDS, CPU)
    train(batch, env, iterations)
    state = batch.state_dict()
    for k, solo in enumerate(solos):
        assert_same_state(seed_slice(state, k, len(SEEDS)), solo, f"seed {k}")
    learner = getattr(batch, "learner", None)  # the comparison covered gradient steps
    assert learner is None or int(learner.updates) > 0
