"""Every native task trains and evaluates under MAPPO and IPPO through the run driver, in-process
(the DAG runs the same `execute` per job; tests/test_workflow.py covers the Snakemake path)."""

import math

import pytest

from coopbench.base.io import read_json, read_parquet
from coopbench.config import parse_set, resolve
from coopbench.run import execute
from environments.registry import ENVIRONMENTS

NATIVE = [e.name for e in ENVIRONMENTS.entries() if not e.target.startswith("environments.adapters.")]


@pytest.mark.slow
@pytest.mark.parametrize("env", NATIVE)
def test_task_runs_under_mappo_and_ippo(env, tmp_path):
    for algo in ("mappo", "ippo"):
        # Two short iterations and three evaluations with the task's own config and paper hparams.
        config = resolve(algo, env, parse_set(["algo.n_envs=2", "algo.rollout_length=8", "algo.ppo_epochs=1",
                                               "run.total_env_steps=32", "run.eval_interval=16",
                                               "run.eval_episodes=2"]))
        run_dir = execute(config, seed=0, results_dir=tmp_path)
        metrics = read_parquet(run_dir / "metrics.parquet")
        manifest = read_json(run_dir / "manifest.json")
        assert metrics["env_steps"].tolist() == [0, 16, 32]  # the untrained policy, then every 16 steps
        assert metrics["eval_episodes"].tolist() == [2, 2, 2]
        assert all(math.isfinite(v) for v in metrics["eval_return_mean"])
        assert manifest["env"] == env and manifest["algo"] == algo and manifest["status"] == "completed"
        assert math.isfinite(manifest["final"]["normalized_score"])


def _family_pairings() -> list[tuple[str, str]]:
    """(algo, env) of the papers suites beyond MAPPO/IPPO: native tasks, plus one library task per kind of
    policy the members need beyond the native ones (continuous and pooled: MaMuJoCo; VMAS). Recurrent and
    masked policies are covered by tests/test_on_policy_family.py (SMAX costs a JAX compile per job). The
    tabular planner (acpi) has no PPO settings: tests/test_acpi.py runs it through the driver."""
    from algorithms.registry import ALGORITHMS
    from coopbench.config import plan_suite

    library = {"mamujoco/hopper-3x1", "vmas/navigation"}
    pairs = {(r.config.algo, r.config.env) for r in plan_suite("papers")
             if r.config.algo not in ("mappo", "ippo") and ALGORITHMS.get(r.config.algo).family == "on_policy"
             and (r.config.env in NATIVE or r.config.env in library)}
    return sorted(pairs)


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "env"), _family_pairings())
def test_on_policy_family_runs_where_its_papers_use_it(algo, env, tmp_path):
    config = resolve(algo, env, parse_set(["algo.n_envs=2", "algo.rollout_length=10", "algo.ppo_epochs=1",
                                           "run.total_env_steps=40", "run.eval_interval=20", "run.eval_episodes=2"]))
    run_dir = execute(config, seed=0, results_dir=tmp_path)
    metrics = read_parquet(run_dir / "metrics.parquet")
    assert metrics["env_steps"].tolist() == [0, 20, 40]
    assert all(math.isfinite(v) for v in metrics["eval_return_mean"])
    assert read_json(run_dir / "manifest.json")["algo"] == algo
