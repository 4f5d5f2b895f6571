"""TaskEnv, the one base of the native tasks: time limit, auto-reset, episode statistics, state dicts."""

import math

import pytest
import torch

from environments.base import EnvSpec, TaskEnv


class Counter(TaskEnv):
    """Each copy counts up by the sum of its 2 agents' actions (0 or 1) and terminates at 3 or more; it starts
    at 0 or 1 (drawn). Observation: the count; reward: each agent's own action (private) or their sum (team)."""

    NAME = "test/counter"
    STATE_KEYS = ("x",)

    def __init__(self, n_envs, seed, episode_length=4, team=False, time_in_obs=False):
        super().__init__(n_envs, seed, "cpu", episode_length)
        self.TIME_IN_OBS = time_in_obs
        self.team = team
        self.x = torch.zeros(n_envs, dtype=torch.long)
        self.spec = EnvSpec(self.name, "test", 2, 1, 1, 2, episode_length, "team" if team else "private")

    def _fresh(self):
        return {"x": torch.randint(0, 2, (self.n_envs,), generator=self.generator)}

    def _observe(self):
        state = self.x.float().unsqueeze(1)
        return state.unsqueeze(1).expand(-1, 2, -1), state, None

    def _transition(self, actions):
        self.x = self.x + actions.sum(1)
        reward = actions.sum(1).float() if self.team else actions.float()
        return reward, self.x >= 3, {"moved": actions.sum(1)}


def run(env, actions):
    return [env.step(a) for a in actions]


def test_finished_copies_reset_alone_and_report_their_last_view_and_statistics():
    env = Counter(n_envs=3, seed=0)
    first = env.reset()
    assert torch.isnan(first.episode_return).all() and first.extras == {}
    env.x = torch.zeros(3, dtype=torch.long)  # every copy from 0
    # copy 0 moves 2 per step (terminates), copy 1 never moves (truncated at step 4), copy 2 moves 1 per step
    actions = torch.tensor([[1, 1], [0, 0], [1, 0]])
    seen = run(env, [actions] * 4)
    ts = seen[1]  # copy 0 reached 4 at step 2, copy 2 reaches 3 at step 3
    assert ts.terminated.tolist() == [True, False, False] and not ts.truncated.any()
    assert ts.final_obs[0, 0, 0] == 4 and ts.final_state[0, 0] == 4
    assert ts.obs[0, 0, 0] in (0.0, 1.0)  # the next episode's first observation
    assert torch.equal(ts.final_obs[1:], ts.obs[1:])  # running copies: final views are the current ones
    assert ts.episode_return[0] == 4.0 and ts.episode_length[0] == 2.0  # private: the sum of both agents'
    assert torch.isnan(ts.episode_return[1:]).all() and torch.isnan(ts.episode_length[1:]).all()
    assert seen[2].terminated.tolist() == [False, False, True] and seen[2].episode_length[2] == 3.0
    last = seen[3]
    assert last.truncated[1] and not last.terminated[1]  # the limit, not the task, ended it
    assert last.episode_length[1] == 4.0 and last.episode_return[1] == 0.0
    assert torch.equal(last.extras["moved"], torch.tensor([2, 0, 1]))
    assert not (last.terminated & last.truncated).any()


def test_a_team_reward_goes_to_every_agent_and_counts_once():
    env = Counter(n_envs=2, seed=1, team=True)
    env.reset()
    ts = env.step(torch.tensor([[1, 1], [1, 0]]))
    assert ts.reward.tolist() == [[2.0, 2.0], [1.0, 1.0]]
    ends = run(env, [torch.tensor([[1, 1], [1, 0]])] * 3)
    returns = [r for t in [ts, *ends] for r in t.episode_return.tolist() if not math.isnan(r)]
    assert returns and all(r in (4.0, 3.0, 2.0) for r in returns)  # 2 per step to copy 0 over 2 steps, ...


def test_observed_time_makes_the_limit_a_termination():
    env = Counter(n_envs=2, seed=0, episode_length=2, time_in_obs=True)
    env.reset()
    ts = run(env, [torch.zeros(2, 2, dtype=torch.long)] * 2)[-1]
    assert ts.terminated.all() and not ts.truncated.any() and ts.episode_length.tolist() == [2.0, 2.0]


def test_state_dict_continues_bit_for_bit_in_a_fresh_object():
    env = Counter(n_envs=4, seed=3)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    actions = [torch.randint(0, 2, (4, 2), generator=gen) for _ in range(25)]
    run(env, actions[:5])
    saved = env.state_dict()
    assert set(saved) == {"generator", "t", "tracker", "x"}
    first = run(env, actions[5:])
    other = Counter(n_envs=4, seed=99)
    other.reset()
    other.load_state_dict(saved)
    for a, b in zip(first, run(other, actions[5:]), strict=True):
        for field in ("obs", "reward", "terminated", "truncated", "final_obs"):
            assert torch.equal(getattr(a, field), getattr(b, field))
        assert torch.equal(a.episode_return.nan_to_num(-1), b.episode_return.nan_to_num(-1))


def test_a_task_class_without_a_name_is_refused():
    class Nameless(Counter):
        NAME = ""

    with pytest.raises(ValueError, match="environments.make"):
        Nameless(n_envs=1, seed=0)
