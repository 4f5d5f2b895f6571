"""AS 5.1 Exchange: the paper's reference totals (cooperative about 6, selfish -9), the box rules,
and the batched-environment contract."""

import pytest
import torch

from environments import gridworld as gw
from environments import make
from environments.exchange import OPEN
from tests.scripted_policies import exchange_cooperative, exchange_selfish
from tests.test_gridworld import (
    assert_pettingzoo_api,
    assert_reproducible,
    assert_state_dict_round_trip,
    assert_time_limit,
)

NAME = "gridworld/as-exchange"


def play(env, policy, steps=300):
    """Per-agent returns of one episode (every copy starts together and ends at step 300)."""
    ts, returns = env.reset(), 0.0
    for _ in range(steps):
        ts = env.step(policy())
        returns = returns + ts.reward
    assert ts.truncated.all()
    assert torch.allclose(ts.episode_return, returns.sum(-1), atol=1e-4)
    return returns


def test_spec_follows_the_paper():
    env = make(NAME, n_envs=1, seed=0)
    spec = env.spec
    assert (spec.n_agents, spec.n_actions, spec.episode_limit, spec.reward_mode) == (3, 6, 300, "private")
    assert env.shape == (5, 5) and spec.has_action_mask
    assert spec.return_bounds == pytest.approx((-9.0, 6.0))


def test_cooperative_policy_totals_about_six_and_selfish_minus_nine():
    """AS 5.3: "The optimal cooperative policy yields approximately 6, while the non-cooperative
    policy results in -9" (3 boxes x (10 - 5) - 3 x 300 x 0.01 = 6; nobody opens: -9)."""
    env = make(NAME, n_envs=32, seed=0)
    cooperative = play(env, lambda: exchange_cooperative(env))
    assert torch.allclose(cooperative.sum(-1), torch.full((32,), 6.0), atol=1e-3)
    g = torch.Generator().manual_seed(0)
    selfish = play(env, lambda: exchange_selfish(env, g))
    assert torch.allclose(selfish.sum(-1), torch.full((32,), -9.0), atol=1e-3)
    assert torch.allclose(selfish, torch.full((32, 3), -3.0), atol=1e-3)
    # The dilemma: agent 0 free-riding on cooperative partners earns more than cooperating itself.
    free_ride = play(env, lambda: torch.where(torch.arange(3) == 0, gw.STAY, exchange_cooperative(env)))
    assert (free_ride[:, 0] >= cooperative[:, 0] - 1e-4).all() and free_ride[:, 0].mean() > cooperative[:, 0].mean()
    assert torch.allclose(free_ride[:, 0], torch.full((32,), 10 - 3.0), atol=1e-3)


def place(env, agents, boxes, closed=(True, True, True)):
    state = env.state_dict()
    state["pos"] = torch.tensor([agents])
    state["boxes"] = torch.tensor([boxes])
    state["closed"] = torch.tensor([closed])
    env.load_state_dict(state)


def test_opening_pays_the_owner_and_charges_the_opener():
    env = make(NAME, n_envs=1, seed=0)
    env.reset()
    place(env, agents=[[0, 0], [2, 2], [4, 4]], boxes=[[2, 2], [0, 4], [4, 0]])  # agent 1 stands on box 0
    avail = env._observe()[2]
    assert avail[0, :, OPEN].tolist() == [False, True, False]
    ts = env.step(torch.tensor([[OPEN, OPEN, OPEN]]))  # agents 0 and 2 cannot open: they stay
    assert ts.reward[0].tolist() == pytest.approx([10 - 0.01, -5 - 0.01, -0.01])
    assert env.closed[0].tolist() == [False, True, True]
    assert env.pos[0].tolist() == [[0, 0], [2, 2], [4, 4]]
    assert not ts.avail_actions[0, 1, OPEN]  # box 0 is empty now
    ts = env.step(torch.tensor([[0, OPEN, 0]]))
    assert ts.reward[0].tolist() == pytest.approx([-0.01, -0.01, -0.01])


def test_nobody_opens_their_own_box():
    env = make(NAME, n_envs=1, seed=0)
    env.reset()
    place(env, agents=[[2, 2], [0, 0], [4, 4]], boxes=[[2, 2], [0, 4], [4, 0]])  # agent 0 on its own box
    assert not env._observe()[2][0, 0, OPEN]
    ts = env.step(torch.tensor([[OPEN, 0, 0]]))
    assert env.closed.all() and ts.reward[0].tolist() == pytest.approx([-0.01] * 3)


def test_simultaneous_openers_one_pays_chosen_at_random():
    env = make(NAME, n_envs=400, seed=0)
    env.reset()
    state = env.state_dict()
    state["pos"] = torch.tensor([[2, 2], [2, 2], [0, 0]]).expand(400, -1, -1).clone()  # agents 0 and 1 on box 2
    state["boxes"] = torch.tensor([[4, 4], [4, 0], [2, 2]]).expand(400, -1, -1).clone()
    state["closed"] = torch.ones(400, 3, dtype=torch.bool)
    env.load_state_dict(state)
    ts = env.step(torch.tensor([OPEN, OPEN, 0]).expand(400, -1))
    paid = ts.reward[:, :2] < -1
    assert torch.equal(paid.sum(-1), torch.ones(400, dtype=torch.long))
    assert 0.4 < paid[:, 0].float().mean() < 0.6
    assert torch.allclose(ts.reward[:, 2], torch.full((400,), 10 - 0.01))


def test_observation_is_the_state_rotated_self_first():
    env = make(NAME, n_envs=2, seed=4)
    ts = env.reset()
    cells = 25
    agents = ts.state[:, :3 * cells].view(2, 3, cells)
    for i in range(3):
        assert torch.equal(ts.obs[:, i, :cells], agents[:, i])  # own position first
        assert torch.equal(ts.obs[:, i, 3 * cells:4 * cells], ts.state[:, (3 + i) * cells:(4 + i) * cells])  # own box
    assert torch.equal(ts.extras["neighbours"][0].int(), torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))


def test_contract():
    assert_time_limit(NAME)
    assert_reproducible(NAME)
    assert_state_dict_round_trip(NAME, warmup=15, steps=10, episode_length=20)
    assert_pettingzoo_api(NAME, cycles=40, episode_length=30)  # shorter episodes: the view's episode end is covered
