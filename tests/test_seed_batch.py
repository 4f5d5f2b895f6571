"""Seed batches (docs/architecture.md, "Seed batches"): K seeds trained in one process are K solo runs.

- seed k of a batch starts from its solo run's weights and random streams (exactly) and takes its solo run's
  first-rollout actions (exactly, on discrete tasks);
- after updates its parameters equal the solo run's (bitwise on CPU, see TOLERANCE);
- a batch of one is the solo run, byte for byte; a killed K-seed job resumes to the bytes of an uninterrupted one
  for every seed; a method without seed batches runs `--seeds` one after another.
"""

import dataclasses
import json

import pytest
import torch

from algorithms.registry import capabilities
from coopbench import run as run_module
from coopbench.cli import main
from coopbench.config import resolve
from coopbench.run import build_seeds, seed_slice, seed_stack
from environments.seed_batch import split
from tests.seed_batch_checks import assert_killed_batch_resumes_identically

CPU = torch.device("cpu")
SEEDS = [3, 4, 5]

# The batch computes seed k's rows with the same operations, in the same order, as its solo run: each bmm over K x G
# weight groups runs the per-group product of the solo run's shape, reductions (losses, advantage standardization,
# ValueNorm, gradient norms) run along each seed's own contiguous row, and a value head (one output, where bmm's
# matrix-vector kernels round a batch of seeds differently) is a product and a sum over features. On CPU the
# result is therefore bitwise the solo run's (measured: 0.0 difference on every case below, and byte-identical
# metrics.parquet and model.pt through the CLI). That rests on torch's CPU kernels, not on a promise: a GPU or
# another BLAS may round a batched kernel differently, where the parameters then agree to float32 rounding
# (~1e-7 per update when this file's value heads still used bmm), and this tolerance would be 1e-5 there.
TOLERANCE = 0.0


