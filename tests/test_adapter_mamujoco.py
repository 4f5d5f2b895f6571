"""Multi-Agent MuJoCo v5 adapter (environments/adapters/mamujoco_adapter.py): CORA's and ACPO's five tasks.

Skipped with the reason when gymnasium-robotics/mujoco are not installed (make venv).
"""

import sys
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from coopbench.base.errors import MissingDependencyError
from coopbench.base.paths import REPO_ROOT as REPO
from coopbench.config import EnvFile, load_yaml
from environments.adapters import mamujoco_adapter as mj
from environments.adapters.process_pool import episode_seed
from tests.test_process_pool import check_resume, register_for_test, run_random_episodes, same_timesteps

# name -> (class, agents, action dim per agent, observation sizes, state size)
TASKS = {
    "mamujoco/ant-4x2": (mj.Ant4x2, 4, 2, [42] * 4, 105),
    "mamujoco/halfcheetah-2x3": (mj.HalfCheetah2x3, 2, 3, [12, 12], 17),
    "mamujoco/halfcheetah-6x1": (mj.HalfCheetah6x1, 6, 1, [9, 9, 8, 9, 9, 8], 17),
    "mamujoco/walker2d-2x3": (mj.Walker2d2x3, 2, 3, [12, 12], 17),
    "mamujoco/hopper-3x1": (mj.Hopper3x1, 3, 1, [8, 9, 8], 11),
}


def test_missing_library_names_the_packages_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)
    with pytest.raises(MissingDependencyError, match=r"gymnasium-robotics.*make venv"):
        mj.HalfCheetah2x3(n_envs=1, seed=0, n_workers=0)


def test_config_files_validate_against_the_adapter_params():
    for name, (cls, *_) in TASKS.items():
        env_file = load_yaml(REPO / "config" / "environments" / f"{name}.yaml", EnvFile, name)
        assert cls.Params(**env_file.params) == cls.Params()


needs_library = pytest.mark.skipif(
    find_spec("gymnasium_robotics") is None or find_spec("mujoco") is None,
    reason="gymnasium-robotics/mujoco are not installed (make venv)")
pytestmark = pytest.mark.filterwarnings("ignore")


@needs_library
@pytest.mark.parametrize("name", list(TASKS))
def test_random_episodes_have_consistent_shapes_rewards_and_statistics(name):
    cls, n_agents, action_dim, obs_dims, state_dim = TASKS[name]
    env = cls(n_envs=2, seed=0, n_workers=0, max_episode_steps=20)
    spec = env.spec
    assert spec.name == name and spec.n_agents == n_agents and spec.n_actions == 0
    assert spec.action_dim == action_dim and (spec.action_low, spec.action_high) == (-1.0, 1.0)
    assert spec.obs_dim == max(obs_dims) and spec.state_dim == state_dim
    timesteps, returns, lengths = run_random_episodes(env, steps=45)
    assert len(returns) >= 4 and max(lengths) <= 20
    # observations are zero-padded at the end to the largest agent's
    for i, d in enumerate(obs_dims):
        assert (timesteps[-1].obs[:, i, d:] == 0).all()
    env.close()


@needs_library
@pytest.mark.parametrize("fast", [True, False], ids=["index-maps", "parallel-env"])
@pytest.mark.parametrize("name", list(TASKS))
def test_adapter_steps_exactly_like_the_librarys_parallel_env(name, fast, monkeypatch):
    """The adapter drives the robot under MaMuJoCo's parallel env through index maps (or, for a scenario
    without them, through the parallel env); stepped side by side with the library's own `parallel_env`
    (same reset seeds, same actions), it shows the same observations, state, rewards, terminations and
    truncations, over episodes that end both ways."""
    if not fast:
        monkeypatch.setattr(mj, "observation_gather", lambda env: None)
    cls, n_agents, action_dim, obs_dims, _ = TASKS[name]
    n_envs, limit, seed = 2, 25, 3
    env = cls(n_envs=n_envs, seed=seed, n_workers=0, max_episode_steps=limit)
    assert all((copy.gather is not None) == fast for copy in env.pool._runner.copies)
    libs = [mj.make_mamujoco(**cls.Params(max_episode_steps=limit).model_dump()) for _ in range(n_envs)]
    agents = libs[0].possible_agents
    episodes = [1] * n_envs

    def library_obs(lib, obs):
        padded = np.zeros((n_agents, max(obs_dims)), np.float32)
        for i, a in enumerate(agents):
            padded[i, :obs_dims[i]] = obs[a]
        return padded

    ts = env.reset()
    expected = [library_obs(lib, lib.reset(seed=episode_seed(seed, c, 0))[0]) for c, lib in enumerate(libs)]
    g = torch.Generator().manual_seed(0)
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(80):
        for c, lib in enumerate(libs):
            np.testing.assert_array_equal(ts.obs[c].numpy(), expected[c])
            np.testing.assert_array_equal(ts.state[c].numpy(), lib.state().astype(np.float32))
        actions = torch.rand(n_envs, n_agents, action_dim, generator=g) * 2 - 1
        ts = env.step(actions)
        for c, lib in enumerate(libs):
            obs, rewards, terms, truncs, _ = lib.step({a: actions[c, i].numpy() for i, a in enumerate(agents)})
            terminated, truncated = bool(terms[agents[0]]), bool(truncs[agents[0]]) and not terms[agents[0]]
            assert (ts.terminated[c].item(), ts.truncated[c].item()) == (terminated, truncated)
            assert ts.reward[c].tolist() == [np.float32(rewards[agents[0]])] * n_agents
            if terminated or truncated:  # the last view of the episode, then the library's next episode
                ends["terminated" if terminated else "truncated"] += 1
                np.testing.assert_array_equal(ts.final_obs[c].numpy(), library_obs(lib, obs))
                np.testing.assert_array_equal(ts.final_state[c].numpy(), lib.state().astype(np.float32))
                obs, _ = lib.reset(seed=episode_seed(seed, c, episodes[c]))
                episodes[c] += 1
            expected[c] = library_obs(lib, obs)
    assert ends["truncated"] >= 2
    if name in ("mamujoco/walker2d-2x3", "mamujoco/hopper-3x1"):
        assert ends["terminated"] >= 1  # the robot fell: resets after terminations too
    env.close()
    for lib in libs:
        lib.close()


