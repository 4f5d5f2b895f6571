"""ACPO (agent-chained policy optimization): the chained advantage against GAE over explicit micro-steps,
the belief chain of App. L, and runs through the driver. ACPI (the exact method) is in test_acpi.py."""

import math

import pytest
import torch

from algorithms.acpo import ACPO, ACPOConfig, chained_advantages
from algorithms.blocks.gae import compute_gae
from coopbench.base.io import read_parquet
from coopbench.config import parse_set, resolve
from coopbench.run import execute, seed_everything
from environments import make
from environments.seed_batch import seed_view
from tests.policy_probs import policy_probs

CPU = torch.device("cpu")


def _random_rollout(steps=7, copies=3, agents=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(steps, copies, agents, generator=g, dtype=torch.float64)
    next_first = torch.randn(steps, copies, generator=g, dtype=torch.float64)
    rewards = torch.randn(steps, copies, generator=g, dtype=torch.float64)
    episode_end = torch.rand(steps, copies, generator=g) < 0.3
    terminated = episode_end & (torch.rand(steps, copies, generator=g) < 0.5)  # the rest are truncations
    return values, next_first, rewards, terminated, episode_end


def _micro_step_gae(values, next_first, rewards, terminated, episode_end, gamma, lam):
    """Ordinary GAE over the serialized episode: step t is N micro-steps; only agent N's earns the reward,
    ends the episode and bootstraps from agent 1's value at the next state (ACPO sec. 3)."""
    steps, copies, n = values.shape
    flat = lambda x: x.reshape(steps * n, copies)  # noqa: E731 - [T, B, N] -> micro-steps [T*N, B]
    micro_values = flat(values.transpose(1, 2))
    following = torch.cat([values[..., 1:], next_first.unsqueeze(-1)], dim=-1)  # V of the next micro-step
    micro_next = flat(following.transpose(1, 2))
    last = torch.zeros(steps, n, copies, dtype=torch.bool)
    last[:, -1] = True
    micro_rewards = flat(torch.where(last, rewards.unsqueeze(1), torch.zeros(()).double()))
    micro_terminated = flat(last & terminated.unsqueeze(1))
    micro_end = flat(last & episode_end.unsqueeze(1))
    advantages, _ = compute_gae(micro_rewards, micro_values, micro_next, micro_terminated, micro_end, gamma, lam)
    return advantages.reshape(steps, n, copies).transpose(1, 2)


@pytest.mark.parametrize("agents", [1, 2, 5])
@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 1.0), (0.5, 0.0)])
def test_chained_advantage_is_gae_over_the_explicit_micro_steps(agents, gamma, lam):
    rollout = _random_rollout(agents=agents, seed=agents)
    micro_gamma, micro_lambda = gamma ** (1 / agents), lam ** (1 / agents)
    advantages, targets = chained_advantages(*rollout, micro_gamma, micro_lambda)
    expected = _micro_step_gae(*rollout, micro_gamma, micro_lambda)
    torch.testing.assert_close(advantages, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(targets, expected + rollout[0])


def test_chained_advantage_of_one_step_episodes_by_hand():
    """Two agents, one step that terminates: A^(2) = r - V2, A^(1) = g' V2 - V1 + g' l' (r - V2)."""
    values = torch.tensor([[[1.0, 3.0]]], dtype=torch.float64)
    done = torch.tensor([[True]])
    g, lam = 0.81, 0.64
    advantages, _ = chained_advantages(values, torch.tensor([[7.0]]).double(), torch.tensor([[10.0]]).double(),
                                       done, done, g**0.5, lam**0.5)
    assert advantages[0, 0, 1].item() == pytest.approx(10.0 - 3.0)
    assert advantages[0, 0, 0].item() == pytest.approx(0.9 * 3.0 - 1.0 + 0.9 * 0.8 * 7.0)


def _agent(env_name="matrix/acpo-3x3", n_envs=8, **hparams):
    seed_everything(0)
    config = resolve("acpo", env_name)
    env = make(env_name, n_envs=n_envs, seed=0, **config.env_params)
    cfg = ACPOConfig(**{**config.algo_hparams, "n_envs": n_envs, **hparams})
    return ACPO(env.spec, cfg, CPU), env


def _chain(agent, timestep, deterministic):
    """The chain at `timestep` from fresh memory, as the collector runs it (a seed batch of one, tensors
    `[1, B, ...]`): the agents' stored inputs and actions, `[B, ...]`."""
    step = agent.policy_step(seed_view(timestep, agent.n_seeds), agent.initial_memory(timestep.obs.shape[0]),
                             deterministic)
    return step.actor_in[0], step.actions[0]


def test_deterministic_beliefs_are_the_earlier_agents_actions_when_all_see_the_same():
    """App. L: agent i predicts agent j < i with its own policy and j's id. In a matrix game every agent sees
    the same observation, so with shared parameters and greedy acting the prediction is exact."""
    agent, env = _agent("matrix/cora-multipeak-5")
    n, width = env.spec.n_agents, env.spec.n_actions
    with torch.no_grad():  # a policy that depends on the belief: random weights of a visible size
        for p in agent.actor.net.parameters():
            p.normal_(0.0, 1.0)
    timestep = env.reset()
    actor_in, actions = _chain(agent, timestep, deterministic=True)
    beliefs = agent.beliefs(actor_in).view(env.n_envs, n, n, width)
    one_hot = torch.nn.functional.one_hot(actions, width).float()
    for i in range(n):
        torch.testing.assert_close(beliefs[:, i, :i], one_hot[:, :i])
        assert beliefs[:, i, i:].abs().sum() == 0  # nothing about agents at or after i
    # Each agent's stored input is the one it decided on: its id and its belief.
    ids = actor_in[..., env.spec.obs_dim:env.spec.obs_dim + n]
    torch.testing.assert_close(ids, torch.eye(n).expand(env.n_envs, n, n))


def test_sampled_beliefs_follow_the_predicted_agents_policy():
    """A viewer's prediction of agent 1 is a sample of agent 1's policy (its id, no belief), drawn independently."""
    agent, env = _agent("matrix/acpo-3x3", n_envs=4000)
    with torch.no_grad():
        agent.actor.net.head.linear.weight.zero_()
        agent.actor.net.head.linear.bias.copy_(torch.log(torch.tensor([0.6, 0.3, 0.1])))
    timestep = env.reset()
    actor_in, actions = _chain(agent, timestep, deterministic=False)
    predicted = agent.beliefs(actor_in).view(env.n_envs, 2, 2, 3)[:, 1, 0]  # agent 2's belief about agent 1
    frequencies = predicted.mean(0)
    torch.testing.assert_close(frequencies, torch.tensor([0.6, 0.3, 0.1]), atol=0.03, rtol=0)
    agreement = (predicted.argmax(-1) == actions[:, 0]).float().mean()
    assert abs(agreement.item() - (0.36 + 0.09 + 0.01)) < 0.04  # independent draws


def test_acpo_reaches_the_optimum_of_the_3x3_game_from_uniform():
    agent, env = _agent("matrix/acpo-3x3", n_envs=4)
    timestep = env.reset()
    for _ in range(20):
        timestep = agent.train_iteration(env, timestep).timestep
    actions, _ = agent.act(timestep, agent.initial_memory(env.n_envs), deterministic=True)
    assert (actions == 2).all(), actions  # (C, C): reward 20


def test_config_errors():
    with pytest.raises(ValueError, match="learning_reward must be 'team'"):
        ACPOConfig(learning_reward="own")
    with pytest.raises(ValueError, match="micro_lambda"):
        ACPOConfig(micro_lambda="half")


@pytest.mark.parametrize("algo", ["acpo", "acpo_no_chain"])
@pytest.mark.parametrize("env", ["matrix/acpo-3x3", "differential/cora-2agent", "gridworld/as-coop-predation-2"])
def test_acpo_runs_through_the_driver(algo, env, tmp_path):
    config = resolve(algo, env, parse_set(["algo.n_envs=2", "algo.rollout_length=10", "algo.ppo_epochs=1",
                                           "run.total_env_steps=40", "run.eval_interval=20", "run.eval_episodes=2"]))
    run_dir = execute(config, seed=0, results_dir=tmp_path)
    metrics = read_parquet(run_dir / "metrics.parquet")
    assert metrics["env_steps"].tolist() == [0, 20, 40]
    assert all(math.isfinite(v) for v in metrics["eval_return_mean"])


def test_recurrent_acpo_with_masks_trains():
    """SMAX-like settings: GRU actors and critics, available-action masks, separate actor parameters."""
    agent, env = _agent("gridworld/lan-checkers", n_envs=2, recurrent=True, rollout_length=10, chunk_length=5,
                        ppo_epochs=1, share_parameters=False)
    timestep = env.reset()
    result = agent.train_iteration(env, timestep)
    assert all(math.isfinite(v) for v in result.losses.values())


def test_available_actions_mask_each_agents_own_decision_only():
    """An agent's mask constrains its own action; a viewer predicting it cannot see that mask (CTDE)."""
    import dataclasses

    agent, env = _agent("matrix/acpo-3x3", n_envs=2000)
    timestep = env.reset()
    avail = torch.ones(env.n_envs, 2, 3, dtype=torch.bool)
    avail[:, 0, :2] = False  # agent 1 may only play C
    masked = dataclasses.replace(timestep, avail_actions=avail)
    actor_in, actions = _chain(agent, masked, deterministic=False)
    assert (actions[:, 0] == 2).all()
    predicted = agent.beliefs(actor_in).view(env.n_envs, 2, 2, 3)[:, 1, 0].argmax(-1)
    assert (predicted != 2).float().mean() > 0.5  # the near-uniform initial policy, unmasked


def test_each_agents_policy_given_greedy_beliefs_is_what_it_acts_greedily_on():
    """pi^(i)(. | o_i, b^(i)) with b^(i) the greedy predictions (tests/policy_probs.py): a distribution per
    agent whose argmax is the greedy joint action."""
    agent, env = _agent("matrix/acpo-3x3", n_envs=4)
    timestep = env.reset()
    for _ in range(10):
        timestep = agent.train_iteration(env, timestep).timestep
    probs = policy_probs(agent, timestep)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 2))
    greedy, _ = agent.act(timestep, agent.initial_memory(4), deterministic=True)
    assert (probs.argmax(-1) == greedy).all()
