"""CORA 6.1 Multi-Peak Matrix Team Game: noise in [-10, 0], n peaks, exactly one global optimum."""

import pytest
import torch
import yaml
from pettingzoo.test import parallel_api_test
from pydantic import ValidationError

from coopbench.config import config_dir
from environments import make
from environments.matrix_games import MatrixTeamGame, MultiPeakMatrixGame
from tests.pettingzoo_view import ParallelEnvView

NAMES = {5: "matrix/cora-multipeak-5", 10: "matrix/cora-multipeak-10", 15: "matrix/cora-multipeak-15"}


def yaml_params(name: str) -> dict:
    return yaml.safe_load((config_dir() / "environments" / f"{name}.yaml").read_text())["params"]


@pytest.mark.parametrize("peaks", [5, 10, 15])
def test_every_table_has_noise_in_range_and_exactly_one_global_peak(peaks):
    params = yaml_params(NAMES[peaks])
    assert params["n_peaks"] == peaks and params["noise_low"] == -10.0 and params["noise_high"] == 0.0
    env = make(NAMES[peaks], n_envs=2, seed=0, **params)
    tables = env.payoffs.flatten(1)  # [steps, joint actions]
    assert tables.shape == (10, 5**3)
    for table in tables:
        best = table.max()
        assert (table == best).sum() == 1  # exactly one global optimum...
        assert best == params["global_peak"]  # ...and it is the highest value
        peak_cells = table > params["noise_high"]
        assert peak_cells.sum() == peaks  # n peaks stand above the background
        local = table[peak_cells & (table < best)]
        assert len(local) == peaks - 1
        assert (local >= params["local_peak_low"]).all() and (local <= params["local_peak_high"]).all()
        noise = table[~peak_cells]
        assert (noise >= -10.0).all() and (noise <= 0.0).all()  # background noise in [-10, 0]
    assert env.spec.name == NAMES[peaks]


def test_peaks_move_between_steps_and_come_from_the_task_seed():
    a = make(NAMES[10], n_envs=2, seed=0, **yaml_params(NAMES[10]))
    b = make(NAMES[10], n_envs=7, seed=123, **yaml_params(NAMES[10]))
    c = make(NAMES[10], n_envs=2, seed=0, **{**yaml_params(NAMES[10]), "payoff_seed": 1})
    assert torch.equal(a.payoffs, b.payoffs)  # the run seed does not touch the task
    assert not torch.equal(a.payoffs, c.payoffs)
    argmax = a.payoffs.flatten(1).argmax(1)
    assert len(set(argmax.tolist())) > 1  # one table per step, each with its own optimum


def test_optimal_play_earns_the_upper_bound_and_the_episode_is_the_mtg_one():
    env = make(NAMES[5], n_envs=3, seed=0, **yaml_params(NAMES[5]))
    best = env.payoffs.flatten(1).argmax(1)  # joint index of each step's global peak
    joint = torch.stack([best // 25, (best // 5) % 5, best % 5], dim=1)  # row-major over agents
    ts = env.reset()
    for t in range(10):
        assert torch.equal(ts.obs[:, 0], torch.nn.functional.one_hot(torch.tensor([t] * 3), 10).float())
        ts = env.step(joint[t].expand(3, -1))
        assert torch.equal(ts.reward, torch.full((3, 3), 20.0))
        assert ts.terminated.all() == (t == 9) and not ts.truncated.any()
    assert torch.equal(ts.episode_return, torch.full((3,), 200.0))
    assert env.spec.return_bounds[1] == 200.0
    assert env.spec.return_bounds[0] == pytest.approx(env.payoffs.flatten(1).min(1).values.sum().item())
    assert torch.equal(ts.final_obs, torch.zeros(3, 3, 10)) and torch.equal(ts.obs[:, :, 0], torch.ones(3, 3))


def test_mtg_tables_unchanged_by_the_shared_layout():
    p = MatrixTeamGame.Params()
    rng = torch.Generator().manual_seed(p.payoff_seed)
    expected = -10.0 + 30.0 * torch.rand((10, 5, 5, 5), generator=rng)
    assert torch.equal(make("matrix/cora-mtg", n_envs=1, seed=0).payoffs, expected)


def test_params_are_validated():
    with pytest.raises(ValidationError):
        MultiPeakMatrixGame.Params(n_agents=2, n_actions=2, n_peaks=5)  # more peaks than joint actions
    with pytest.raises(ValidationError):
        MultiPeakMatrixGame.Params(local_peak_high=20.0)  # a local peak may not tie the global one
    with pytest.raises(ValidationError):
        MultiPeakMatrixGame.Params(noise_high=6.0)  # peaks must stand above the noise
    with pytest.raises(ValidationError):
        MultiPeakMatrixGame.Params(peaks=5)


def test_same_seed_same_trajectory_and_state_dict_round_trip():
    def rollout(env, actions):
        return [env.step(a) for a in actions]

    actions = torch.randint(0, 5, (25, 4, 3), generator=torch.Generator().manual_seed(0))
    env = make(NAMES[15], n_envs=4, seed=1, **yaml_params(NAMES[15]))
    env.reset()
    first = rollout(env, actions[:7])
    saved = env.state_dict()
    tail = rollout(env, actions[7:])
    env.load_state_dict(saved)
    again = rollout(env, actions[7:])
    for x, y in zip(tail, again, strict=True):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward) and torch.equal(x.done, y.done)
    other = make(NAMES[15], n_envs=4, seed=1, **yaml_params(NAMES[15]))
    other.reset()
    assert all(torch.equal(x.reward, y.reward) for x, y in zip(first, rollout(other, actions[:7]), strict=True))


@pytest.mark.parametrize("name", list(NAMES.values()))
def test_parallel_env_view_passes_pettingzoo_api_test(name):
    parallel_api_test(ParallelEnvView(name, seed=0, **yaml_params(name)), num_cycles=40)
