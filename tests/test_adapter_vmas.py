"""VMAS adapter (environments/adapters/vmas_adapter.py): navigation, give_way, multi_give_way.

Skipped with the reason when `vmas` is not installed (make venv).
"""

import sys
from importlib.util import find_spec

import pytest
import torch

from coopbench.base.errors import MissingDependencyError
from coopbench.base.paths import REPO_ROOT as REPO
from coopbench.config import EnvFile, load_yaml
from environments.adapters.vmas_adapter import VmasGiveWay, VmasMultiGiveWay, VmasNavigation
from tests.test_process_pool import check_resume, register_for_test, run_random_episodes, same_timesteps

CLASSES = {"vmas/navigation": VmasNavigation, "vmas/give_way": VmasGiveWay, "vmas/multi_give_way": VmasMultiGiveWay}
AGENTS = {"vmas/navigation": 3, "vmas/give_way": 2, "vmas/multi_give_way": 4}


def test_missing_vmas_names_the_package_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vmas", None)  # makes `import vmas` fail
    with pytest.raises(MissingDependencyError, match=r"vmas.*make venv"):
        VmasNavigation(n_envs=2, seed=0)


def test_config_files_validate_against_the_adapter_params():
    for name, cls in CLASSES.items():
        env_file = load_yaml(REPO / "config" / "environments" / f"{name}.yaml", EnvFile, name)
        params = cls.Params(**env_file.params)
        assert params.max_steps == (200 if name == "vmas/multi_give_way" else 100)


needs_library = pytest.mark.skipif(find_spec("vmas") is None,
                                   reason="vmas is not installed (make venv)")


@needs_library
@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("continuous", [True, False])
def test_random_episodes_have_consistent_shapes_rewards_and_statistics(name, continuous):
    env = CLASSES[name](n_envs=4, seed=0, continuous_actions=continuous, max_steps=12)
    spec = env.spec
    assert spec.name == name and spec.n_agents == AGENTS[name] and spec.reward_mode == "team"
    assert spec.state_dim == spec.n_agents * spec.obs_dim  # concatenated observations
    if continuous:
        assert spec.n_actions == 0 and spec.action_dim == 2 and spec.action_low == -spec.action_high
    else:
        assert spec.n_actions == 9 and spec.action_dim == 0
    _, returns, lengths = run_random_episodes(env, steps=30)
    assert len(returns) >= 8 and set(lengths) <= set(range(1, 13))


@needs_library
def test_truncation_at_max_steps_and_state_is_the_concatenated_observations():
    env = VmasGiveWay(n_envs=3, seed=1, max_steps=5)
    ts = env.reset()
    for t in range(5):
        assert torch.equal(ts.state, ts.obs.flatten(1))
        ts = env.step(torch.zeros(3, 2, 2))
        assert bool(ts.truncated.all()) == (t == 4) and not ts.terminated.any()
    assert torch.equal(ts.episode_length, torch.full((3,), 5.0))
    assert not torch.equal(ts.obs, ts.final_obs)  # every copy started again


@needs_library
def test_a_copy_that_finishes_alone_is_reset_alone():
    env = VmasNavigation(n_envs=2, seed=0, max_steps=50)
    env.reset()
    for agent in env.env.agents:  # copy 0: every agent on its goal, so navigation terminates there
        agent.set_pos(agent.goal.state.pos[0], batch_index=0)
    before = env.env.agents[0].state.pos.clone()
    ts = env.step(torch.zeros(2, 3, 2))
    assert ts.terminated.tolist() == [True, False] and not ts.truncated.any()
    assert ts.episode_length[0] == 1 and ts.episode_length[1].isnan()
    assert torch.equal(ts.final_obs[1], ts.obs[1]) and not torch.equal(ts.final_obs[0], ts.obs[0])
    assert not torch.equal(env.env.agents[0].state.pos[0], before[0])  # copy 0 respawned


@needs_library
def test_reward_is_the_mean_of_the_agents_vmas_rewards():
    env = VmasNavigation(n_envs=4, seed=3, shared_rew=False)
    env.reset()
    shaping = [a.pos_shaping.clone() for a in env.env.agents]
    ts = env.step(torch.full((4, 3, 2), 0.5))
    per_agent = [s - torch.linalg.vector_norm(a.state.pos - a.goal.state.pos, dim=-1)
                 for s, a in zip(shaping, env.env.agents, strict=True)]
    collisions = torch.stack([a.agent_collision_rew for a in env.env.agents], 1)
    expected = torch.stack(per_agent, 1) + collisions + env.env.scenario.final_rew.unsqueeze(1)
    assert torch.allclose(ts.reward[:, 0], expected.mean(1), atol=1e-5)


@needs_library
@pytest.mark.parametrize("name", list(CLASSES))
def test_seeding_is_deterministic_and_independent_of_other_vmas_environments(name):
    cls = CLASSES[name]
    a, _, _ = run_random_episodes(cls(n_envs=3, seed=7, max_steps=10), steps=25, seed=1)
    # another VMAS environment stepping in between must not touch this one's random stream
    env = cls(n_envs=3, seed=7, max_steps=10)
    other = cls(n_envs=5, seed=99, max_steps=3)
    other.reset()
    gen = torch.Generator().manual_seed(1)
    from tests.test_process_pool import random_actions

    b = [env.reset()]
    for _ in range(25):
        other.step(random_actions(other.spec, 5, torch.Generator().manual_seed(5)))
        b.append(env.step(random_actions(env.spec, 3, gen)))
    assert same_timesteps(a, b)
    c, _, _ = run_random_episodes(cls(n_envs=3, seed=8, max_steps=10), steps=25, seed=1)
    # multi_give_way spawns its agents at fixed positions and is deterministic: no seed changes it
    assert same_timesteps(a, c) == (name == "vmas/multi_give_way")


@needs_library
@pytest.mark.parametrize("name", list(CLASSES))
def test_resume_continues_bit_for_bit(name):
    check_resume(lambda: CLASSES[name](n_envs=4, seed=0, max_steps=9), steps_before=6, steps_after=15)


@needs_library
@pytest.mark.parametrize("name", ["vmas/navigation", "vmas/give_way"])
def test_parallel_env_view_passes_pettingzoo_api_test(name):
    from pettingzoo.test import parallel_api_test

    from tests.pettingzoo_view import ParallelEnvView

    register_for_test(name, f"environments.adapters.vmas_adapter:{CLASSES[name].__name__}", "vmas")
    parallel_api_test(ParallelEnvView(name, seed=0, max_steps=20), num_cycles=30)