@needs_library
@pytest.mark.parametrize("name", list(TASKS))
def test_observation_gather_matches_the_library_beyond_its_clip_ranges(name):
    """Random episodes seldom reach Hopper's velocity clip: large values written into the simulator's data
    check every clip bound (and Walker2d's unclipped velocities) against the library's own observations."""
    cls, n_agents, _, obs_dims, _ = TASKS[name]
    env = cls(n_envs=1, seed=0, n_workers=0)
    env.reset()
    copy = env.pool._runner.copies[0]
    data, rng = copy.robot.data, np.random.default_rng(1)
    for _ in range(5):
        for field in copy.fields:
            getattr(data, field)[...] = rng.normal(0.0, 30.0, getattr(data, field).shape)
        library = copy.env._get_obs()  # the parallel env's observations of the current data
        gathered = copy._gathered(copy.env.state()).obs
        for i, a in enumerate(copy.agents):
            np.testing.assert_array_equal(gathered[i, :obs_dims[i]], library[a].astype(np.float32))
            assert (gathered[i, obs_dims[i]:] == 0).all()
    env.close()


@needs_library
def test_state_is_the_robots_single_agent_observation():
    env = mj.HalfCheetah2x3(n_envs=1, seed=4, n_workers=0)
    ts = env.reset()
    robot = env.pool._runner.copies[0].robot
    assert np.allclose(ts.state[0].numpy(), robot._get_obs(), atol=1e-6)
    env.close()


@needs_library
def test_time_limit_is_a_truncation_and_falling_a_termination():
    env = mj.HalfCheetah2x3(n_envs=2, seed=0, n_workers=0, max_episode_steps=4)
    env.reset()
    for _ in range(4):
        ts = env.step(torch.zeros(2, 2, 3))
    assert ts.truncated.all() and not ts.terminated.any()
    env.close()
    hopper = mj.Hopper3x1(n_envs=2, seed=0, n_workers=0)
    hopper.reset()
    ended = torch.zeros(2, dtype=torch.bool)
    for _ in range(200):  # full torque on every joint topples the hopper long before 1000 steps
        ts = hopper.step(torch.ones(2, 3, 1))
        assert not ts.truncated.any()
        ended |= ts.terminated
        if ended.all():
            break
    assert ended.all()
    hopper.close()


@needs_library
def test_out_of_range_actions_are_clipped():
    a = mj.HalfCheetah2x3(n_envs=1, seed=2, n_workers=0)
    b = mj.HalfCheetah2x3(n_envs=1, seed=2, n_workers=0)
    a.reset()
    b.reset()
    big = torch.tensor([[[5.0, -7.0, 0.5], [2.0, 0.1, -3.0]]])
    assert torch.equal(a.step(big).obs, b.step(big.clamp(-1, 1)).obs)
    a.close()
    b.close()


@needs_library
def test_seeding_is_deterministic_and_the_same_with_worker_processes():
    make = lambda seed, workers: mj.Walker2d2x3(n_envs=3, seed=seed, n_workers=workers, max_episode_steps=8)  # noqa: E731
    a, _, _ = run_random_episodes(make(5, 0), steps=20)
    pooled = make(5, 2)
    try:
        b, _, _ = run_random_episodes(pooled, steps=20)
    finally:
        pooled.close()
    c, _, _ = run_random_episodes(make(6, 0), steps=20)
    assert same_timesteps(a, b) and not same_timesteps(a, c)


@needs_library
@pytest.mark.parametrize("name", ["mamujoco/ant-4x2", "mamujoco/hopper-3x1"])
def test_resume_continues_bit_for_bit(name):
    cls = TASKS[name][0]
    check_resume(lambda: cls(n_envs=2, seed=0, n_workers=0, max_episode_steps=30), steps_before=25,
                 steps_after=20)


@needs_library
def test_library_parallel_env_passes_pettingzoo_api_test():
    from pettingzoo.test import parallel_api_test

    parallel_api_test(mj.make_mamujoco("HalfCheetah", "6x1", max_episode_steps=50), num_cycles=30)


@needs_library
def test_parallel_env_view_passes_pettingzoo_api_test(monkeypatch):
    from pettingzoo.test import parallel_api_test

    from tests.pettingzoo_view import ParallelEnvView

    monkeypatch.setenv("COOPBENCH_ENV_WORKERS", "0")
    register_for_test("mamujoco/hopper-3x1", "environments.adapters.mamujoco_adapter:Hopper3x1", "mamujoco")
    parallel_api_test(ParallelEnvView("mamujoco/hopper-3x1", seed=0, max_episode_steps=40), num_cycles=30)
