"""The value-based family's blocks against hand-computed cases: episode replay and its collection, TD(lambda) and
double-Q targets, masked max/argmax, epsilon-greedy, target updates, RMSprop."""

import pytest
import torch

from algorithms.blocks.episode_collection import EpisodeCollection
from algorithms.blocks.exploration import epsilon_greedy, linear_epsilon
from algorithms.blocks.q_targets import (
    greedy_next,
    hard_update,
    lambda_returns,
    masked_argmax,
    masked_max,
    masked_mse,
    soft_update,
)
from algorithms.blocks.replay import EpisodeBuffer
from algorithms.blocks.rmsprop import RMSprop
from tests.value_based_games import CountingGame


def fill(n_envs=3, capacity=100, min_episodes=20):
    env = CountingGame(n_envs, seed=0)
    buffer = EpisodeBuffer(capacity, env.spec, torch.device("cpu"))
    collector = EpisodeCollection(env.spec, n_envs, torch.device("cpu"))
    counter = {"calls": 0}

    def act(timestep, active):  # action = (t + agent) % 2: a known function of what the agent saw
        counter["calls"] += 1
        return ((timestep.obs[..., 1].long() + torch.arange(2)) % 2)

    collected = collector.collect(env, env.reset(), act, buffer, min_episodes)
    return env, buffer, collector, collected


def check_episode(episode: dict, limit: int) -> None:
    """One stored episode is exactly one played episode, padded with zeros after its end."""
    episode_id = int(episode["obs"][0, 0, 0])
    length = 1 + episode_id % limit
    t = torch.arange(limit + 1)
    assert torch.equal(episode["filled"], t < length)
    assert torch.equal(episode["obs"][: length + 1, :, 0], torch.full((length + 1, 2), float(episode_id)))
    assert torch.equal(episode["obs"][: length + 1, 0, 1], t[: length + 1].float())  # the final view at `length`
    assert torch.equal(episode["state"][: length + 1, 1], t[: length + 1].float())
    assert torch.equal(episode["reward"][:length], t[:length].float() + 1)
    assert torch.equal(episode["actions"][:length], (t[:length, None] + torch.arange(2)) % 2)
    assert torch.equal(episode["avail"][:length, 0, 2], t[:length] % 2 == 0)
    assert episode["terminated"].tolist() == [i == length - 1 and length < limit for i in range(limit + 1)]
    assert not episode["obs"][length + 1:].any() and not episode["reward"][length:].any()  # padding


def test_collector_stores_whole_episodes_and_nothing_else():
    env, buffer, _, collected = fill()
    (returns,), (steps,) = collected.episode_returns, collected.env_steps  # one seed's
    assert buffer.size >= 20 and len(returns) == buffer.size
    ids = sorted(int(i) for i in buffer["obs"][: buffer.size, 0, 0, 0])
    in_progress = set(env.ids.tolist())
    assert ids == sorted(set(range(env.next_id)) - in_progress)  # every finished episode once, none in progress
    for k in range(buffer.size):
        check_episode({name: tensor[k] for name, tensor in buffer.data.items()}, env.LIMIT)
    # returns reported by the env = the stored rewards' sums
    stored = buffer["reward"][: buffer.size].sum(1).sort().values
    assert torch.equal(stored, returns.sort().values)
    assert steps == int(buffer["filled"][: buffer.size].sum()) + int(
        (env.t > 0).sum())  # steps of episodes still in progress are counted too


def test_sampling_respects_episode_boundaries_and_masks():
    env, buffer, _, _ = fill()
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        batch = buffer.sample(8)
        longest = int(batch["filled"].sum(1).max())
        assert batch["obs"].shape[:2] == (8, longest + 1)
        ids = batch["obs"][:, 0, 0, 0].tolist()
        assert len(set(ids)) == 8  # distinct episodes
        seen.update(ids)
        for k in range(8):
            padded = {name: torch.cat([tensor[k], torch.zeros(env.LIMIT - longest, *tensor.shape[2:],
                                                              dtype=tensor.dtype)]) for name, tensor in batch.items()}
            check_episode(padded, env.LIMIT)
    assert len(seen) == buffer.size  # uniform over the whole buffer: every episode comes up


