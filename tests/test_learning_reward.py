"""Which reward the on-policy learners train on, on team and on private-reward tasks."""

import pytest
import torch

from algorithms.registry import ALGORITHMS
from environments import make


def _algo(name: str, env_name: str, **hparams):
    env = make(env_name, n_envs=2, seed=0)
    cls = ALGORITHMS.get(name).load()
    return cls(env.spec, cls.Config(**hparams), torch.device("cpu")), env


@pytest.mark.parametrize("algo", ["mappo", "ippo", "happo", "acpo", "cora"])
def test_private_rewards_are_summed_into_the_team_reward_by_default(algo):
    learner, env = _algo(algo, "gridworld/as-exchange")
    assert env.spec.reward_mode == "private"
    reward = torch.tensor([[1.0, -5.0, 0.5], [0.0, 0.0, 10.0]])
    expected = torch.tensor([[-3.5] * 3, [10.0] * 3])
    assert torch.equal(learner.collector.rewards(reward), expected)


def test_own_rewards_for_independent_learners_and_team_tasks_unchanged():
    learner, _ = _algo("ippo", "gridworld/as-exchange", learning_reward="own")
    reward = torch.tensor([[1.0, -5.0, 0.5]])
    assert torch.equal(learner.collector.rewards(reward), reward)
    team_learner, env = _algo("mappo", "matrix/acpo-3x3")
    assert env.spec.reward_mode == "team"
    team = torch.tensor([[4.0, 4.0]])
    assert torch.equal(team_learner.collector.rewards(team), team)
