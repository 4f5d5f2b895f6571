"""Seed batches of the exact tabular planners (docs/architecture.md, "Seed batches"): K seeds of tabular BN policy
gradient (`bn_tabular_*`) or ACPI in one process are K solo runs, bitwise on CPU.

BN: the K seeds' logits step together through the batched exact maths (its one product whose rounding depended on
the batch size is `bn_tabular._expected_next`), the game's model is shared, each seed draws its copies' actions from
its own stream. ACPI: the plan does not depend on the seed, so a batch plans once and shares it. Both keep what is
the same for every seed under the state key `shared` (`coopbench.base.seed_state`)."""

import pytest
import torch

from algorithms.registry import capabilities
from coopbench.base.seed_state import SHARED, seed_slice, seed_stack
from coopbench.cli import main
from coopbench.config import resolve
from coopbench.run import build_seeds
from tests.seed_batch_checks import (
    assert_killed_batch_resumes_identically,
    assert_same_run_files,
    assert_same_state,
    train,
    train_batch_and_solos,
)

CPU = torch.device("cpu")
SEEDS = [0, 1, 2]
CASES = {  # (algo, task, overrides): 4 copies x 7 steps per iteration, so episodes end inside iterations
    "bn-full-cg3": ("bn_tabular_full", "coordination/bn-cg-3", {}),
    "bn-line-cg5": ("bn_tabular_line", "coordination/bn-cg-5", {}),
    "bn-subteams-cg5": ("bn_tabular_subteam_2_3", "coordination/bn-cg-5", {}),
    "bn-product-matrix": ("bn_tabular_product", "matrix/acpo-3x3", {}),
    "acpi-finite": ("acpi", "matrix/cora-mtg", {}),
    "acpi-discounted": ("acpi", "coordination/bn-cg-3", {"horizon": "discounted", "gamma": 0.95}),
}
ITERATIONS = 4


def _config(algo, task, overrides):
    return resolve(algo, task, {"algo": {"n_envs": 4, "rollout_length": 7, **overrides},
                                "run": {"total_env_steps": 10_000}})


@pytest.mark.parametrize("case", CASES)
def test_a_batch_seed_plans_acts_and_steps_bitwise_as_its_solo_run(case):
    algo, task, overrides = CASES[case]
    assert capabilities(algo).seed_batch
    batch, results = train_batch_and_solos(_config(algo, task, overrides), SEEDS, ITERATIONS)
    # and not trivially: episodes ended, and the seeds' samples (BN: also their policies) differ where the game or
    # the policy is random (ACPI's plan on the deterministic matrix game plays every seed alike)
    assert sum(len(r.episode_returns) for r in results) > 0
    if case != "acpi-finite":
        returns = {tuple(tuple(r.seeds[k].episode_returns.tolist()) for r in results) for k in range(len(SEEDS))}
        assert len(returns) > 1
    if algo.startswith("bn_tabular"):
        assert not torch.equal(batch.logits[0], batch.logits[1])
        assert len({r.seeds[k].losses["bn_value"] for r in results[-1:] for k in range(len(SEEDS))}) == 3


@pytest.mark.parametrize("case", ["bn-line-cg5", "acpi-finite"])
def test_sampled_actions_of_a_batch_seed_are_its_solo_runs(case):
    """Acting with `deterministic=False` (not the driver's evaluation, which is greedy) draws from each seed's own
    stream, before and after the model is seen."""
    config = _config(*CASES[case])
    solos = [build_seeds(config, [seed], CPU) for seed in SEEDS]
    env, batch = build_seeds(config, SEEDS, CPU)
    for trained in (False, True):
        if trained:
            train(batch, env, 1)
            for solo_env, solo in solos:
                train(solo, solo_env, 1)
        timestep = env.reset()
        actions, _ = batch.act(timestep, batch.initial_memory(batch.n_envs), deterministic=False)
        for k, (solo_env, solo) in enumerate(solos):
            solo_step = solo_env.reset()
            alone, _ = solo.act(solo_step, solo.initial_memory(solo.n_envs), deterministic=False)
            assert torch.equal(actions.view(len(SEEDS), -1, actions.shape[-1])[k], alone), (trained, k)


def test_the_shared_part_of_a_state_is_neither_sliced_nor_stacked_and_must_agree():
    config = _config(*CASES["bn-full-cg3"])
    env, batch = build_seeds(config, SEEDS, CPU)
    train(batch, env, 1)
    state = batch.state_dict()
    model = state[SHARED]["model"]
    assert model["transitions"].shape[0] == 8  # S = 2^3 states, not split into 3 seeds' parts
    parts = [seed_slice(state, k, len(SEEDS)) for k in range(len(SEEDS))]
    assert all(p[SHARED]["model"]["transitions"] is model["transitions"] for p in parts)
    assert_same_state(seed_stack(parts), state)
    parts[1] = {**parts[1], SHARED: {"model": {**model, "rewards": model["rewards"] + 1.0}}}
    with pytest.raises(ValueError, match="shared states differ"):
        seed_stack(parts)


SETTINGS = ["--set", "run.total_env_steps=336", "--set", "run.eval_interval=112", "--set", "run.eval_episodes=4",
            "--set", "algo.n_envs=4", "--set", "algo.rollout_length=7"]


@pytest.mark.parametrize(("algo", "task"), [("bn_tabular_full", "coordination/bn-cg-3"),
                                            ("acpi", "matrix/cora-mtg")])
def test_the_cli_writes_each_seed_of_a_batch_byte_for_byte_as_alone(tmp_path, algo, task):
    assert main(["run", algo, task, "--seeds", "0-2", "--results-dir", str(tmp_path / "batch"), *SETTINGS]) == 0
    for seed in SEEDS:
        assert main(["run", algo, task, "--seed", str(seed), "--results-dir", str(tmp_path / "solo"), *SETTINGS]) == 0
    assert_same_run_files(tmp_path / "batch", tmp_path / "solo", 3)


def test_a_killed_bn_batch_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """Killed after its first round of checkpoints (env step 112 of 336): each seed's checkpoint holds its logits,
    stream and the shared model; restarted, every seed ends with the uninterrupted batch's bytes."""
    args = ["run", "bn_tabular_line", "coordination/bn-cg-3", "--seeds", "0-2", *SETTINGS]
    assert_killed_batch_resumes_identically(args, 3, tmp_path, monkeypatch, kill_at_save=3)
