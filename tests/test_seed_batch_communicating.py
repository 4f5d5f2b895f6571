"""Seed batches of the communicating and BN on-policy methods (AS and its baselines, BN-MAPPO): what
tests/test_seed_batch.py's parametrized check does not reach, a seed that exchanges nothing while the others of its
batch do (the anticipations' `ExchangeAdam`), and each seed's bytes through the CLI."""

import pytest
import torch

from algorithms.blocks.networks import AgentLinear
from algorithms.blocks.protocol import ExchangeAdam
from coopbench.cli import main


def _grads(layer: AgentLinear, seeds: int, step: int) -> None:
    """A gradient per seed that depends on the seed and the step only (the same in a batch and alone)."""
    for p in layer.parameters():
        blocks = [torch.sin(torch.arange(p[0:p.shape[0] // seeds].numel(), dtype=p.dtype) * (k + 1) + step)
                  for k in range(seeds)]
        p.grad = torch.cat(blocks).view_as(p)


def test_a_silent_seed_skips_the_anticipation_step_and_keeps_its_own_step_count():
    seeds, schedule = [0, 1, 2], [[True, True, True], [True, False, True], [False, False, True], [True, True, True]]
    torch.manual_seed(0)
    batch = AgentLinear(4, 3, 5, n_seeds=3)
    solos = [AgentLinear(4, 3, 5, n_seeds=1) for _ in seeds]
    with torch.no_grad():
        for k, solo in enumerate(solos):
            for mine, alone in zip(batch.parameters(), solo.parameters(), strict=True):
                alone.copy_(mine.chunk(3)[k])
    optimizer = ExchangeAdam(batch.parameters(), 3, lr=1e-2, eps=1e-5)
    solo_optimizers = [ExchangeAdam(solo.parameters(), 1, lr=1e-2, eps=1e-5) for solo in solos]
    for step, active in enumerate(schedule):
        _grads(batch, 3, step)
        optimizer.step(active)
        for k, (solo, solo_optimizer) in enumerate(zip(solos, solo_optimizers, strict=True)):
            # seed k alone: it steps only when it exchanged (the solo run's `communicating`)
            for p in solo.parameters():
                p.grad = torch.sin(torch.arange(p.numel(), dtype=p.dtype) * (k + 1) + step).view_as(p)
            solo_optimizer.step([active[k]])
    steps = optimizer.state_dict()["state"][0]["step"]
    assert steps.tolist() == [3, 2, 4]  # each seed's own count of the steps it took
    for k, (solo, solo_optimizer) in enumerate(zip(solos, solo_optimizers, strict=True)):
        for mine, alone in zip(batch.parameters(), solo.parameters(), strict=True):
            assert torch.equal(mine.chunk(3)[k], alone)  # bitwise: the same moments, bias corrections and steps
        for i, state in solo_optimizer.state_dict()["state"].items():
            batched = optimizer.state_dict()["state"][i]
            assert torch.equal(batched["exp_avg"].chunk(3)[k], state["exp_avg"])
            assert torch.equal(batched["step"][k:k + 1], state["step"])


def test_nobody_exchanging_moves_nothing():
    layer = AgentLinear(2, 3, 4, n_seeds=2)
    before = [p.detach().clone() for p in layer.parameters()]
    optimizer = ExchangeAdam(layer.parameters(), 2, lr=1e-2)
    _grads(layer, 2, 0)
    optimizer.step([False, False])
    assert all(torch.equal(b, p) for b, p in zip(before, layer.parameters(), strict=True))
    assert optimizer.state_dict()["state"] == {}


def _run(tmp_path, algo, env, seeds, name):
    args = ["run", algo, env, "--set", "run.total_env_steps=256", "--set", "run.eval_interval=128",
            "--set", "algo.rollout_length=16", "--set", "algo.n_envs=4", "--set", "run.eval_episodes=2",
            "--set", "algo.ppo_epochs=2", "--set", "algo.num_minibatches=2", "--results-dir", str(tmp_path / name)]
    assert main([*args, *seeds]) == 0
    return tmp_path / name


@pytest.mark.parametrize(("algo", "env"), [("as_one_neighbour", "gridworld/as-coop-predation-8"),
                                           ("vps", "gridworld/as-exchange"),
                                           ("bn_mappo_random", "coordination/bn-cg-5")])
def test_a_seed_of_a_batch_writes_the_bytes_of_its_solo_run(tmp_path, algo, env):
    batch = _run(tmp_path, algo, env, ["--seeds", "0-2"], "batch")
    for seed in (0, 2):
        solo = _run(tmp_path, algo, env, ["--seed", str(seed)], f"solo{seed}")
        for name in ("metrics.parquet", "model.pt"):
            [mine] = batch.glob(f"runs/{env}/{algo}/*/seed-{seed}/{name}")
            [alone] = solo.glob(f"runs/{env}/{algo}/*/seed-{seed}/{name}")
            assert mine.read_bytes() == alone.read_bytes(), (seed, name)