CASES = {  # (algo, task, overrides): shared and per-agent networks, GRUs with ValueNorm, Gaussian actions
    "mappo-shared": ("mappo", "matrix/cora-mtg", {}),
    "ippo-per-agent": ("ippo", "gridworld/lan-checkers", {"share_parameters": False}),
    "mappo-recurrent": ("mappo", "coordination/bn-cg-3", {"recurrent": True, "chunk_length": 8,
                                                          "value_normalization": True}),
    "mappo-gaussian": ("mappo", "differential/cora-2agent", {}),
    "mappo-recurrent-gaussian": ("mappo", "differential/cora-2agent", {"recurrent": True, "chunk_length": 8}),
    "happo-recurrent-gaussian": ("happo", "differential/cora-2agent", {"recurrent": True, "chunk_length": 8}),
    "optimistic-mappo": ("optimistic_mappo", "matrix/acpo-3x3", {}),
    "happo": ("happo", "matrix/cora-mtg", {}),  # per-seed agent orders, per-agent Adam rows
    "happo-recurrent": ("happo", "gridworld/lan-checkers", {"recurrent": True, "chunk_length": 8}),
    "hatrpo": ("hatrpo", "matrix/cora-mtg", {}),  # per-seed conjugate gradient and line search
    "hatrpo-gaussian": ("hatrpo", "differential/cora-2agent", {}),
    "acpo": ("acpo", "matrix/acpo-3x3", {}),
    "acpo-no-chain": ("acpo_no_chain", "coordination/bn-cg-3", {}),  # sampled beliefs at truncations' final states
    "acpo-recurrent-per-agent": ("acpo", "gridworld/as-exchange", {"recurrent": True, "chunk_length": 8,
                                                                    "share_parameters": False}),  # action masks
    "acpo-gaussian": ("acpo", "differential/cora-2agent", {}),
    "centralized-ppo": ("centralized_ppo", "matrix/cora-mtg", {}),  # 5^3 = 125 joint actions
    "cora": ("cora", "matrix/cora-mtg", {}),  # Q critic, one core QP solve per seed
    "cora-gaussian": ("cora", "differential/cora-2agent", {}),
    "cora-expected": ("cora", "matrix/cora-mtg", {"coalition_value": "expected", "mc_samples": 4}),  # MC draws
    "cora-no-std": ("cora_no_std", "differential/cora-2agent", {}),  # lambda = 0: the least-core path of the QP
    "cora-qc": ("cora_qc", "matrix/cora-mtg", {}),  # quadratic critic, closed-form eq. 4
    "cora-m10": ("cora_m10", "differential/cora-5agent", {}),  # 10 of 30 coalitions drawn per sample (eq. 19)
    "cora-recurrent": ("cora", "coordination/bn-cg-3", {"recurrent": True, "chunk_length": 8}),
    "bn-mappo-full": ("bn_mappo_full", "coordination/bn-cg-3", {}),  # one pass per level, noise once per step
    "bn-mappo-random": ("bn_mappo_random", "coordination/bn-cg-5", {"edge_budget": 4}),  # each seed's own DAG
    "bn-mappo-heuristic": ("bn_mappo_heuristic", "aloha/bn-aloha-10", {}),  # per-copy DAGs, parent observations
    "bn-mappo-gaussian": ("bn_mappo_full", "differential/cora-2agent", {}),
    "bn-mappo-recurrent": ("bn_mappo_product", "coordination/bn-cg-3", {"recurrent": True, "chunk_length": 8}),
    "as": ("as", "gridworld/as-exchange", {}),  # eq. 16 per seed, per-seed kappa and standardization
    "as-predation": ("as", "gridworld/as-coop-predation-8", {}),  # neighbourhoods per step: seeds exchange apart
    "as-one-neighbour": ("as_one_neighbour", "gridworld/as-coop-predation-8", {}),  # per-seed picks
    "as-every-k": ("as_every_k", "gridworld/as-exchange", {}),  # gaps: no anticipation step
    "vs": ("vs", "gridworld/as-exchange", {}),
    "vps": ("vps", "gridworld/as-coop-predation-8", {}),  # per-seed consensus weights
    "ps": ("ps", "gridworld/as-exchange", {}),  # the joint ratio, PS's sampling from the streams
}
SMALL = {"n_envs": 4, "rollout_length": 16, "ppo_epochs": 2, "num_minibatches": 2}


def _config(algo, env, overrides):
    config = resolve(algo, env, {"algo": {**SMALL, **overrides}, "run": {"total_env_steps": 10_000}})
    assert all(config.algo_hparams[k] == v for k, v in {**SMALL, **overrides}.items())
    return config


def _pairs(config):
    """The batch of SEEDS and each seed's solo run, as the driver builds them."""
    batch = build_seeds(config, SEEDS, CPU)
    solos = [build_seeds(config, [seed], CPU) for seed in SEEDS]
    return batch, solos


def _flat(state):
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in _flat(value).items()})
        elif isinstance(value, torch.Tensor):
            out[key] = value
    return out