def test_ring_buffer_keeps_the_newest_and_checkpoints_exactly():
    env, buffer, collector, _ = fill(n_envs=1, capacity=5, min_episodes=12)  # one copy: episodes end in id order
    ids = sorted(int(i) for i in buffer["obs"][:, 0, 0, 0])
    assert ids == list(range(7, 12)) and buffer.size == 5
    clone = EpisodeBuffer(5, env.spec, torch.device("cpu"))
    clone.load_state_dict(buffer.state_dict())
    torch.manual_seed(3)
    a = buffer.sample(4)
    torch.manual_seed(3)
    b = clone.sample(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = EpisodeCollection(env.spec, env.n_envs, torch.device("cpu"))
    other.load_state_dict(collector.state_dict())
    assert torch.equal(other.t, collector.t) and torch.equal(other.episodes["obs"], collector.episodes["obs"])


def test_one_step_and_lambda_targets_by_hand():
    gamma, lam = 0.9, 0.5
    # one episode of 3 transitions ending in a terminal state, then a truncated one of 2 (padded to 3)
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 0.0]])
    next_values = torch.tensor([[10.0, 20.0, 30.0], [10.0, 20.0, 99.0]])
    terminated = torch.tensor([[False, False, True], [False, False, False]])
    filled = torch.tensor([[True, True, True], [True, True, False]])
    one_step = lambda_returns(rewards, terminated, filled, next_values, gamma, 0.0)
    assert torch.allclose(one_step[0], torch.tensor([1 + 9.0, 2 + 18.0, 3.0]))
    assert torch.allclose(one_step[1, :2], torch.tensor([1 + 9.0, 2 + 18.0]))
    g = lambda_returns(rewards, terminated, filled, next_values, gamma, lam)
    # G2 = 3; G1 = 2 + .9 (.5 * 20 + .5 * 3) = 12.35; G0 = 1 + .9 (.5 * 10 + .5 * 12.35) = 11.0575
    assert torch.allclose(g[0], torch.tensor([11.0575, 12.35, 3.0]))
    # truncated: the last real step bootstraps from V alone: G1 = 2 + 18 = 20; G0 = 1 + .9 (5 + 10) = 14.5
    assert torch.allclose(g[1, :2], torch.tensor([14.5, 20.0]))
    # lambda = 1: the discounted return bootstrapped at the episode's end
    assert torch.allclose(lambda_returns(rewards, terminated, filled, next_values, gamma, 1.0)[0],
                          torch.tensor([1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0]))
    # per-agent values (IQL, LAN) broadcast the episode flags
    per_agent = lambda_returns(rewards[..., None].expand(2, 3, 2), terminated, filled,
                               next_values[..., None].expand(2, 3, 2), gamma, lam)
    assert torch.allclose(per_agent[..., 1], g)


def test_double_q_and_masked_max_by_hand():
    online = torch.tensor([[[1.0, 5.0, 9.0]]])  # its argmax, action 2, is unavailable: the best available is 1
    target = torch.tensor([[[7.0, 3.0, 100.0]]])
    avail = torch.tensor([[[True, True, False]]])
    value, action = greedy_next(target, online, avail, double_q=True)
    assert action.item() == 1 and value.item() == 3.0  # online picks, target values
    value, action = greedy_next(target, online, avail, double_q=False)
    assert action.item() == 0 and value.item() == 7.0  # the target's own available max
    assert masked_max(target, avail).item() == 7.0 and masked_argmax(online, avail).item() == 1
    # a padding step (nothing available) counts every action, never -inf / NaN
    nothing = torch.zeros_like(avail)
    assert masked_max(target, nothing).item() == 100.0
    assert torch.isfinite(masked_mse(masked_max(target, nothing) * 0, torch.ones(1, 1, dtype=torch.bool)))


def test_masked_mse_ignores_padding():
    error = torch.tensor([[1.0, 2.0, 100.0]])
    assert masked_mse(error, torch.tensor([[True, True, False]])).item() == pytest.approx(2.5)


def test_epsilon_schedule_and_greedy_actions_respect_availability():
    assert linear_epsilon(0, 1.0, 0.05, 100) == 1.0
    assert linear_epsilon(50, 1.0, 0.05, 100) == pytest.approx(0.525)
    assert linear_epsilon(10_000, 1.0, 0.05, 100) == 0.05
    torch.manual_seed(0)
    q = torch.randn(2000, 2, 4)
    avail = torch.rand(2000, 2, 4) < 0.6
    avail[..., 3] = True
    explored = epsilon_greedy(q, avail, 1.0)
    assert avail.gather(-1, explored.unsqueeze(-1)).all()
    # uniform over the available ones: where all 4 are available, each is picked about a quarter of the time
    full = avail.all(-1)
    counts = torch.bincount(explored[full], minlength=4).float() / full.sum()
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.05)
    assert torch.equal(epsilon_greedy(q, avail, 0.0), masked_argmax(q, avail))


def test_target_updates():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    soft_update(target, online, 0.25)
    before = target.weight.clone()
    soft_update(target, online, 0.5)
    assert torch.allclose(target.weight, 0.5 * before + 0.5 * online.weight)
    hard_update(target, online)
    assert torch.equal(target.weight, online.weight) and torch.equal(target.bias, online.bias)


def test_rmsprop_is_torchs():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    ours = RMSprop(a.parameters(), lr=5e-4, alpha=0.99, eps=1e-5)
    theirs = torch.optim.RMSprop(b.parameters(), lr=5e-4, alpha=0.99, eps=1e-5)
    for _ in range(5):
        x = torch.randn(8, 4)
        for net, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-7) and torch.allclose(a.bias, b.bias, atol=1e-7)
