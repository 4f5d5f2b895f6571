"""BN 6.2.1 Aloha: what the paper states, CASEC's rules where it is silent, and the batched contract."""

from pathlib import Path

import pytest
import torch
import yaml
from pettingzoo.test import parallel_api_test
from pydantic import ValidationError

from environments import make
from environments.aloha import Aloha
from tests.pettingzoo_view import ParallelEnvView

NAME = "aloha/bn-aloha-10"
REPO = Path(__file__).resolve().parent.parent
# CASEC's adjacency matrix (its AlohaEnv), agents numbered row-major on the 2x5 grid.
CASEC_ADJ = [[0, 1, 0, 0, 0, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 1, 0, 0, 0, 1, 0, 0],
             [0, 0, 1, 0, 1, 0, 0, 0, 1, 0], [0, 0, 0, 1, 0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 1, 0, 1, 0, 0, 0],
             [0, 1, 0, 0, 0, 1, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0, 0, 1, 0, 1],
             [0, 0, 0, 0, 1, 0, 0, 0, 1, 0]]


def joint(*transmitters, n_envs=1):
    a = torch.zeros(n_envs, 10, dtype=torch.long)
    a[:, list(transmitters)] = 1
    return a


def with_backlog(env, backlog):
    saved = env.state_dict()
    saved["backlog"][:] = torch.as_tensor(backlog)
    env.load_state_dict(saved)


def test_spec_ten_agents_two_actions_25_steps_team_reward():
    env = make(NAME, n_envs=2, seed=0)
    spec = env.spec
    assert (spec.n_agents, spec.n_actions, spec.episode_limit, spec.reward_mode) == (10, 2, 25, "team")
    assert (spec.obs_dim, spec.state_dim) == (1, 10)
    assert spec.return_bounds == pytest.approx((-2500.0, 12.5))  # at most 5 clean transmissions a step


def test_agents_sit_on_a_2x5_grid_and_neighbours_are_grid_neighbours():
    env = make(NAME, n_envs=1, seed=0)
    assert env.agent_positions.tolist() == [[x, y] for x in range(2) for y in range(5)]
    distance = (env.agent_positions.unsqueeze(1) - env.agent_positions.unsqueeze(0)).abs().sum(-1)
    assert torch.equal(env.neighbours, distance == 1)
    casec = make(NAME, n_envs=1, seed=0, neighbourhood="casec")
    assert casec.neighbours.int().tolist() == CASEC_ADJ


def test_clean_transmissions_pay_0_1_and_collisions_cost_10_each():
    env = make(NAME, n_envs=4, seed=0, arrival_prob=0.0)
    env.reset()
    actions = torch.stack([joint(0, 2, 4, 6, 8)[0],  # a checkerboard: 5 clean transmissions
                           joint(*range(10))[0],  # everyone: 10 colliding transmitters
                           joint(0, 1)[0],  # two neighbours collide: -10 each
                           joint(0, 9)[0]])  # far apart: 2 clean
    ts = env.step(actions)
    team = torch.tensor([0.5, -100.0, -20.0, 0.2])
    assert torch.allclose(ts.reward, team.unsqueeze(1).expand(-1, 10))  # every agent gets the team reward
    assert ts.extras["transmissions"].tolist() == [5, 0, 0, 2]
    assert ts.extras["collisions"].tolist() == [0, 10, 2, 0]
    # a clean transmission sends one message; a collision sends none
    assert env.backlog[0].tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    assert env.backlog[1].tolist() == [1] * 10 and env.backlog[2].tolist() == [1] * 10


def test_casec_neighbourhood_links_the_row_ends():
    grid = make(NAME, n_envs=1, seed=0, arrival_prob=0.0)
    casec = make(NAME, n_envs=1, seed=0, arrival_prob=0.0, neighbourhood="casec")
    grid.reset()
    casec.reset()
    assert grid.step(joint(4, 5)).reward[0, 0].item() == pytest.approx(0.2)
    assert casec.step(joint(4, 5)).reward[0, 0].item() == pytest.approx(-20.0)


