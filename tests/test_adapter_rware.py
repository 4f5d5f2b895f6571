"""RWARE adapter (environments/adapters/rware_adapter.py): ACPO's tiny/small grid and BN's 16 robots.

Skipped with the reason when `rware` is not installed (make venv).
"""

import sys
from importlib.util import find_spec

import pytest
import torch

from coopbench.base.errors import MissingDependencyError
from coopbench.base.paths import REPO_ROOT as REPO
from coopbench.config import EnvFile, load_yaml
from environments.adapters import rware_adapter as ra
from tests.test_process_pool import check_resume, register_for_test, run_random_episodes, same_timesteps

TASKS = {
    "rware/tiny-2ag-hard": (ra.RwareTiny2, 2, (11, 10)),
    "rware/tiny-4ag-hard": (ra.RwareTiny4, 4, (11, 10)),
    "rware/tiny-8ag-hard": (ra.RwareTiny8, 8, (11, 10)),
    "rware/tiny-12ag-hard": (ra.RwareTiny12, 12, (11, 10)),
    "rware/small-2ag-hard": (ra.RwareSmall2, 2, (20, 10)),
    "rware/small-4ag-hard": (ra.RwareSmall4, 4, (20, 10)),
    "rware/small-8ag-hard": (ra.RwareSmall8, 8, (20, 10)),
    "rware/small-12ag-hard": (ra.RwareSmall12, 12, (20, 10)),
    "rware/warehouse-16ag": (ra.RwareWarehouse16, 16, (9, 13)),
}


def test_missing_rware_names_the_package_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rware", None)
    with pytest.raises(MissingDependencyError, match=r"rware.*make venv"):
        ra.RwareTiny2(n_envs=1, seed=0, n_workers=0)


def test_config_files_validate_against_the_adapter_params():
    for name, (cls, n_agents, _) in TASKS.items():
        env_file = load_yaml(REPO / "config" / "environments" / f"{name}.yaml", EnvFile, name)
        params = cls.Params(**env_file.params)
        assert params.n_agents == n_agents and params.difficulty == "hard"
        assert params == cls.Params() or name == "rware/warehouse-16ag"


needs_library = pytest.mark.skipif(find_spec("rware") is None,
                                   reason="rware is not installed (make venv)")


@needs_library
@pytest.mark.parametrize("name", list(TASKS))
def test_task_layout_agents_and_request_queue(name):
    cls, n_agents, grid = TASKS[name]
    env = cls(n_envs=1, seed=0, n_workers=0)
    raw = env.pool._runner.copies[0].raw
    spec = env.spec
    assert spec.name == name and spec.n_agents == n_agents and spec.n_actions == 5 and not spec.has_action_mask
    assert spec.state_dim == n_agents * spec.obs_dim and spec.obs_dim == 71
    assert raw.grid_size == grid and raw.request_queue_size == n_agents // 2  # "hard": N/2 requests
    assert spec.episode_limit == (50 if name == "rware/warehouse-16ag" else 500)
    env.close()


@needs_library
@pytest.mark.parametrize("name", ["rware/tiny-4ag-hard", "rware/small-2ag-hard", "rware/warehouse-16ag"])
def test_random_episodes_have_consistent_shapes_rewards_and_statistics(name):
    cls = TASKS[name][0]
    env = cls(n_envs=2, seed=0, n_workers=0, max_steps=15)
    _, returns, lengths = run_random_episodes(env, steps=40)
    assert lengths == [15.0] * 4 and all(r >= 0 for r in returns)
    env.close()


@needs_library
def test_time_limit_is_a_truncation():
    env = ra.RwareTiny2(n_envs=2, seed=0, n_workers=0, max_steps=3)
    env.reset()
    for _ in range(3):
        ts = env.step(torch.zeros(2, 2, dtype=torch.long))
    assert ts.truncated.all() and not ts.terminated.any()
    env.close()


@needs_library
def test_a_delivery_pays_one_to_every_robot():
    env = ra.RwareTiny2(n_envs=1, seed=0, n_workers=0)
    env.reset()
    copy = env.pool._runner.copies[0]
    state = copy.get_state()
    (goal_x, goal_y) = copy.raw.goals[0]
    shelf = int(state["requests"][0])
    # robot 0 stands above the goal, facing down, carrying a requested shelf; robot 1 in a corner
    state["robots"][0] = [goal_x, goal_y - 1, 1, shelf, 0]
    state["robots"][1] = [0, 0, 0, -1, 0]
    state["shelves"][shelf] = [goal_x, goal_y - 1]
    copy.set_state(state)
    ts = env.step(torch.tensor([[1, 0]]))  # forward, noop
    assert ts.reward.tolist() == [[1.0, 1.0]]
    env.close()


@needs_library
def test_seeding_is_deterministic_and_the_same_with_worker_processes():
    a, _, _ = run_random_episodes(ra.RwareTiny4(n_envs=3, seed=5, n_workers=0, max_steps=10), steps=25)
    pooled = ra.RwareTiny4(n_envs=3, seed=5, n_workers=2, max_steps=10)
    try:
        b, _, _ = run_random_episodes(pooled, steps=25)
    finally:
        pooled.close()
    c, _, _ = run_random_episodes(ra.RwareTiny4(n_envs=3, seed=6, n_workers=0, max_steps=10), steps=25)
    assert same_timesteps(a, b) and not same_timesteps(a, c)


@needs_library
def test_resume_continues_bit_for_bit():
    check_resume(lambda: ra.RwareSmall4(n_envs=2, seed=0, n_workers=0, max_steps=20), steps_before=25,
                 steps_after=30)


@needs_library
def test_parallel_env_view_passes_pettingzoo_api_test(monkeypatch):
    from pettingzoo.test import parallel_api_test

    from tests.pettingzoo_view import ParallelEnvView

    monkeypatch.setenv("COOPBENCH_ENV_WORKERS", "0")
    register_for_test("rware/tiny-2ag-hard", "environments.adapters.rware_adapter:RwareTiny2", "rware")
    parallel_api_test(ParallelEnvView("rware/tiny-2ag-hard", seed=0, max_steps=25), num_cycles=30)
