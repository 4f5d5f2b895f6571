import pytest
import torch
from pettingzoo.test import parallel_api_test

from environments import make
from tests.pettingzoo_view import ParallelEnvView

PAYOFFS = [[5, -20, -20], [-20, 10, -20], [-20, -20, 20]]


def test_acpo_game_pays_table_1():
    env = make("matrix/acpo-3x3", n_envs=9, seed=0)
    env.reset()
    joint = torch.tensor([[a, b] for a in range(3) for b in range(3)])
    ts = env.step(joint)
    expected = torch.tensor([PAYOFFS[a][b] for a in range(3) for b in range(3)], dtype=torch.float32)
    assert torch.equal(ts.reward, expected.unsqueeze(1).expand(-1, 2))  # team reward to every agent
    assert ts.terminated.all() and not ts.truncated.any()
    assert torch.equal(ts.episode_return, expected)
    assert env.spec.return_bounds == (-20.0, 20.0)


def test_mtg_payoffs_come_from_the_task_seed_and_lie_in_range():
    a = make("matrix/cora-mtg", n_envs=2, seed=0, payoff_seed=7)
    b = make("matrix/cora-mtg", n_envs=5, seed=99, payoff_seed=7)
    c = make("matrix/cora-mtg", n_envs=2, seed=0, payoff_seed=8)
    assert torch.equal(a.payoffs, b.payoffs) and not torch.equal(a.payoffs, c.payoffs)
    assert a.payoffs.shape == (10, 5, 5, 5)
    assert a.payoffs.min() >= -10 and a.payoffs.max() <= 20


def test_mtg_runs_ten_steps_with_one_hot_step_observation():
    env = make("matrix/cora-mtg", n_envs=3, seed=0)
    ts = env.reset()
    total = torch.zeros(3)
    actions = torch.tensor([[0, 1, 2], [4, 4, 4], [1, 0, 3]])
    for t in range(10):
        assert torch.equal(ts.obs[:, 0], torch.nn.functional.one_hot(torch.tensor([t] * 3), 10).float())
        assert torch.equal(ts.state, ts.obs[:, 1])
        total += env.payoffs[t][actions[:, 0], actions[:, 1], actions[:, 2]]
        ts = env.step(actions)
        assert ts.done.all() == (t == 9)
    assert torch.allclose(ts.episode_return, total)
    assert torch.equal(ts.episode_length, torch.full((3,), 10.0))
    # finished copies reset themselves: the next observation is step 0 again
    assert torch.equal(ts.obs[:, 0, 0], torch.ones(3))
    worst, best = env.spec.return_bounds
    assert best == pytest.approx(env.payoffs.flatten(1).max(1).values.sum().item())
    assert worst == pytest.approx(env.payoffs.flatten(1).min(1).values.sum().item())


@pytest.mark.parametrize("name", ["matrix/acpo-3x3", "matrix/cora-mtg"])
def test_parallel_env_view_passes_pettingzoo_api_test(name):
    parallel_api_test(ParallelEnvView(name, seed=0), num_cycles=40)


def test_state_dict_round_trip_continues_identically():
    env = make("matrix/cora-mtg", n_envs=4, seed=1)
    env.reset()
    env.step(torch.zeros(4, 3, dtype=torch.long))
    saved = env.state_dict()
    actions = torch.randint(0, 5, (6, 4, 3))
    first = [env.step(a).reward for a in actions]
    env.load_state_dict(saved)
    second = [env.step(a).reward for a in actions]
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
