"""The value-based family end to end: what each method learns on the QMIX paper's two-step game, bitwise
checkpoint/resume (the replay buffer and the episodes in progress are part of the state), and runs through the
driver."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from algorithms.registry import ALGORITHMS
from coopbench.run import Progress, load_checkpoint, save_checkpoint, seed_everything
from tests.conftest import REPO
from tests.value_based_games import CountingGame, TwoStepGame, greedy_return

VALUE_BASED = ["iql", "vdn", "qmix", "qplex", "qtran"]


def build(algo: str, env_cls, n_envs: int, **hparams):
    cls = ALGORITHMS.get(algo).load()
    env = env_cls(n_envs, seed=0)
    return env, cls(env.spec, cls.Config(n_envs=n_envs, **hparams), torch.device("cpu"))


def train_two_step(algo: str, seed: int, iterations: int = 600):
    """Rashid et al. 2018, sec. 6.1: uniform exploration throughout (epsilon = 1), feed-forward agents."""
    seed_everything(seed)
    env, algorithm = build(algo, TwoStepGame, 8, epsilon_start=1.0, epsilon_finish=1.0, recurrent=False,
                           hidden_sizes=[32], last_action_input=False, buffer_episodes=500, batch_episodes=32,
                           target_update_interval=50, optimizer="adam", lr=1e-3)
    timestep = env.reset()
    for _ in range(iterations):
        timestep = algorithm.train_iteration(env, timestep).timestep
    return algorithm


@pytest.mark.slow
def test_two_step_game_qmix_finds_the_optimum_and_vdn_does_not():
    """QMIX paper Table 1 / Fig. 3: VDN's additive Q_tot cannot represent state 2B's payoffs and settles for 2A
    (return 7); QMIX's monotonic mixing conditioned on the state reaches 2B's 8."""
    for seed in (0, 1):
        assert greedy_return(train_two_step("qmix", seed)) == 8.0
        assert greedy_return(train_two_step("vdn", seed)) == 7.0


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["qplex", "qtran"])
def test_two_step_game_full_expressiveness_methods_find_the_optimum(algo):
    """QPLEX (IGM with a complete class, Wang et al. 2021) and QTRAN (Son et al. 2019) represent any
    factorizable game: 8."""
    assert greedy_return(train_two_step(algo, 0)) == 8.0


@pytest.mark.parametrize("algo", VALUE_BASED)
def test_a_resumed_run_continues_bitwise(tmp_path, algo):
    """Checkpoint mid-run (wrapped replay ring, episodes of different lengths in progress), restore into a fresh
    process state with another RNG, continue: losses and parameters identical to the uninterrupted run."""
    hparams = dict(buffer_episodes=10, batch_episodes=4, target_update_interval=3, epsilon_anneal_steps=100,
                   hidden_sizes=[16], rnn_hidden_size=8)
    seed_everything(0)
    env, algorithm = build(algo, CountingGame, 3, **hparams)
    timestep = env.reset()
    for _ in range(6):
        timestep = algorithm.train_iteration(env, timestep).timestep
    assert algorithm.learner.buffer.size == 10 and (algorithm.learner.collector.t > 0).any()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, algorithm, env, timestep, Progress())

    def continue_(algorithm, env, timestep):
        losses = []
        for _ in range(5):
            result = algorithm.train_iteration(env, timestep)
            timestep = result.timestep
            losses.append(result.losses)
        return losses, [p.detach().clone() for p in algorithm.learner.params]

    reference_losses, reference_params = continue_(algorithm, env, timestep)
    seed_everything(123)
    env2, fresh = build(algo, CountingGame, 3, **hparams)
    timestep2, _ = load_checkpoint(path, fresh, env2)
    losses, params = continue_(fresh, env2, timestep2)
    assert losses == reference_losses and all(losses)
    assert all(torch.equal(a, b) for a, b in zip(params, reference_params, strict=True))


def test_evaluation_is_greedy_and_uses_its_own_memory():
    env, algorithm = build("qmix", CountingGame, 2, hidden_sizes=[8], rnn_hidden_size=8)
    timestep = env.reset()
    memory = algorithm.initial_memory(2)
    first, memory1 = algorithm.act(timestep, memory, deterministic=True)
    again, _ = algorithm.act(timestep, memory, deterministic=True)
    assert torch.equal(first, again)  # greedy: no exploration even at epsilon 1
    assert torch.equal(algorithm.learner.memory, algorithm.initial_memory(2))  # training memory untouched
    assert memory1.shape == (2, 2, 8 + 3) and torch.equal(memory1[..., 8:].argmax(-1), first)


def run_cli(results, steps=3000):
    args = ["run", "qmix", "matrix/cora-mtg", "--seed", "3", "--set", f"run.total_env_steps={steps}",
            "--set", "run.eval_interval=500", "--set", "run.eval_episodes=4", "--set", "algo.batch_episodes=4",
            "--results-dir", str(results)]
    return subprocess.Popen([sys.executable, "-m", "coopbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_coopbench_run_trains_qmix(tmp_path):
    proc = run_cli(tmp_path, steps=1000)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    [metrics] = tmp_path.glob("runs/**/metrics.parquet")
    manifest = json.loads((metrics.parent / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["algo_family"] == "value_based"
    rows = pd.read_parquet(metrics)
    assert rows["env_steps"].tolist() == [0, 500, 1000] and rows["value_loss"].notna().iloc[-1]


@pytest.mark.slow
def test_sigkill_then_restart_gives_identical_metrics(tmp_path):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    ref = run_cli(reference)
    victim = run_cli(interrupted)
    deadline, checkpoints = time.time() + 120, []
    while time.time() < deadline and not checkpoints:
        checkpoints = list(interrupted.glob("runs/**/checkpoint.pt"))
        time.sleep(0.05)
    assert checkpoints, "no checkpoint appeared"
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not list(interrupted.glob("runs/**/manifest.json")), "killed too late: the run had finished"
    resumed = run_cli(interrupted)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    [ref_metrics] = reference.glob("runs/**/metrics.parquet")
    [new_metrics] = interrupted.glob("runs/**/metrics.parquet")
    assert ref_metrics.read_bytes() == new_metrics.read_bytes()
    assert json.loads((new_metrics.parent / "manifest.json").read_text())["resumes"] == 1
