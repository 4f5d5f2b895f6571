"""BN 6.1 Coordination Game: Algorithm 2 case by case, the local transitions, the episode contract."""

import itertools

import pytest
import torch
import yaml
from pettingzoo.test import parallel_api_test
from pydantic import ValidationError

from coopbench.config import config_dir
from environments import make
from environments.coordination_game import CoordinationGame, alg2_reward
from tests.pettingzoo_view import ParallelEnvView

NAMES = ["coordination/bn-cg-2", "coordination/bn-cg-3", "coordination/bn-cg-5"]

# Algorithm 2 worked by hand, by the number of agents in state 0 (c0):
#   N = 2, bound 1: c0=2 -> |2-0|>1, c0>c1 -> 3;  c0=1 -> |1-1|<=1, c0<c1? no -> 0;  c0=0 -> c0<c1 -> 2
#   N = 3, bound 1: c0=3 -> 3;  c0=2 -> |2-1|<=1, no -> 0;  c0=1 -> |1-2|<=1, yes -> 1;  c0=0 -> 2
#   N = 5, bound 2: c0=5,4 -> 3;  c0=3 -> |3-2|<=2, no -> 0;  c0=2 -> yes -> 1;  c0=1,0 -> |diff|>=3, c0<c1 -> 2
ALG2_BY_C0 = {
    2: {2: 3.0, 1: 0.0, 0: 2.0},
    3: {3: 3.0, 2: 0.0, 1: 1.0, 0: 2.0},
    5: {5: 3.0, 4: 3.0, 3: 0.0, 2: 1.0, 1: 2.0, 0: 2.0},
}


def yaml_params(name: str) -> dict:
    return yaml.safe_load((config_dir() / "environments" / f"{name}.yaml").read_text())["params"]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_alg2_reward_function_case_by_case(n):
    assert {c0: alg2_reward(n, c0) for c0 in range(n + 1)} == ALG2_BY_C0[n]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_env_pays_alg2_for_every_joint_state(n):
    states = torch.tensor(list(itertools.product([0, 1], repeat=n)))  # every joint state, one per copy
    env = make(f"coordination/bn-cg-{n}", n_envs=len(states), seed=0, **yaml_params(f"coordination/bn-cg-{n}"))
    env.reset()
    env.s = states.clone()
    ts = env.step(torch.randint(0, 2, (len(states), n)))
    expected = torch.tensor([ALG2_BY_C0[n][int((s == 0).sum())] for s in states])
    # r(s_t): the reward of the state the action was taken in, to every agent
    assert torch.equal(ts.reward, expected.unsqueeze(1).expand(-1, n))


def test_two_agent_rewards_literally():
    env = make("coordination/bn-cg-2", n_envs=4, seed=0)
    env.reset()
    env.s = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 0]])
    assert env.step(torch.zeros(4, 2, dtype=torch.long)).reward[:, 0].tolist() == [3.0, 2.0, 0.0, 0.0]


def test_local_transitions_follow_own_action_with_epsilon():
    env = make("coordination/bn-cg-3", n_envs=20000, seed=3, n_agents=3)
    env.reset()
    actions = torch.tensor([0, 1, 0]).expand(20000, 3)
    ts = env.step(actions)
    zero_rate = (ts.obs[:, 0] == 0).float().mean(0)  # agent i's next local state, seen by agent 0
    tol = 5 * (0.05 * 0.95 / 20000) ** 0.5
    assert torch.allclose(zero_rate, torch.tensor([0.95, 0.05, 0.95]), atol=tol)
    # independence across agents: P(s'^0 = 0, s'^2 = 0) = 0.95^2
    both = ((ts.obs[:, 0, 0] == 0) & (ts.obs[:, 0, 2] == 0)).float().mean()
    assert abs(both.item() - 0.95**2) < 5 * (0.9025 * 0.0975 / 20000) ** 0.5


