"""AS 5.1 Cooperative Predation: the -1 / -3 / -4 / 0 dilemma, distance neighbourhoods, 8, 20 and 30
agents, and the batched-environment contract."""

import pytest
import torch

from environments import make
from tests.scripted_policies import predation_defect, predation_pursue
from tests.test_gridworld import (
    assert_pettingzoo_api,
    assert_reproducible,
    assert_state_dict_round_trip,
    assert_time_limit,
)


def name(n):
    return f"gridworld/as-coop-predation-{n}"


@pytest.mark.parametrize("n", [8, 20, 30])
def test_spec_follows_the_paper(n):
    env = make(name(n), n_envs=2, seed=0, n_agents=n)
    spec = env.spec
    assert (spec.n_agents, spec.n_actions, spec.episode_limit, spec.reward_mode) == (n, 2, 30, "private")
    assert spec.obs_dim == spec.state_dim == n and spec.name == name(n)
    ts = env.reset()
    # "randomized within X = [0, 30]"; the state is the agents' positions relative to the prey (scaled)
    assert ((env.pos >= 0) & (env.pos <= 30)).all() and ((env.prey >= 0) & (env.prey <= 30)).all()
    assert torch.allclose(ts.state, (env.pos - env.prey.unsqueeze(1)) / 30)
    assert torch.equal(ts.obs[:, 3], ts.state.roll(-3, dims=1))  # agent 3 sees itself first


def set_positions(env, agents, prey):
    state = env.state_dict()
    state["pos"] = torch.tensor([agents], dtype=torch.float32)
    state["prey"] = torch.tensor([prey], dtype=torch.float32)
    env.load_state_dict(state)


def test_payoffs_all_pursue_minus_one_all_defect_minus_three_mixed_minus_four_and_zero():
    env = make(name(8), n_envs=1, seed=0)
    env.reset()
    agents = [1.5, 4.0, 9.0, 12.5, 20.0, 22.0, 27.0, 29.5]  # prey at 15: agents 0-3 left of it, 4-7 right
    right, left = 1, 0
    pursue = torch.tensor([[right] * 4 + [left] * 4])
    set_positions(env, agents, 15.0)
    assert env.step(pursue).reward[0].tolist() == [-1.0] * 8  # all approach
    set_positions(env, agents, 15.0)
    assert env.step(1 - pursue).reward[0].tolist() == [-3.0] * 8  # universal defection
    set_positions(env, agents, 15.0)
    mixed = pursue.clone()
    mixed[0, [1, 6]] = 1 - mixed[0, [1, 6]]  # agents 1 and 6 defect
    assert env.step(mixed).reward[0].tolist() == [-4.0, 0.0, -4.0, -4.0, -4.0, -4.0, 0.0, -4.0]
    set_positions(env, agents, 15.0)
    env.step(pursue)
    assert env.pos[0].tolist() == [2.5, 5.0, 10.0, 13.5, 19.0, 21.0, 26.0, 28.5]  # moves of exactly 1


def test_positions_stay_in_the_domain_and_episodes_last_thirty_steps():
    env = make(name(8), n_envs=1, seed=0)
    env.reset()
    set_positions(env, [0.2, 29.9, 10, 10, 10, 10, 10, 10], 15.0)
    env.step(torch.tensor([[0, 1, 0, 0, 0, 0, 0, 0]]))
    assert env.pos[0, :2].tolist() == [0.0, 30.0]
    assert_time_limit(name(8))


@pytest.mark.parametrize("n", [8, 20])
def test_team_returns_of_the_reference_behaviours(n):
    env = make(name(n), n_envs=16, seed=1, n_agents=n)
    for policy, per_step in ((predation_pursue, -1.0), (predation_defect, -3.0)):
        ts, total = env.reset(), 0.0
        for _ in range(30):
            ts = env.step(policy(env))
            total = total + ts.reward.sum(-1)
        assert torch.allclose(ts.episode_return, torch.full((16,), per_step * n * 30))
    assert env.spec.return_bounds == (min(env.team_reward_of(k) for k in range(n + 1)) * 30,
                                      max(env.team_reward_of(k) for k in range(n + 1)) * 30)


def test_neighbours_are_within_a_normalized_distance_of_a_tenth():
    env = make(name(8), n_envs=1, seed=0)
    env.reset()
    set_positions(env, [0.0, 2.9, 3.1, 10.0, 12.0, 14.0, 17.5, 29.0], 15.0)
    ts = env.step(torch.tensor([[1] * 8]))  # everyone moves right by 1: gaps are kept
    near = ts.extras["neighbours"][0]
    expected = torch.zeros(8, 8, dtype=torch.bool)
    for i, j in [(0, 1), (1, 2), (3, 4), (4, 5)]:  # |x_i - x_j| <= 3 (0.1 x 30); 10 and 14 are 4 apart
        expected[i, j] = expected[j, i] = True
    assert torch.equal(near, expected)


@pytest.mark.parametrize("n", [8, 30])
def test_contract(n):
    assert_reproducible(name(n), n_agents=n)
    assert_state_dict_round_trip(name(n), warmup=25, steps=10, n_agents=n)
    assert_pettingzoo_api(name(n), cycles=40, n_agents=n)


def test_pettingzoo_api_with_twenty_agents():
    assert_pettingzoo_api(name(20), cycles=35, n_agents=20)
