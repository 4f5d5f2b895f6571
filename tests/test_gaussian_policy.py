"""Continuous actions in the on-policy family: the Gaussian head's maths and a learning check."""

import pytest
import torch
from pydantic import BaseModel

from algorithms.blocks.networks import GaussianHead, Torso
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.ippo import IPPO
from algorithms.mappo import MAPPO
from coopbench.run import seed_everything
from environments.base import BatchedEnv, EnvSpec, EpisodeTracker, TimeStep


@pytest.mark.parametrize("state_dependent", [False, True])
def test_log_prob_and_entropy_match_torch_normal(state_dependent):
    torch.manual_seed(0)
    torso = Torso(1, 4, [8], "tanh")
    head = GaussianHead(1, torso.out_features, 2, log_std_init=-0.5, state_dependent_std=state_dependent)
    features = torso.mlp(torch.randn(5, 3, 4))
    params = head.params(features, None)
    actions = head.sample(params, deterministic=False)
    mean, log_std = head.mean_log_std(params)
    reference = torch.distributions.Normal(mean, log_std.exp())
    assert torch.allclose(head.log_prob(params, actions), reference.log_prob(actions).sum(-1), atol=1e-5)
    assert torch.allclose(head.entropy(params), reference.entropy().sum(-1), atol=1e-5)
    assert torch.allclose(log_std, torch.full_like(log_std, -0.5), atol=0.05)  # starts at log_std_init
    # KL(old || new) against torch's closed form
    other = head.params(torso.mlp(torch.randn(5, 3, 4)), None) + 0.1
    other_mean, other_log_std = head.mean_log_std(other)
    expected = torch.distributions.kl_divergence(reference, torch.distributions.Normal(other_mean, other_log_std.exp()))
    assert torch.allclose(head.kl(params, other), expected.sum(-1), atol=1e-5)


class TargetGame(BatchedEnv):
    """One-step team game: reward -(sum of squared distances of each agent's action to its target)."""

    Params = BaseModel
    TARGETS = torch.tensor([[1.5], [-2.0]])

    def __init__(self, n_envs, seed, device="cpu"):
        super().__init__(n_envs, seed, device)
        self.spec = EnvSpec("test/target", "test", n_agents=2, obs_dim=1, state_dim=1, n_actions=0,
                            episode_limit=1, action_dim=1, action_low=-5.0, action_high=5.0)
        self.tracker = EpisodeTracker(n_envs, self.device)

    def _timestep(self, reward, done):
        obs, state = torch.ones(self.n_envs, 2, 1), torch.ones(self.n_envs, 1)
        ret, length = self.tracker.update(reward[:, 0], done) if done.any() else (
            torch.full((self.n_envs,), float("nan")), torch.full((self.n_envs,), float("nan")))
        return TimeStep(obs, state, None, reward, done, torch.zeros_like(done), obs, state, ret, length)

    def reset(self):
        return self._timestep(torch.zeros(self.n_envs, 2), torch.zeros(self.n_envs, dtype=torch.bool))

    def step(self, actions):
        actions = actions.clamp(self.spec.action_low, self.spec.action_high)
        team = -(actions - self.TARGETS).pow(2).sum((-1, -2))
        return self._timestep(team.unsqueeze(1).expand(-1, 2), torch.ones(self.n_envs, dtype=torch.bool))


@pytest.mark.parametrize("cls", [MAPPO, IPPO])
def test_gaussian_policies_learn_each_agents_target(cls):
    seed_everything(0)
    env = TargetGame(n_envs=16, seed=0)
    config = OnPolicyConfig(n_envs=16, rollout_length=8, lr_actor=3e-3, lr_critic=3e-3, entropy_coef=0.0)
    agent = cls(env.spec, config, torch.device("cpu"))
    timestep = env.reset()
    for _ in range(120):
        timestep = agent.train_iteration(env, timestep).timestep
    greedy = agent.act(timestep, agent.initial_memory(16), deterministic=True)[0][0]
    assert torch.allclose(greedy, TargetGame.TARGETS, atol=0.3), greedy
