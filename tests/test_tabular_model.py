"""Exact models of the tabular games against sampled transitions of the batched environments."""

import pytest
import torch
import yaml

from coopbench.config import config_dir
from environments import make
from environments.tabular_model import TabularModel

TASKS = ["matrix/acpo-3x3", "matrix/cora-mtg", "matrix/cora-multipeak-10",
         "coordination/bn-cg-2", "coordination/bn-cg-3", "coordination/bn-cg-5"]


def build(name: str, n_envs: int, seed: int):
    params = yaml.safe_load((config_dir() / "environments" / f"{name}.yaml").read_text())["params"]
    return make(name, n_envs=n_envs, seed=seed, **params)


def sample_counts(env, model: TabularModel, steps: int, seed: int):
    """Transition counts [S, J, S] under uniformly random joint actions; checks every reward on the way."""
    gen = torch.Generator().manual_seed(seed)
    s, j = model.n_states, model.n_joint
    ts = env.reset()
    transitions, starts = [], [model.state_index(ts.obs)]
    for _ in range(steps):
        state = model.state_index(ts.obs)
        assert (state >= 0).all(), "every observation is some state's"
        actions = torch.stack([torch.randint(a, (env.n_envs,), generator=gen) for a in model.n_actions], dim=1)
        joint = model.joint_index(actions)
        ts = env.step(actions)
        nxt = model.state_index(ts.final_obs)
        assert (nxt >= 0).all()
        # rewards are exact: the model's reward of (state, joint action) for every agent
        assert torch.equal(ts.reward, model.rewards[state, joint].to(ts.reward.dtype))
        # an episode ends exactly on entering a terminal state or at the horizon
        assert torch.equal(ts.terminated, model.terminal[nxt])
        transitions.append((state * j + joint) * s + nxt)
        starts.append(model.state_index(ts.obs)[ts.done])
    counts = torch.bincount(torch.cat(transitions), minlength=s * j * s).view(s, j, s)
    return counts, torch.bincount(torch.cat(starts), minlength=s)


def assert_counts(counts: torch.Tensor, expected: torch.Tensor, variance: torch.Tensor, sigmas: float = 5.5):
    """|count - expected| within `sigmas` standard deviations, plus 2 counts for the discreteness of rare
    events (one occurrence of a p = 1e-6 transition is no evidence against the model)."""
    assert ((counts.double() - expected).abs() <= sigmas * variance.sqrt() + 2.0).all()


def assert_frequencies(counts: torch.Tensor, probs: torch.Tensor):
    """Counts [..., S] of rows drawn from `probs` [..., S]: cell by cell, and pooled over the first (state)
    dimension, where the sample is larger and a systematic error shows sooner."""
    p = probs.double()
    n = counts.sum(-1, keepdim=True).double()
    assert_counts(counts, n * p, n * p * (1 - p))
    assert_counts(counts.sum(0), (n * p).sum(0), (n * p * (1 - p)).sum(0))
    assert (counts[p == 0] == 0).all()  # impossible transitions never happen


@pytest.mark.parametrize("name", TASKS)
def test_model_matches_sampled_transitions(name):
    env = build(name, n_envs=1024, seed=0)
    model = env.model()
    assert isinstance(model, TabularModel)
    assert model.n_agents == env.spec.n_agents and model.horizon == env.spec.episode_limit
    steps = 200 if name.startswith("coordination") else 3 * env.spec.episode_limit
    counts, initial = sample_counts(env, model, steps, seed=1)
    assert_frequencies(counts, model.transitions)
    assert counts.sum() == 1024 * steps
    if name == "coordination/bn-cg-5":
        assert (counts.sum(-1) > 0).float().mean() > 0.99  # nearly every (state, joint action) was tried
    # the initial distribution, from the first reset and every auto-reset
    assert_frequencies(initial.unsqueeze(0), model.initial.unsqueeze(0))


@pytest.mark.parametrize("name", TASKS)
def test_model_is_well_formed(name):
    env = build(name, n_envs=1, seed=0)
    model = env.model()
    s, j, n = model.n_states, model.n_joint, model.n_agents
    assert model.transitions.shape == (s, j, s) and model.rewards.shape == (s, j, n)
    assert torch.allclose(model.transitions.sum(-1).double(), torch.ones(s, j, dtype=torch.float64))
    joint = model.joint_actions()
    assert joint.shape == (j, n) and torch.equal(model.joint_index(joint), torch.arange(j))
    assert torch.equal(model.state_index(model.observations), torch.arange(s))
    assert model.states.shape == (s, env.spec.state_dim)
    if env.spec.return_bounds is not None:
        assert model.return_bounds() == pytest.approx(env.spec.return_bounds, rel=1e-6)


def test_matrix_model_is_the_payoff_table_and_row_major():
    env = make("matrix/acpo-3x3", n_envs=1, seed=0)
    model = env.model()
    assert model.n_states == 2 and model.terminal.tolist() == [False, True]
    # joint index a_0 * 3 + a_1: agent 0 is the most significant digit
    assert model.rewards[0, 2 * 3 + 2].tolist() == [20.0, 20.0]
    assert model.rewards[0, 0 * 3 + 1].tolist() == [-20.0, -20.0]
    assert (model.rewards[1] == 0).all() and (model.transitions[:, :, 1] == 1).all()
    mtg = make("matrix/cora-mtg", n_envs=1, seed=0).model()
    payoffs = make("matrix/cora-mtg", n_envs=1, seed=0).payoffs
    assert torch.equal(mtg.rewards[4, :, 0], payoffs[4].flatten())


def test_coordination_model_is_the_product_of_local_transitions():
    env = make("coordination/bn-cg-3", n_envs=1, seed=0, n_agents=3)
    model = env.model()
    # from any state, joint action (0, 1, 0) -> state (0, 1, 0) with (1 - eps)^3, state (1, 1, 0) with eps (1 - eps)^2
    j = model.joint_index(torch.tensor([0, 1, 0]))
    target, flipped = 0b010, 0b110
    assert torch.allclose(model.transitions[:, j, target], torch.tensor(0.95**3, dtype=torch.float64))
    assert torch.allclose(model.transitions[:, j, flipped], torch.tensor(0.05 * 0.95**2, dtype=torch.float64))
    # r(s) of Algorithm 2 for N = 3: 3 zeros -> 3, 2 zeros -> 0, 1 zero -> 1, no zero -> 2
    by_state = model.rewards[:, 0, 0].tolist()
    assert by_state == [3.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 2.0]
    assert torch.allclose(model.initial, torch.full((8,), 1 / 8, dtype=torch.float64))
