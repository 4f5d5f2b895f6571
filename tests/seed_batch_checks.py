"""What the seed-batch tests of the episode- and transition-based families share: a few training iterations, and a
recursive bitwise comparison of a batch seed's state with its solo run's (dict, list and tensor leaves, with the
path of the first difference)."""

import torch


def train_batch_and_solos(config, seeds: list[int], iterations: int):
    """The batch of `seeds` and each seed alone, built as the driver builds them (`run.build_seeds`) and trained for
    `iterations`; asserts each seed's state and per-iteration results (env steps, losses, returns) are its solo
    run's, bitwise. Returns the batch and its results for the caller's own checks."""
    from coopbench.run import build_seeds, seed_slice

    cpu = torch.device("cpu")
    solos = []
    for seed in seeds:
        env, algorithm = build_seeds(config, [seed], cpu)
        assert algorithm.n_seeds == 1
        solos.append((algorithm, train(algorithm, env, iterations)))
    env, batch = build_seeds(config, seeds, cpu)
    assert batch.n_seeds == len(seeds)
    results = train(batch, env, iterations)
    state = batch.state_dict()
    for k, (solo, solo_results) in enumerate(solos):
        assert_same_state(seed_slice(state, k, len(seeds)), solo.state_dict(), f"seed {k}")
        for it, (result, alone) in enumerate(zip(results, solo_results, strict=True)):
            part = result.seeds[k]
            assert part.env_steps == alone.env_steps and part.losses == alone.losses, f"seed {k} iteration {it}"
            assert torch.equal(part.episode_returns, alone.episode_returns), f"seed {k} iteration {it}"
    return batch, results


def assert_same_run_files(batch_results, solo_results, n_seeds: int) -> None:
    """Each seed's model.pt and metrics.parquet under `batch_results` are its solo run's under `solo_results`."""
    for name in ("model.pt", "metrics.parquet"):
        batch_files = sorted(batch_results.glob(f"runs/**/{name}"))
        solo_files = sorted(solo_results.glob(f"runs/**/{name}"))
        assert len(batch_files) == len(solo_files) == n_seeds
        for b, s in zip(batch_files, solo_files, strict=True):
            assert b.relative_to(batch_results) == s.relative_to(solo_results)
            assert b.read_bytes() == s.read_bytes(), b


def train(algorithm, env, iterations: int):
    timestep, results = env.reset(), []
    for _ in range(iterations):
        result = algorithm.train_iteration(env, timestep)
        timestep = result.timestep
        results.append(result)
    return results


def assert_same_state(batch_state, solo_state, where=""):
    if isinstance(solo_state, dict):
        assert batch_state.keys() == solo_state.keys(), where
        for key in solo_state:
            assert_same_state(batch_state[key], solo_state[key], f"{where}/{key}")
    elif isinstance(solo_state, list | tuple):
        assert len(batch_state) == len(solo_state), where
        for i, (b, s) in enumerate(zip(batch_state, solo_state, strict=True)):
            assert_same_state(b, s, f"{where}[{i}]")
    elif isinstance(solo_state, torch.Tensor):
        assert batch_state.dtype == solo_state.dtype and batch_state.shape == solo_state.shape, where
        assert torch.equal(batch_state, solo_state), f"{where}: max diff {(batch_state - solo_state).abs().max()}"
    else:
        assert batch_state == solo_state, where


def assert_killed_batch_resumes_identically(args: list[str], n_seeds: int, tmp_path, monkeypatch, kill_at_save: int):
    """Run the CLI's `args` (a `--seeds` batch of `n_seeds`) uninterrupted, and again killed just before its
    `kill_at_save`-th per-seed checkpoint write (a multiple of `n_seeds`: after whole rounds), then restarted:
    every seed must end with the uninterrupted batch's bytes (model.pt, metrics.parquet) and one resume."""
    import json

    from coopbench import run as run_module
    from coopbench.cli import main

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert main([*args, "--results-dir", str(reference)]) == 0
    real_save, calls = run_module.save_checkpoint, []

    def save_then_die(path, *rest):
        if len(calls) == kill_at_save:
            raise KeyboardInterrupt("killed")
        real_save(path, *rest)
        calls.append(path)

    monkeypatch.setattr(run_module, "save_checkpoint", save_then_die)
    try:
        main([*args, "--results-dir", str(killed)])
        raise AssertionError("the run finished before it was killed")
    except KeyboardInterrupt:
        pass
    assert len(list(killed.glob("runs/**/checkpoint.pt"))) == n_seeds
    assert not list(killed.glob("runs/**/manifest.json"))
    monkeypatch.undo()
    assert main([*args, "--results-dir", str(killed)]) == 0
    for name in ("model.pt", "metrics.parquet"):
        done, expected = sorted(killed.glob(f"runs/**/{name}")), sorted(reference.glob(f"runs/**/{name}"))
        assert len(done) == len(expected) == n_seeds
        for d, r in zip(done, expected, strict=True):
            assert d.relative_to(killed) == r.relative_to(reference)
            assert d.read_bytes() == r.read_bytes(), d
    for manifest in killed.glob("runs/**/manifest.json"):
        record = json.loads(manifest.read_text())
        assert record["resumes"] == 1 and len(record["seed_batch"]) == n_seeds
        assert not (manifest.parent / "checkpoint.pt").exists()