@pytest.mark.parametrize("case", CASES)
def test_a_batch_seed_starts_as_alone_takes_the_same_first_actions_and_updates_to_the_same_parameters(case):
    config = _config(*CASES[case])
    (env, batch), solos = _pairs(config)
    assert batch.n_seeds == len(SEEDS) and all(algorithm.n_seeds == 1 for _, algorithm in solos)
    state = batch.state_dict()
    for k, (_, solo) in enumerate(solos):  # weights, Adam, ValueNorm, random streams: exactly the solo run's
        mine, alone = _flat(seed_slice(state, k, len(SEEDS))), _flat(solo.state_dict())
        assert mine.keys() == alone.keys()
        for key in alone:
            assert torch.equal(mine[key], alone[key]), key

    timestep, solo_steps = env.reset(), [solo_env.reset() for solo_env, _ in solos]
    rollout = batch.collect(env, timestep)
    solo_rollouts = [solo.collect(solo_env, step) for (solo_env, solo), step in zip(solos, solo_steps, strict=True)]
    discrete = env.spec.discrete
    for k, solo_rollout in enumerate(solo_rollouts):
        actions, alone = rollout.storage["actions"][:, k], solo_rollout.storage["actions"][:, 0]
        if discrete:
            assert torch.equal(actions, alone)  # every action of the first rollout
        else:  # Gaussian samples are mean + std * z with the same z: the means agree to float32 rounding
            torch.testing.assert_close(actions, alone, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(rollout.storage["rewards"][:, k], solo_rollout.storage["rewards"][:, 0],
                                   atol=TOLERANCE, rtol=0)

    losses = batch.update(rollout.storage)
    solo_losses = [solo.update(r.storage) for (_, solo), r in zip(solos, solo_rollouts, strict=True)]
    timestep, solo_steps = rollout.timestep, [r.timestep for r in solo_rollouts]
    for _ in range(2):  # two more whole iterations, each seed on its own trajectory
        timestep = batch.train_iteration(env, timestep).timestep
        solo_steps = [solo.train_iteration(solo_env, step).timestep
                      for (solo_env, solo), step in zip(solos, solo_steps, strict=True)]
    state = batch.state_dict()
    for k, (_, solo) in enumerate(solos):
        assert losses["policy_loss"][k] == pytest.approx(solo_losses[k]["policy_loss"][0], abs=TOLERANCE)
        mine, alone = _flat(seed_slice(state, k, len(SEEDS))), _flat(solo.state_dict())
        for key in alone:
            if "streams" in key or key.endswith(".step"):
                assert torch.equal(mine[key], alone[key]), key  # the same draws, the same number of steps
            else:
                torch.testing.assert_close(mine[key], alone[key], atol=TOLERANCE, rtol=0, msg=key)
        # and not trivially: the seeds differ from each other
        other = _flat(solos[(k + 1) % len(SEEDS)][1].state_dict())
        assert not torch.allclose(mine["policy.torso.mlp.layers.0.weight"], other["policy.torso.mlp.layers.0.weight"])


def test_a_batch_state_slices_into_the_solo_states_and_stacks_back():
    config = _config(*CASES["ippo-per-agent"])
    (env, batch), _ = _pairs(config)
    state = batch.state_dict()
    slices = [seed_slice(state, k, len(SEEDS)) for k in range(len(SEEDS))]
    restacked = _flat(seed_stack(slices))
    for key, value in _flat(state).items():
        assert torch.equal(restacked[key], value), key
    timestep = env.reset()
    parts = split(timestep, len(SEEDS))
    assert [p.obs.shape[0] for p in parts] == [SMALL["n_envs"]] * len(SEEDS)
    assert torch.equal(torch.cat([p.obs for p in parts]), timestep.obs)


RUN = ["run", "mappo", "matrix/cora-mtg", "--set", "run.total_env_steps=512", "--set", "run.eval_interval=128",
       "--set", "algo.rollout_length=16", "--set", "algo.n_envs=4", "--set", "run.eval_episodes=4"]


def _run_dir(results, seed, algo="mappo", env="matrix/cora-mtg"):
    [path] = results.glob(f"runs/{env}/{algo}/*/seed-{seed}")
    return path


def test_a_batch_of_one_is_the_solo_run_byte_for_byte(tmp_path):
    assert main([*RUN, "--seed", "2", "--results-dir", str(tmp_path / "seed")]) == 0
    assert main([*RUN, "--seeds", "2", "--results-dir", str(tmp_path / "seeds")]) == 0
    for name in ("metrics.parquet", "model.pt"):
        assert (_run_dir(tmp_path / "seed", 2) / name).read_bytes() == \
            (_run_dir(tmp_path / "seeds", 2) / name).read_bytes()
    manifest = json.loads((_run_dir(tmp_path / "seed", 2) / "manifest.json").read_text())
    assert manifest["seed_batch"] == [2]


def test_a_killed_batch_resumes_to_the_bytes_of_an_uninterrupted_one_for_every_seed(tmp_path, monkeypatch):
    assert_killed_batch_resumes_identically([*RUN, "--seeds", "0-2"], 3, tmp_path, monkeypatch, kill_at_save=6)


def test_a_seed_of_a_batch_writes_the_bytes_of_its_solo_run(tmp_path):
    """The DAG may group any seeds into a job: each seed's metrics and model are its solo run's (CPU)."""
    assert main([*RUN, "--seeds", "0,1", "--results-dir", str(tmp_path / "batch")]) == 0
    for seed in (0, 1):
        assert main([*RUN, "--seed", str(seed), "--results-dir", str(tmp_path / "solo")]) == 0
        for name in ("metrics.parquet", "model.pt"):
            assert (_run_dir(tmp_path / "batch", seed) / name).read_bytes() == \
                (_run_dir(tmp_path / "solo", seed) / name).read_bytes(), (seed, name)


def test_a_method_without_seed_batches_runs_the_seeds_one_after_another(tmp_path, capsys, monkeypatch):
    """Every registered method batches its seeds; one that does not (a new method before it adopts the state rule,
    here ACPI declared so) runs them one after another in the process, each seed's bytes its solo run's."""
    env = "matrix/cora-mtg"  # ACPI plans on the exact model of this small game
    unbatched_capabilities = dataclasses.replace(capabilities("acpi"), seed_batch=False)
    monkeypatch.setattr(run_module, "capabilities", lambda name: unbatched_capabilities)
    unbatched = ["run", "acpi", env, *RUN[3:]]
    assert main([*unbatched, "--seeds", "0-1", "--results-dir", str(tmp_path / "seeds")]) == 0
    assert "one after another" in capsys.readouterr().err
    assert main([*unbatched, "--seed", "1", "--results-dir", str(tmp_path / "seed")]) == 0
    assert (_run_dir(tmp_path / "seeds", 1, "acpi", env) / "metrics.parquet").read_bytes() == \
        (_run_dir(tmp_path / "seed", 1, "acpi", env) / "metrics.parquet").read_bytes()


@pytest.mark.parametrize("bad", ["3-1", "0,0", "x", "0-2,2"])
def test_bad_seed_lists_are_one_line_errors(bad, tmp_path, capsys):
    assert main([*RUN, "--seeds", bad, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seeds" in err[0]


def test_the_workflow_groups_a_pairs_seeds_into_jobs_of_seeds_per_job(tmp_path):
    """`seeds_per_job: 2` (no packing): each planned (env, algo, hash)'s seeds in consecutive blocks of two, one
    `coopbench run-job` job per block (its job file, written with the plan, lists the block), and every seed's
    manifest still a target of its own (the DAG can ask for one seed)."""
    from coopbench.config import plan_suite
    from tests.test_workflow import snakemake

    config = ["--config", "suite=smoke", "seeds_per_job=2", "pack_minutes=0"]
    proc = snakemake("-n", "-p", "--cores", "1", *config, "--until", "run_job", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    specs = [json.loads(p.read_text()) for p in (tmp_path / "results/jobs").glob("*.json")]
    batches = sorted((item["algo"], item["env"], ",".join(map(str, item["seeds"])), item["hash"])
                     for spec in specs for item in spec["items"])
    assert all(len(spec["items"]) == 1 for spec in specs)
    planned = {}
    for run in plan_suite("smoke"):
        planned.setdefault((run.config.algo, run.config.env, run.config.hash), []).append(run.seed)
    expected = sorted((algo, env, ",".join(map(str, sorted(seeds)[i:i + 2])), h)
                      for (algo, env, h), seeds in planned.items() for i in range(0, len(seeds), 2))
    assert batches == expected  # the job files are written with the plan, before any job runs
    commands = [line.split("Shell command: ", 1)[1] for line in proc.stdout.splitlines()
                if line.startswith("Shell command: ")]
    jobs = [c for c in commands if c.startswith("coopbench run-job ")]
    assert len(jobs) == len(expected) and not [c for c in commands if c.startswith("coopbench run ")]
