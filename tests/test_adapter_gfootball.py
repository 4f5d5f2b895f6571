"""Google Research Football adapter (environments/adapters/gfootball_adapter.py): CORA's academy scenarios.

gfootball is built from source (`make gfootball`, mk/gfootball.mk), not by `make venv`: without it the
episode tests are skipped with the reason, and the missing-dependency message is checked.
"""

import sys
from importlib.util import find_spec

import pytest
import torch

from coopbench.base.errors import MissingDependencyError
from coopbench.base.paths import REPO_ROOT as REPO
from coopbench.config import EnvFile, load_yaml
from environments.adapters import gfootball_adapter as ga
from tests.test_process_pool import register_for_test, run_random_episodes, same_timesteps

TASKS = {
    "gfootball/academy_3_vs_1_with_keeper": (ga.Academy3v1Keeper, 3),
    "gfootball/academy_counterattack_easy": (ga.AcademyCounterattackEasy, 4),
    "gfootball/academy_counterattack_hard": (ga.AcademyCounterattackHard, 4),
}


def test_missing_gfootball_names_the_package_and_the_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "gfootball", None)  # makes `import gfootball...` fail
    with pytest.raises(MissingDependencyError, match=r"gfootball.*make gfootball") as info:
        ga.Academy3v1Keeper(n_envs=1, seed=0, n_workers=0)
    assert "\n" not in str(info.value)


def test_every_task_is_registered_and_its_config_validates():
    from environments.registry import ENVIRONMENTS

    for name, (cls, _) in TASKS.items():
        assert ENVIRONMENTS.get(name).load() is cls
        env_file = load_yaml(REPO / "config" / "environments" / f"{name}.yaml", EnvFile, name)
        cls.Params(**env_file.params)


needs_library = pytest.mark.skipif(find_spec("gfootball") is None,
                                   reason="gfootball is not installed (built from source by `make gfootball`)")


@needs_library
@pytest.mark.slow
@pytest.mark.parametrize("name", list(TASKS))
def test_random_episodes_have_consistent_shapes_rewards_and_statistics(name):
    cls, n_agents = TASKS[name]
    env = cls(n_envs=2, seed=0, n_workers=0)
    spec = env.spec
    assert spec.name == name and spec.family == "gfootball" and spec.n_agents == n_agents
    assert spec.obs_dim == spec.state_dim == 115 and spec.n_actions == 19 and not spec.has_action_mask
    _, returns, lengths = run_random_episodes(env, steps=120)
    assert len(returns) >= 1 and all(-1.0 <= r <= 1.0 for r in returns)
    assert all(1 <= n <= spec.episode_limit for n in lengths)
    env.close()


@needs_library
@pytest.mark.slow
def test_state_marks_every_controlled_player_and_rewards_are_shared():
    env = ga.Academy3v1Keeper(n_envs=1, seed=0, n_workers=0)
    ts = env.reset()
    assert torch.equal(ts.state[0, :97], ts.obs[0, 0, :97])  # everything but the active-player one-hot is global
    assert ts.state[0, ga.ACTIVE].sum().item() == 3 and (ts.obs[0, :, ga.ACTIVE].sum(-1) == 1).all()
    for _ in range(10):
        ts = env.step(torch.zeros(1, 3, dtype=torch.long))
        assert torch.equal(ts.reward, ts.reward[:, :1].expand(-1, 3))
    env.close()


@needs_library
@pytest.mark.slow
def test_seeding_is_deterministic_and_the_same_with_worker_processes():
    a, _, _ = run_random_episodes(ga.Academy3v1Keeper(n_envs=2, seed=5, n_workers=0), steps=30)
    pooled = ga.Academy3v1Keeper(n_envs=2, seed=5, n_workers=2)
    try:
        b, _, _ = run_random_episodes(pooled, steps=30)
    finally:
        pooled.close()
    assert same_timesteps(a, b)


@needs_library
@pytest.mark.slow
def test_parallel_env_view_passes_pettingzoo_api_test(monkeypatch):
    from pettingzoo.test import parallel_api_test

    from tests.pettingzoo_view import ParallelEnvView

    monkeypatch.setenv("COOPBENCH_ENV_WORKERS", "0")
    name = "gfootball/academy_3_vs_1_with_keeper"
    register_for_test(name, "environments.adapters.gfootball_adapter:Academy3v1Keeper", "gfootball")
    parallel_api_test(ParallelEnvView(name, seed=0), num_cycles=30)
