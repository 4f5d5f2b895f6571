"""Seed batches of the value-based family (docs/architecture.md, "Seed batches"): K seeds of IQL, VDN, QMIX, QPLEX,
QTRAN or LAN in one process are K solo runs, bitwise on CPU.

A value-based iteration runs until n_envs episodes of each seed have finished, so the seeds of a batch play rounds
of different lengths; a seed whose round is over waits (its environment is not stepped, its streams not drawn
from). The games below end their episodes at steps that depend on the seed, so the rounds here do differ.
(tests/test_seed_batch.py's harness assumes the on-policy collect/update API, hence this file.)
"""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from algorithms.registry import ALGORITHMS, capabilities
from coopbench import run as run_module
from coopbench.config import load_algo_file, parse_set, resolve
from coopbench.run import seed_everything, seed_slice, seed_stack
from environments.seed_batch import SeedBatch
from tests.seed_batch_checks import assert_same_run_files, assert_same_state, train
from tests.value_based_games import CountingGame

CPU = torch.device("cpu")
SEEDS = [0, 1, 2]
CONVERTED = ["iql", "iql_no_fog", "vdn", "qmix", "qplex", "qtran", "lan", "lan_mean", "vast"]


class SeededLengths(CountingGame):
    """CountingGame whose episode lengths depend on the environment's seed: episode k of seed s lasts 4 steps
    (truncated) where (k + s) % (s + 2) == 0, else 1, so the seeds of a batch finish their episodes at different
    steps and, on average, take different numbers of steps per episode (2.5, 2, 1.75 for seeds 0, 1, 2)."""

    def __init__(self, n_envs: int, seed: int, device="cpu"):
        super().__init__(n_envs, seed, device)
        self.offset = seed
        self.spec = replace(self.spec, return_bounds=(0.0, 10.0))  # for the driver's normalization

    def length(self, ids: torch.Tensor) -> torch.Tensor:
        return 1 + ((ids + self.offset) % (self.offset + 2) == 0).long() * (self.LIMIT - 1)


# Small widths that are not multiples of the SIMD blocks on purpose (networks.lane_aligned's case); every update
# changes the targets (target_update_interval 2) and the exploration anneals over the run.
SMALL = {"buffer_episodes": 12, "batch_episodes": 3, "target_update_interval": 2, "epsilon_anneal_steps": 40,
         "hidden_sizes": [12], "rnn_hidden_size": 10, "mixing_embed_dim": 6, "hypernet_embed": 10,
         "adv_hypernet_embed": 10, "value_embed_size": 10, "value_hidden_sizes": [10, 10]}
CASES = {  # (algo, n_envs, overrides)
    "qmix": ("qmix", 1, {}),  # GRU agents, hypernetwork mixer
    "qmix-2-envs": ("qmix", 2, {"updates_per_episode": 2}),  # rounds of 2+ episodes: copies of a seed wait too
    "vdn": ("vdn", 1, {}),
    "qplex": ("qplex", 1, {}),
    "qtran": ("qtran", 1, {"td_lambda": 0.6}),  # TD(lambda) targets
    "lan": ("lan", 1, {}),  # Adam
    "lan-mean-feed-forward": ("lan_mean", 3, {"recurrent": False}),
    "iql-no-fog-per-agent": ("iql_no_fog", 1, {"share_parameters": False, "target_update_tau": 0.3}),
    "iql": ("iql", 2, {"optimizer": "adam"}),
    "vast": ("vast", 1, {"assignment_hidden": 10}),  # per-seed sub-team draws, assignment loss and epsilons
    "vast-mlp-mixer": ("vast", 2, {"mixer": "mlp", "assignment_hidden": 10, "subteam_ratio": 1.0}),
}


def hparams(algo: str, n_envs: int, overrides: dict) -> dict:
    small = {k: v for k, v in SMALL.items() if k in ALGORITHMS.get(algo).load().Config.model_fields}
    return {**load_algo_file(algo).hparams, **small, "n_envs": n_envs, **overrides}


def build(algo: str, config: dict, seed: int):
    seed_everything(seed)
    cls = ALGORITHMS.get(algo).load()
    env = SeededLengths(config["n_envs"], seed=seed)
    return env, cls(env.spec, cls.Config(**config), CPU)


