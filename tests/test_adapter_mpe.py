"""MPE2 simple spread with LAN's partial observability (environments/adapters/mpe_adapter.py).

Skipped with the reason when `mpe2` is not installed (make venv).
"""

import math
import sys
from importlib.util import find_spec

import numpy as np
import pytest

from coopbench.base.errors import MissingDependencyError
from coopbench.base.paths import REPO_ROOT as REPO
from coopbench.config import EnvFile, load_yaml
from environments.adapters.mpe_adapter import SimpleSpread3, SimpleSpread6, SimpleSpread9
from tests.test_process_pool import check_resume, register_for_test, run_random_episodes, same_timesteps

CLASSES = {3: SimpleSpread3, 6: SimpleSpread6, 9: SimpleSpread9}


def test_missing_mpe2_names_the_package_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpe2", None)
    with pytest.raises(MissingDependencyError, match=r"mpe2.*make venv"):
        SimpleSpread3(n_envs=1, seed=0, n_workers=0)


def test_config_files_validate_against_the_adapter_params():
    for n, cls in CLASSES.items():
        env_file = load_yaml(REPO / "config" / "environments" / f"mpe/simple-spread-{n}.yaml", EnvFile, str(n))
        assert cls.Params(**env_file.params).n_agents == n


needs_library = pytest.mark.skipif(find_spec("mpe2") is None,
                                   reason="mpe2 is not installed (make venv)")


@needs_library
@pytest.mark.parametrize("n", [3, 6, 9])
def test_random_episodes_have_consistent_shapes_rewards_and_statistics(n):
    env = CLASSES[n](n_envs=3, seed=0, n_workers=0)
    spec = env.spec
    assert spec.name == f"mpe/simple-spread-{n}" and spec.n_agents == n and spec.n_actions == 5
    assert spec.obs_dim == 4 + 3 * n + 3 * (n - 1) and spec.state_dim == 6 * n
    _, returns, lengths = run_random_episodes(env, steps=55)
    assert lengths == [25.0] * 6  # MPE2's 25-step horizon, a truncation
    assert all(r < 0 for r in returns)  # negative distances (and collisions)
    env.close()


@needs_library
def test_observations_hide_what_lies_beyond_the_view_radius():
    env = SimpleSpread9(n_envs=2, seed=3, n_workers=0, view_radius=0.8)
    ts = env.reset()
    world = env.pool._runner.copies[0].raw.world
    obs = ts.obs[0].numpy()
    for i, agent in enumerate(world.agents):
        entities = list(world.landmarks) + [a for a in world.agents if a is not agent]
        assert np.allclose(obs[i, :4], np.concatenate([agent.state.p_vel, agent.state.p_pos]), atol=1e-6)
        for k, entity in enumerate(entities):
            rel, flag = obs[i, 4 + 3 * k: 6 + 3 * k], obs[i, 6 + 3 * k]
            visible = np.linalg.norm(entity.state.p_pos - agent.state.p_pos) <= 0.8
            assert flag == float(visible)
            assert np.allclose(rel, entity.state.p_pos - agent.state.p_pos if visible else 0.0, atol=1e-6)
    # the global state sees everything: positions and velocities of agents, positions of landmarks
    state = ts.state[0].numpy()
    assert np.allclose(state[:2], world.agents[0].state.p_pos)
    assert np.allclose(state[-2:], world.landmarks[-1].state.p_pos)
    env.close()


@needs_library
@pytest.mark.parametrize("n", [3, 6, 9])
def test_world_grows_with_the_agent_count_at_constant_area_per_agent(n):
    env = CLASSES[n](n_envs=8, seed=0, n_workers=0)
    ts = env.reset()
    half_width = math.sqrt(4.0 / 3.0 * n) / 2
    positions = ts.state.view(8, -1)[:, : 4 * n].view(8, n, 4)[..., :2]
    assert positions.abs().max() <= half_width and positions.abs().max() > 0.6 * half_width
    env.close()


@needs_library
def test_seeding_is_deterministic_and_the_same_with_worker_processes():
    a, _, _ = run_random_episodes(SimpleSpread3(n_envs=4, seed=5, n_workers=0), steps=30)
    pooled = SimpleSpread3(n_envs=4, seed=5, n_workers=2)
    try:
        b, _, _ = run_random_episodes(pooled, steps=30)
    finally:
        pooled.close()
    c, _, _ = run_random_episodes(SimpleSpread3(n_envs=4, seed=6, n_workers=0), steps=30)
    assert same_timesteps(a, b) and not same_timesteps(a, c)


@needs_library
def test_resume_continues_bit_for_bit():
    check_resume(lambda: SimpleSpread6(n_envs=3, seed=0, n_workers=0), steps_before=20, steps_after=12)


@needs_library
def test_library_parallel_env_passes_pettingzoo_api_test():
    from pettingzoo.test import parallel_api_test

    from environments.adapters.mpe_adapter import make_spread

    parallel_api_test(make_spread(n_agents=6, view_radius=0.9), num_cycles=30)


@needs_library
def test_parallel_env_view_passes_pettingzoo_api_test(monkeypatch):
    from pettingzoo.test import parallel_api_test

    from tests.pettingzoo_view import ParallelEnvView

    monkeypatch.setenv("COOPBENCH_ENV_WORKERS", "0")  # the view rebuilds its environment on seeded resets
    register_for_test("mpe/simple-spread-3", "environments.adapters.mpe_adapter:SimpleSpread3", "mpe")
    parallel_api_test(ParallelEnvView("mpe/simple-spread-3", seed=0), num_cycles=30)
