"""AS 5.1 Cooperative Navigation: proximity rewards, -1 per collision, chain neighbourhood, and the
batched-environment contract."""

import pytest
import torch

from environments import gridworld as gw
from environments import make
from tests.scripted_policies import navigation_greedy
from tests.test_gridworld import (
    assert_pettingzoo_api,
    assert_reproducible,
    assert_state_dict_round_trip,
    assert_time_limit,
)

NAME = "gridworld/as-coop-navigation"


def one_hot_cells(pos: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """One-hot of each position over the `H * W` cells, `[..., H * W]`: the layout the state must have."""
    return torch.nn.functional.one_hot(gw.flat_index(pos, shape[1]), shape[0] * shape[1]).float()


def test_spec_follows_the_paper():
    env = make(NAME, n_envs=1, seed=0)
    assert (env.spec.n_agents, env.spec.episode_limit, env.spec.reward_mode) == (3, 100, "private")
    assert env.shape == (5, 5) and env.spec.n_actions == 5
    # "Agents can only exchange information with adjacent counterparts"
    assert env.reset().extras["neighbours"][0].int().tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]


def place(env, agents, landmarks):
    state = env.state_dict()
    state["pos"] = torch.tensor([agents])
    state["landmarks"] = torch.tensor([landmarks])
    env.load_state_dict(state)


def test_private_rewards_for_proximity_and_collisions():
    env = make(NAME, n_envs=1, seed=0)
    env.reset()
    place(env, agents=[[0, 0], [2, 2], [4, 4]], landmarks=[[0, 1], [2, 2], [0, 0]])
    ts = env.step(torch.tensor([[gw.STAY, gw.STAY, gw.STAY]]))
    assert ts.reward[0].tolist() == pytest.approx([-1 / 8, 0.0, -8 / 8])  # -Manhattan distance / 8
    # agents 0 and 2 step into one cell: each pays 1 on top of its distance
    place(env, agents=[[2, 1], [0, 0], [2, 3]], landmarks=[[0, 1], [0, 0], [4, 4]])
    ts = env.step(torch.tensor([[gw.RIGHT, gw.STAY, gw.LEFT]]))
    assert env.pos[0].tolist() == [[2, 2], [0, 0], [2, 2]]
    assert ts.reward[0].tolist() == pytest.approx([-3 / 8 - 1, 0.0, -4 / 8 - 1])
    # three in one cell: two collisions each
    place(env, agents=[[1, 1], [1, 1], [1, 1]], landmarks=[[1, 1], [0, 0], [4, 4]])
    ts = env.step(torch.zeros(1, 3, dtype=torch.long))
    assert ts.reward[0].tolist() == pytest.approx([-2.0, -2 / 8 - 2, -6 / 8 - 2])
    # walking off the grid leaves an agent in place
    place(env, agents=[[0, 0], [4, 4], [0, 4]], landmarks=[[1, 1], [2, 2], [3, 3]])
    env.step(torch.tensor([[gw.UP, gw.DOWN, gw.RIGHT]]))
    assert env.pos[0].tolist() == [[0, 0], [4, 4], [0, 4]]


def test_heading_for_the_landmark_beats_wandering():
    env = make(NAME, n_envs=64, seed=1)
    ts, greedy = env.reset(), 0.0
    for _ in range(100):
        ts = env.step(navigation_greedy(env))
        greedy = greedy + ts.reward.sum(-1)
    g, ts, wander = torch.Generator().manual_seed(0), env.reset(), 0.0
    for _ in range(100):
        ts = env.step(torch.randint(5, (64, 3), generator=g))
        wander = wander + ts.reward.sum(-1)
    assert greedy.mean() > -10 and wander.mean() < -100


def test_starts_are_distinct_and_random():
    env = make(NAME, n_envs=500, seed=2)
    env.reset()
    cells = torch.cat([env.pos, env.landmarks], dim=1)
    assert int(gw.shared_cell_counts(cells).max()) == 0
    counts = torch.bincount(gw.flat_index(env.pos[:, 0], 5), minlength=25).float()
    assert counts.min() > 0 and counts.max() < 3 * counts.mean()


def test_observation_is_the_state_rotated_self_first():
    env = make(NAME, n_envs=2, seed=4)
    ts = env.reset()
    agents = one_hot_cells(env.pos, (5, 5))
    landmarks = one_hot_cells(env.landmarks, (5, 5))
    assert torch.equal(ts.state, torch.cat([agents.flatten(1), landmarks.flatten(1)], 1))
    assert torch.equal(ts.obs[:, 1, :25], agents[:, 1]) and torch.equal(ts.obs[:, 1, 25:50], agents[:, 2])
    assert torch.equal(ts.obs[:, 1, 75:100], landmarks[:, 1])


def test_contract():
    assert_time_limit(NAME)
    assert_reproducible(NAME)
    assert_state_dict_round_trip(NAME, warmup=95, steps=10)
    assert_pettingzoo_api(NAME, cycles=110)