@pytest.mark.parametrize("case", CASES)
def test_a_batch_seed_trains_bitwise_as_its_solo_run(case):
    algo, n_envs, overrides = CASES[case]
    assert capabilities(algo).seed_batch
    config, iterations = hparams(algo, n_envs, overrides), 9
    solos = []
    for seed in SEEDS:
        env, algorithm = build(algo, config, seed)
        results = train(algorithm, env, iterations)
        solos.append((algorithm.state_dict(), results))

    envs, states = [], []
    for seed in SEEDS:
        env, algorithm = build(algo, config, seed)
        envs.append(env)
        states.append(algorithm.state_dict())
    cls = ALGORITHMS.get(algo).load()
    batch = cls(envs[0].spec, cls.Config(**config), CPU, n_seeds=len(SEEDS))
    batch.load_state_dict(seed_stack(states))
    results = train(batch, SeedBatch(envs), iterations)

    state = batch.state_dict()
    for k, (solo_state, solo_results) in enumerate(solos):
        assert_same_state(seed_slice(state, k, len(SEEDS)), solo_state, f"seed {k}")
        for it, (result, solo) in enumerate(zip(results, solo_results, strict=True)):
            part = result.seeds[k]
            assert part.env_steps == solo.env_steps and part.losses == solo.losses, f"seed {k} iteration {it}"
            assert torch.equal(part.episode_returns, solo.episode_returns)
    # what the comparison covered: rounds of different lengths across seeds, updates past a target update
    steps = [[r.seeds[k].env_steps for r in results] for k in range(len(SEEDS))]
    assert any(len({seed_steps[i] for seed_steps in steps}) > 1 for i in range(iterations)), steps
    assert batch.learner.updates >= 2 * config["target_update_interval"]


def test_a_finished_seed_waits_untouched():
    """The round of a seed that has its episodes ends: its environment is not stepped and its exploration stream
    is not drawn from while the others play on."""
    config = hparams("qmix", 1, {})
    envs, states = [], []
    for seed in SEEDS:
        env, algorithm = build("qmix", config, seed)
        envs.append(env)
        states.append(algorithm.state_dict())
    cls = ALGORITHMS.get("qmix").load()
    batch = cls(envs[0].spec, cls.Config(**config), CPU, n_seeds=3)
    batch.load_state_dict(seed_stack(states))
    env = SeedBatch(envs)
    timestep = env.reset()
    calls = [0, 0, 0]
    for k, e in enumerate(envs):
        step = e.step
        e.step = lambda actions, k=k, step=step: (calls.__setitem__(k, calls[k] + 1), step(actions))[1]
    result = batch.train_iteration(env, timestep)
    # episode 0 lasts 4 steps in seed 0, 1 in seeds 1 and 2: each seed's env stepped exactly its own episode's length
    assert calls == [4, 1, 1] and [p.env_steps for p in result.seeds] == [4, 1, 1]
    assert batch.learner.env_steps.tolist() == [4, 1, 1]
    streams = [g.get_state() for g in batch.learner.streams.generators]
    alone = [build("qmix", config, seed)[1] for seed in SEEDS]
    for k, solo in enumerate(alone):  # each stream advanced by its own steps' draws only
        game = SeededLengths(1, seed=SEEDS[k])
        solo.learner.collect(game, game.reset())
        assert torch.equal(streams[k], solo.learner.streams.generators[0].get_state())


def test_the_cli_writes_each_seed_of_a_batch_byte_for_byte_as_alone(tmp_path, cli):
    settings = ["--set", "run.total_env_steps=300", "--set", "run.eval_interval=100", "--set", "run.eval_episodes=2",
                "--set", "algo.batch_episodes=4", "--set", "algo.target_update_interval=3"]
    batch = cli("run", "qmix", "matrix/cora-mtg", "--seeds", "0-2", "--results-dir", str(tmp_path / "batch"),
                *settings)
    assert batch.returncode == 0, batch.stderr
    for seed in SEEDS:
        solo = cli("run", "qmix", "matrix/cora-mtg", "--seed", str(seed), "--results-dir", str(tmp_path / "solo"),
                   *settings)
        assert solo.returncode == 0, solo.stderr
    assert_same_run_files(tmp_path / "batch", tmp_path / "solo", 3)


def test_the_driver_finishes_each_seed_at_its_own_budget(tmp_path, monkeypatch):
    """Seeds whose rounds take different steps reach the budget at different iterations: each one evaluates at its
    own points and completes at its own budget, byte for byte its solo run (the driver, in process, on
    SeededLengths)."""
    monkeypatch.setattr(run_module, "make", lambda name, n_envs, seed, device, **params: SeededLengths(n_envs, seed))
    config = resolve("qmix", "matrix/cora-mtg", parse_set([
        "run.total_env_steps=60", "run.eval_interval=20", "run.eval_episodes=2", "algo.batch_episodes=3",
        "algo.target_update_interval=2", "algo.hidden_sizes=[12]", "algo.rnn_hidden_size=10",
        "algo.mixing_embed_dim=6", "algo.hypernet_embed=10"]))
    batch_dirs = run_module.execute_seeds(config, SEEDS, tmp_path / "batch")
    solo_dirs = [run_module.execute(config, seed, tmp_path / "solo") for seed in SEEDS]
    iterations = set()
    for b, s in zip(batch_dirs, solo_dirs, strict=True):
        for name in ("model.pt", "metrics.parquet"):
            assert (b / name).read_bytes() == (s / name).read_bytes(), b / name
        iterations.add(int(pd.read_parquet(b / "metrics.parquet")["iteration"].iloc[-1]))
    assert len(iterations) > 1  # the seeds did finish at different iterations
