"""CORA 6.2 differential games: Eq. 11 over the joint action, actions in [-5, 5], fields from the task seed."""

import math

import pytest
import torch
import yaml
from pettingzoo.test import parallel_api_test
from pydantic import ValidationError

from coopbench.config import config_dir
from environments import make
from environments.differential_games import DifferentialGame
from tests.pettingzoo_view import ParallelEnvView

NAMES = {2: "differential/cora-2agent", 5: "differential/cora-5agent"}


def yaml_params(name: str) -> dict:
    return yaml.safe_load((config_dir() / "environments" / f"{name}.yaml").read_text())["params"]


def eq11(env, x):
    """CORA Eq. 11 written out field by field, in float64."""
    total = 0.0
    for c, h, s in zip(env.centers.double(), env.heights.double(), env.sigmas.double(), strict=True):
        total = total + h * torch.exp(-((x.double() - c) ** 2).sum(-1) / s**2)
    return total


@pytest.mark.parametrize("n", [2, 5])
def test_spec_is_continuous_in_the_paper_box(n):
    env = make(NAMES[n], n_envs=3, seed=0, **yaml_params(NAMES[n]))
    spec = env.spec
    assert (spec.n_agents, spec.n_actions, spec.action_dim) == (n, 0, 1) and not spec.discrete
    assert (spec.action_low, spec.action_high) == (-5.0, 5.0)
    assert spec.name == NAMES[n] and spec.reward_mode == "team"


@pytest.mark.parametrize("n", [2, 5])
def test_reward_is_eq11_of_the_clipped_joint_action(n):
    env = make(NAMES[n], n_envs=256, seed=0, **yaml_params(NAMES[n]))
    env.reset()
    x = torch.empty(256, n).uniform_(-7, 7, generator=torch.Generator().manual_seed(1))
    ts = env.step(x.unsqueeze(-1))  # [B, N, action_dim]
    expected = eq11(env, x.clamp(-5, 5)).float()
    assert torch.allclose(ts.reward[:, 0], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(ts.reward, ts.reward[:, :1].expand(-1, n))  # the team reward to every agent
    # [B, N] actions are accepted too, and actions beyond the box pay as the box edge
    edge = env.reward(torch.full((1, n), 5.0))
    assert torch.equal(env.reward(torch.full((1, n), 9.0)), edge)


@pytest.mark.parametrize("n", [2, 5])
def test_fields_lie_in_the_paper_ranges_and_come_from_the_task_seed(n):
    params = yaml_params(NAMES[n])
    env = make(NAMES[n], n_envs=1, seed=0, **params)
    assert ((env.heights >= 5) & (env.heights <= 10)).all()  # h in [5, 10]
    assert ((env.sigmas >= 1) & (env.sigmas <= 2)).all()  # sigma in [1, 2]
    assert (env.centers.abs() <= params["center_range"]).all()
    assert env.centers.shape == (params["n_fields"], n)
    same = make(NAMES[n], n_envs=4, seed=77, **params)
    other = make(NAMES[n], n_envs=1, seed=0, **{**params, "field_seed": params["field_seed"] + 1})
    assert torch.equal(env.centers, same.centers) and not torch.equal(env.centers, other.centers)


def test_maximum_is_the_global_optimum_of_the_2d_field():
    env = make(NAMES[2], n_envs=1, seed=0, **yaml_params(NAMES[2]))
    grid = torch.linspace(-5, 5, 401)
    xs = torch.cartesian_prod(grid, grid)
    values = eq11(env, xs)
    assert values.max().item() <= env.max_reward + 1e-6  # nothing on a fine grid beats the optimum
    assert eq11(env, env.optimum.unsqueeze(0)).item() == pytest.approx(env.max_reward, rel=1e-5)
    assert values.max().item() > env.max_reward - 0.05
    assert env.spec.return_bounds == (0.0, pytest.approx(env.max_reward))
    # the landscape has local optima: mean-shift ascent from the origin stops below the global one
    c, h, inv = env.centers.double(), env.heights.double(), env.sigmas.double().pow(-2)
    x = torch.zeros(1, 2, dtype=torch.float64)
    for _ in range(500):
        w = h * inv * torch.exp(-((x.unsqueeze(1) - c) ** 2).sum(-1) * inv)
        x = (w @ c) / w.sum(-1, keepdim=True)
    assert eq11(env, x).item() < env.max_reward - 1.0


def test_maximum_in_5d_beats_random_search():
    env = make(NAMES[5], n_envs=1, seed=0, **yaml_params(NAMES[5]))
    xs = torch.empty(200_000, 5).uniform_(-5, 5, generator=torch.Generator().manual_seed(0))
    assert eq11(env, xs).max().item() <= env.max_reward + 1e-6


def test_one_step_episodes_terminate_with_constant_observation():
    env = make(NAMES[2], n_envs=4, seed=0, **yaml_params(NAMES[2]))
    ts = env.reset()
    assert torch.equal(ts.obs, torch.ones(4, 2, 1)) and torch.equal(ts.state, torch.ones(4, 1))
    for _ in range(3):
        x = torch.randn(4, 2, 1)
        ts = env.step(x)
        assert ts.terminated.all() and not ts.truncated.any()
        assert torch.equal(ts.episode_return, ts.reward[:, 0]) and torch.equal(ts.episode_length, torch.ones(4))
        assert torch.equal(ts.obs, torch.ones(4, 2, 1)) and torch.equal(ts.final_obs, torch.zeros(4, 2, 1))


def test_longer_episodes_sum_the_repeated_game_and_round_trip():
    env = make(NAMES[5], n_envs=3, seed=0, **{**yaml_params(NAMES[5]), "episode_length": 4})
    env.reset()
    actions = torch.empty(9, 3, 5, 1).uniform_(-5, 5, generator=torch.Generator().manual_seed(2))
    env.step(actions[0])
    saved = env.state_dict()
    first = [env.step(a) for a in actions[1:]]
    env.load_state_dict(saved)
    second = [env.step(a) for a in actions[1:]]
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward) and torch.equal(x.done, y.done)
    # the episode that ended at the 4th step returns the sum of its 4 rewards
    total = sum(env.reward(a).double() for a in actions[:4])
    assert first[2].terminated.all()
    assert torch.allclose(first[2].episode_return.double(), total, rtol=1e-6)
    assert env.spec.return_bounds[1] == pytest.approx(4 * env.max_reward)


def test_params_are_validated():
    with pytest.raises(ValidationError):
        DifferentialGame.Params(center_range=6.0)  # centers outside the action box
    with pytest.raises(ValidationError):
        DifferentialGame.Params(height_low=11.0)
    with pytest.raises(ValidationError):
        DifferentialGame.Params(fields=3)


def test_no_run_randomness_same_seed_same_rewards():
    a = make(NAMES[2], n_envs=5, seed=0, **yaml_params(NAMES[2]))
    b = make(NAMES[2], n_envs=5, seed=0, **yaml_params(NAMES[2]))
    a.reset(), b.reset()
    x = torch.rand(5, 2, 1) * 10 - 5
    assert torch.equal(a.step(x).reward, b.step(x).reward)
    assert math.isfinite(a.max_reward)


@pytest.mark.parametrize("name", list(NAMES.values()))
def test_parallel_env_view_passes_pettingzoo_api_test(name):
    parallel_api_test(ParallelEnvView(name, seed=0, **yaml_params(name)), num_cycles=40)