def test_empty_queue_sends_nothing_but_still_interferes_as_in_casec():
    env = make(NAME, n_envs=1, seed=0, arrival_prob=0.0)
    env.reset()
    with_backlog(env, [0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    ts = env.step(joint(0, 1))  # agent 0 has nothing to send, agent 1 collides with its transmission
    assert ts.reward[0, 0].item() == pytest.approx(-10.0)
    ts = env.step(joint(0))  # transmitting from an empty queue alone: nothing happens
    assert ts.reward[0, 0].item() == 0.0 and ts.extras["transmissions"].item() == 0


def test_queues_hold_at_most_5_and_start_with_one_message():
    env = make(NAME, n_envs=2, seed=0, arrival_prob=1.0)
    ts = env.reset()
    assert ts.obs[..., 0].tolist() == [[1.0] * 10] * 2 and ts.state.tolist() == [[1.0] * 10] * 2
    for k in range(6):
        ts = env.step(joint(n_envs=2))
        assert ts.state.tolist() == [[float(min(2 + k, 5))] * 10] * 2  # one arrival a step, clipped to 5
    assert torch.equal(ts.obs[..., 0], ts.state)  # an agent observes its own queue length
    ts = env.step(joint(3, n_envs=2))  # a clean transmission from a full queue, then an arrival: still 5
    assert ts.state[:, 3].tolist() == [5.0, 5.0] and ts.reward[:, 0].tolist() == pytest.approx([0.1, 0.1])


def test_messages_arrive_with_probability_0_6():
    env = make(NAME, n_envs=4096, seed=3)
    env.reset()
    arrivals = []
    for _ in range(3):
        before = env.backlog.clone()
        env.step(joint(n_envs=4096))
        arrivals.append((env.backlog - before).float())  # nobody transmits, queues far from full
    rate = torch.stack(arrivals).mean().item()
    assert rate == pytest.approx(0.6, abs=0.01)  # standard error 0.0014


def test_25_steps_is_a_truncation_and_copies_reset():
    env = make(NAME, n_envs=3, seed=0)
    env.reset()
    for t in range(25):
        ts = env.step(joint(0, n_envs=3))
        assert bool(ts.done.any()) == (t == 24)
    assert ts.truncated.all() and not ts.terminated.any()
    assert ts.episode_length.tolist() == [25.0] * 3
    assert ts.state.tolist() == [[1.0] * 10] * 3  # the next episode's first state
    # agent 0 always transmits alone: +0.1 whenever its queue is not empty
    assert (ts.episode_return >= 0.1 - 1e-6).all() and (ts.episode_return <= 2.5 + 1e-6).all()


def test_same_seed_reproduces_different_seeds_differ():
    def trajectory(seed):
        env = make(NAME, n_envs=8, seed=seed)
        env.reset()
        gen = torch.Generator().manual_seed(5)
        return [env.step(torch.randint(2, (8, 10), generator=gen)) for _ in range(40)]

    a, b, c = trajectory(0), trajectory(0), trajectory(1)
    assert all(torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x.obs, z.obs) for x, z in zip(a, c, strict=True))


def test_state_dict_round_trip_continues_identically():
    env = make(NAME, n_envs=4, seed=1)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(13):
        env.step(torch.randint(2, (4, 10), generator=gen))
    saved = env.state_dict()
    actions = torch.randint(2, (40, 4, 10), generator=gen)
    first = [env.step(a) for a in actions]
    env.load_state_dict(saved)
    second = [env.step(a) for a in actions]
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward) and torch.equal(x.done, y.done)
        assert torch.allclose(x.episode_return, y.episode_return, rtol=0, atol=0, equal_nan=True)


def test_params_are_validated():
    with pytest.raises(ValidationError):
        Aloha(n_envs=1, seed=0, n_agents=10)
    with pytest.raises(ValidationError):
        Aloha(n_envs=1, seed=0, arrival_prob=1.5)
    with pytest.raises(ValidationError):
        Aloha(n_envs=1, seed=0, initial_backlog=6)
    with pytest.raises(ValidationError):
        Aloha(n_envs=1, seed=0, neighbourhood="ring")


def test_normalization_low_is_the_random_policys_mean_return():
    norm = yaml.safe_load((REPO / "config/environments/aloha/bn-aloha-10.yaml").read_text())["normalization"]
    env = make(NAME, n_envs=2048, seed=0)
    env.reset()
    gen = torch.Generator().manual_seed(11)
    for _ in range(25):
        ts = env.step(torch.randint(2, (2048, 10), generator=gen))
    assert ts.episode_return.mean().item() == pytest.approx(norm["low"], abs=10.0)  # standard error ~2.4
    assert norm["high"] == env.spec.return_bounds[1]


def test_parallel_env_view_passes_pettingzoo_api_test():
    parallel_api_test(ParallelEnvView(NAME, seed=0), num_cycles=60)
