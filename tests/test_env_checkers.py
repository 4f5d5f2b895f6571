"""LAN 5.3 Checkers: what the paper states, ma-gym's rules where it is silent, and the batched contract."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from pettingzoo.test import parallel_api_test
from pydantic import ValidationError

from environments import make
from environments.checkers import Checkers
from tests.pettingzoo_view import ParallelEnvView

NAME = "gridworld/lan-checkers"
REPO = Path(__file__).resolve().parent.parent
DOWN, LEFT, UP, RIGHT, NOOP = range(5)  # ma-gym's action order


def act(*joint):
    return torch.tensor([joint])


def positions(env):
    return env.positions[0].tolist()


def test_spec_two_agents_five_actions_100_steps_team_reward():
    env = make(NAME, n_envs=2, seed=0)
    spec = env.spec
    assert (spec.n_agents, spec.n_actions, spec.episode_limit, spec.reward_mode) == (2, 5, 100, "team")
    assert spec.obs_dim == 2 + 3 * 3 * 5 and spec.state_dim == 3 * 8 * 4
    assert spec.return_bounds == pytest.approx((-92.0, 90.0))


def test_observation_is_position_plus_3x3_window():
    ts = make(NAME, n_envs=1, seed=0).reset()
    first, second = ts.obs[0]
    # position: [row / 3, col / 7] rounded to 2 decimals, as ma-gym; the agents start at (0, 6) and (2, 6)
    assert first[:2].tolist() == pytest.approx([0.0, 0.86]) and second[:2].tolist() == pytest.approx([0.67, 0.86])
    lemon, apple, agent1, agent2 = (torch.eye(5)[k] for k in range(4))
    off = empty = torch.zeros(5)
    # the first agent's window: row -1 off the map; row 0: lemon (0,5), itself, empty (0,7); row 1: apple (1,5), empty
    expected_first = torch.stack([off, off, off, lemon, agent1, empty, apple, empty, empty]).flatten()
    assert torch.equal(first[2:], expected_first)
    # the second agent's window: row 1: apple (1,5), empty, empty; row 2: lemon (2,5), itself, empty; row 3 off the map
    expected_second = torch.stack([apple, empty, empty, lemon, agent2, empty, off, off, off]).flatten()
    assert torch.equal(second[2:], expected_second)


def test_state_is_the_whole_map():
    env = make(NAME, n_envs=1, seed=0)
    state = env.reset().state.view(3, 8, 4)  # (lemon, apple, agent 1, agent 2) per cell
    rows, cols = torch.meshgrid(torch.arange(3), torch.arange(6), indexing="ij")
    assert torch.equal(state[:, :6, 1].bool(), (rows + cols) % 2 == 0)  # 9 apples in a checkerboard
    assert torch.equal(state[:, :6, 0].bool(), (rows + cols) % 2 == 1)  # 9 lemons
    assert state[:, 6:, :2].sum() == 0 and state[0, 6, 2] == 1 and state[2, 6, 3] == 1


def test_fruit_rewards_per_agent_are_the_papers():
    env = make(NAME, n_envs=1, seed=0, step_cost=0.0)
    env.reset()
    assert env.step(act(LEFT, NOOP)).reward.tolist() == [[-10.0, -10.0]]  # first agent eats a lemon (0,5)
    assert env.step(act(DOWN, LEFT)).reward.tolist() == [[10.0 - 1.0] * 2]  # apple (1,5) / lemon (2,5)
    assert env.step(act(NOOP, LEFT)).reward.tolist() == [[1.0, 1.0]]  # second agent eats an apple (2,4)
    assert env.step(act(UP, NOOP)).reward.tolist() == [[0.0, 0.0]]  # back to the eaten (0,5): nothing left


def test_team_reward_is_the_sum_of_both_agents_rewards_including_step_costs():
    env = make(NAME, n_envs=1, seed=0)  # ma-gym's step cost -0.01 per agent
    env.reset()
    ts = env.step(act(LEFT, LEFT))  # -10 and -1, minus 2 x 0.01
    assert ts.reward[0].tolist() == pytest.approx([-11.02, -11.02])


def test_moves_follow_ma_gym_one_agent_after_the_other():
    env = make(NAME, n_envs=1, seed=0)
    env.reset()
    env.step(act(UP, DOWN))  # both off the map: they stay
    assert positions(env) == [[0, 6], [2, 6]]
    env.step(act(DOWN, UP))  # the first agent enters (1,6) first, so the second is blocked
    assert positions(env) == [[1, 6], [2, 6]]
    env.step(act(DOWN, RIGHT))  # the first agent may not enter the cell the second is leaving
    assert positions(env) == [[1, 6], [2, 7]]
    env.step(act(NOOP, LEFT))
    env.step(act(LEFT, UP))  # but the second may enter the cell the first just left
    assert positions(env) == [[1, 5], [1, 6]]


def test_episode_terminates_when_no_apple_is_left():
    env = make(NAME, n_envs=2, seed=0)
    env.reset()
    saved = env.state_dict()
    board = saved["board"].view(2, 5, 10)
    board[:, 1:4, 1:7] = 0  # copy 0 and 1: everything eaten but one apple at (0, 5)
    board[:, 1, 6] = 2
    saved["apples"][:] = 1
    env.load_state_dict(saved)
    ts = env.step(torch.tensor([[LEFT, NOOP], [NOOP, NOOP]]))
    assert ts.terminated.tolist() == [True, False] and not ts.truncated.any()
    assert ts.episode_return[0].item() == pytest.approx(10.0 - 0.02) and ts.episode_return[1].isnan()
    assert ts.episode_length[0].item() == 1.0
    assert torch.equal(ts.obs[0], env.reset().obs[0])  # copy 0 started again
    assert ts.final_obs[0, 0, 2 + 4 * 5 + 2] == 1  # its final observation: the first agent on the apple's cell


def test_100_steps_is_a_truncation_unless_time_is_observed():
    env = make(NAME, n_envs=3, seed=0)
    first = env.reset()
    for t in range(100):
        ts = env.step(torch.full((3, 2), NOOP))
        assert bool(ts.done.any()) == (t == 99)
    assert ts.truncated.all() and not ts.terminated.any()
    assert ts.episode_length.tolist() == [100.0] * 3 and ts.episode_return.tolist() == pytest.approx([-2.0] * 3)
    assert torch.equal(ts.obs, first.obs) and torch.equal(ts.final_obs, first.obs)  # NOOPs: same map

    clocked = make(NAME, n_envs=1, seed=0, clock=True, max_steps=5)
    assert clocked.spec.obs_dim == 48 and clocked.spec.state_dim == 97
    ts = clocked.reset()
    for t in range(5):
        assert ts.obs[0, :, -1].tolist() == pytest.approx([t / 5] * 2)
        ts = clocked.step(act(NOOP, NOOP))
    assert ts.terminated.all() and not ts.truncated.any() and ts.final_obs[0, 0, -1] == 1.0


def test_copies_are_independent_and_auto_reset():
    env = make(NAME, n_envs=3, seed=0)
    env.reset()
    gen = torch.Generator().manual_seed(3)
    actions = torch.randint(5, (150, 3, 2), generator=gen)
    batched = [env.step(a) for a in actions]
    for k in range(3):
        single = make(NAME, n_envs=1, seed=0)
        single.reset()
        for a, ts in zip(actions, batched, strict=True):
            one = single.step(a[k:k + 1])
            assert torch.equal(one.obs[0], ts.obs[k]) and torch.equal(one.reward[0], ts.reward[k])
            assert torch.equal(one.final_obs[0], ts.final_obs[k]) and one.done[0] == ts.done[k]


def test_deterministic_task_seed_changes_nothing_and_runs_reproduce():
    def trajectory(seed):
        env = make(NAME, n_envs=4, seed=seed)
        env.reset()
        gen = torch.Generator().manual_seed(7)
        return [env.step(torch.randint(5, (4, 2), generator=gen)) for _ in range(120)]

    a, b, c = trajectory(0), trajectory(0), trajectory(1)
    for x, y, z in zip(a, b, c, strict=True):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward) and torch.equal(x.done, y.done)
        # Checkers has no randomness (fixed map and starts, as in VDN and ma-gym): seeds agree too
        assert torch.equal(x.obs, z.obs) and torch.equal(x.reward, z.reward)


def test_state_dict_round_trip_continues_identically():
    env = make(NAME, n_envs=4, seed=1)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        env.step(torch.randint(5, (4, 2), generator=gen))
    saved = env.state_dict()
    actions = torch.randint(5, (80, 4, 2), generator=gen)
    first = [env.step(a) for a in actions]
    env.load_state_dict(saved)
    second = [env.step(a) for a in actions]
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.state, y.state) and torch.equal(x.reward, y.reward)
        assert torch.equal(x.done, y.done)
        assert torch.allclose(x.episode_return, y.episode_return, rtol=0, atol=0, equal_nan=True)


def test_params_are_validated():
    with pytest.raises(ValidationError):
        Checkers(n_envs=1, seed=0, grid=3)
    with pytest.raises(ValidationError):
        Checkers(n_envs=1, seed=0, step_cost=0.5)
    with pytest.raises(ValidationError):
        Checkers(n_envs=1, seed=0, max_steps=0)


def test_normalization_low_is_the_random_policys_mean_return():
    norm = yaml.safe_load((REPO / "config/environments/gridworld/lan-checkers.yaml").read_text())["normalization"]
    env = make(NAME, n_envs=4096, seed=0)
    env.reset()
    gen = torch.Generator().manual_seed(11)
    returns = torch.full((4096,), float("nan"))
    for _ in range(100):  # every copy's first episode (unbiased: none is cut short)
        ts = env.step(torch.randint(5, (4096, 2), generator=gen))
        first = ts.done & returns.isnan()
        returns[first] = ts.episode_return[first]
    assert not returns.isnan().any()
    assert returns.mean().item() == pytest.approx(norm["low"], abs=0.6)  # standard error ~0.17
    assert norm["high"] == env.spec.return_bounds[1]


def test_parallel_env_view_passes_pettingzoo_api_test():
    parallel_api_test(ParallelEnvView(NAME, seed=0), num_cycles=150)


MAGYM_PYTHON = REPO / "build" / "bench-venvs" / "magym" / "bin" / "python"


@pytest.mark.skipif(not MAGYM_PYTHON.exists(), reason="no ma-gym venv: bash benchmarks/setup_magym_venv.sh")
def test_trajectories_are_identical_to_ma_gym():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/checkers_vs_magym.py"), "--check-only",
                          "--check-steps", "1500"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical to ma-gym" in out.stdout