def test_initial_states_uniform_and_fully_observed():
    env = make("coordination/bn-cg-2", n_envs=40000, seed=1)
    ts = env.reset()
    assert torch.equal(ts.obs[:, 0], ts.state) and torch.equal(ts.obs[:, 1], ts.state)
    index = (ts.state[:, 0] * 2 + ts.state[:, 1]).long()
    freq = torch.bincount(index, minlength=4).float() / 40000
    assert torch.allclose(freq, torch.full((4,), 0.25), atol=5 * (0.25 * 0.75 / 40000) ** 0.5)
    assert ts.avail_actions is None and env.spec.n_actions == 2 and env.spec.obs_dim == 2


def test_twenty_step_episodes_truncate_and_reset():
    env = make("coordination/bn-cg-5", n_envs=64, seed=2, **yaml_params("coordination/bn-cg-5"))
    assert env.spec.episode_limit == 20
    ts = env.reset()
    total = torch.zeros(64)
    for t in range(20):
        state_before = ts.state.clone()
        ts = env.step(torch.randint(0, 2, (64, 5)))
        total += ts.reward[:, 0]
        assert torch.equal(ts.reward[:, 0], env._reward_by_c0[(state_before == 0).sum(-1)])
        assert ts.truncated.all() == (t == 19) and not ts.terminated.any()
    assert torch.equal(ts.episode_return, total)
    assert torch.equal(ts.episode_length, torch.full((64,), 20.0))
    # the final observation is the 21st state, drawn by P; the returned one is a fresh initial state
    assert not torch.equal(ts.final_obs, ts.obs)
    ts = env.step(torch.zeros(64, 5, dtype=torch.long))
    assert ts.episode_return.isnan().all()


def test_return_bounds_are_the_exact_best_and_worst_expected_returns():
    env = make("coordination/bn-cg-2", n_envs=1, seed=0)
    # best: always act 0; the first reward is of the uniform initial state
    p00, p11 = 0.95**2, 0.05**2
    best = (3 + 2 + 0 + 0) / 4 + 19 * (3 * p00 + 2 * p11)
    low, high = env.spec.return_bounds
    assert high == pytest.approx(best)
    # worst: split the agents (one acts 0, the other 1): reward 0 with probability 0.95^2 + 0.05^2
    worst = 1.25 + 19 * (3 * 0.95 * 0.05 + 2 * 0.05 * 0.95)
    assert low == pytest.approx(worst)


def test_same_seed_same_trajectory_and_different_seeds_differ():
    def rollout(seed):
        env = make("coordination/bn-cg-3", n_envs=8, seed=seed, n_agents=3)
        gen = torch.Generator().manual_seed(0)
        out = [env.reset().obs]
        for _ in range(45):
            out.append(env.step(torch.randint(0, 2, (8, 3), generator=gen)).obs)
        return torch.stack(out)

    assert torch.equal(rollout(5), rollout(5))
    assert not torch.equal(rollout(5), rollout(6))


def test_state_dict_round_trip_continues_identically():
    env = make("coordination/bn-cg-3", n_envs=6, seed=1, n_agents=3)
    env.reset()
    for _ in range(7):
        env.step(torch.randint(0, 2, (6, 3)))
    saved = env.state_dict()
    actions = torch.randint(0, 2, (30, 6, 3))
    first = [env.step(a) for a in actions]
    env.load_state_dict(saved)
    second = [env.step(a) for a in actions]
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward)
        assert torch.equal(x.episode_return.nan_to_num(-1), y.episode_return.nan_to_num(-1))
    # a fresh object restored from the checkpoint continues the same way
    other = make("coordination/bn-cg-3", n_envs=6, seed=99)
    other.reset()
    other.load_state_dict(saved)
    third = [other.step(a) for a in actions]
    assert all(torch.equal(x.obs, z.obs) for x, z in zip(first, third, strict=True))


def test_params_are_validated():
    with pytest.raises(ValidationError):
        CoordinationGame.Params(epsilon=0.7)
    with pytest.raises(ValidationError):
        CoordinationGame.Params(n_agents=1)
    with pytest.raises(ValidationError):
        CoordinationGame.Params(bogus=1)


@pytest.mark.parametrize("name", NAMES)
def test_parallel_env_view_passes_pettingzoo_api_test(name):
    view = ParallelEnvView(name, seed=0, **yaml_params(name))
    assert len(view.possible_agents) == int(name.rsplit("-", 1)[1])
    parallel_api_test(view, num_cycles=50)
