"""Behaviour a stub cannot fake: learning ends at a pure Nash equilibrium of ACPO's 3x3 game."""

import pytest
import torch

from algorithms.registry import ALGORITHMS
from coopbench.config import resolve
from coopbench.run import seed_everything
from environments import make
from tests.policy_probs import policy_probs

NASH_EQUILIBRIA = {(0, 0), (1, 1), (2, 2)}  # (A,A), (B,B), (C,C): ACPO section 4


def train(algo: str, seed: int, iterations: int):
    config = resolve(algo, "matrix/acpo-3x3")
    seed_everything(seed)
    cls = ALGORITHMS.get(algo).load()
    hparams = cls.Config(**config.algo_hparams)
    env = make("matrix/acpo-3x3", n_envs=hparams.n_envs, seed=seed)
    agent = cls(env.spec, hparams, torch.device("cpu"))
    timestep = env.reset()
    initial = policy_probs(agent, timestep)
    for _ in range(iterations):
        timestep = agent.train_iteration(env, timestep).timestep
    return agent, timestep, initial


@pytest.mark.parametrize("algo", ["mappo", "ippo"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_converges_to_a_deterministic_nash_equilibrium(algo, seed):
    agent, timestep, initial = train(algo, seed, iterations=25)
    assert torch.allclose(initial, torch.full_like(initial, 1 / 3), atol=0.02)  # starts (near) uniform
    probs = policy_probs(agent, timestep)[0]  # [agents, actions]
    joint = tuple(probs.argmax(-1).tolist())
    assert joint in NASH_EQUILIBRIA
    assert probs.max(-1).values.min() > 0.95, probs  # deterministic: every agent commits
