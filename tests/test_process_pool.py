"""The process pool that batches single-environment libraries (environments/adapters/process_pool.py).

A toy copy with seeded episode lengths stands in for a library, so these run without any optional
package: auto-reset, final observations, seeding from (seed, copy, episode), independence from the
number of workers, worker errors, and exact and episode-restart resumption.
"""

import functools
import io

import numpy as np
import pytest
import torch

from environments.adapters.process_pool import (
    CopyEnv,
    CopyObs,
    CopyStep,
    Layout,
    PooledEnv,
    ProcessPool,
    episode_seed,
)
from environments.base import EnvSpec


class ToyCopy(CopyEnv):
    """Two agents; an episode lasts 2..5 steps (from the reset seed); obs = [t, seed draw]."""

    supports_snapshot = True

    def __init__(self, fail_at_step: int | None = None, snapshot: bool = True):
        self.fail_at_step = fail_at_step
        self.supports_snapshot = snapshot
        self.rng = np.random.default_rng(0)
        self.t = self.length = 0
        self.draw = 0.0

    def _obs(self) -> CopyObs:
        obs = np.array([[self.t, self.draw], [self.t, -self.draw]], dtype=np.float32)
        return CopyObs(obs, np.array([self.t, self.draw, self.length], dtype=np.float32))

    def reset(self, seed: int) -> CopyObs:
        self.rng = np.random.default_rng(seed)
        self.t, self.length, self.draw = 0, int(self.rng.integers(2, 6)), float(self.rng.random())
        return self._obs()

    def step(self, action: np.ndarray) -> CopyStep:
        if self.fail_at_step is not None and self.t == self.fail_at_step:
            raise ValueError("toy failure")
        self.t += 1
        self.draw = float(self.rng.random())  # in-episode randomness from the seeded generator
        team = float(action.sum()) + self.draw
        end = self.t >= self.length
        return CopyStep(self._obs(), np.full(2, team, np.float32), end and self.length % 2 == 0,
                        end and self.length % 2 == 1, {"length": float(self.length)})

    def get_state(self):
        return {"rng": self.rng.bit_generator.state, "t": self.t, "length": self.length, "draw": self.draw}

    def set_state(self, state) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.t, self.length, self.draw = state["t"], state["length"], state["draw"]


LAYOUT = Layout(n_agents=2, obs_dim=2, state_dim=3, n_actions=3)
SPEC = EnvSpec(name="toy", family="toy", n_agents=2, obs_dim=2, state_dim=3, n_actions=3, episode_limit=5)


def rollout(pool, steps=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = [pool.reset()]
    for _ in range(steps):
        out.append(pool.step(torch.randint(3, (pool.n_envs, 2), generator=gen)))
    return out


def same(a, b) -> bool:
    return all(torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward) and torch.equal(x.final_obs, y.final_obs)
               and torch.equal(x.terminated, y.terminated) and torch.equal(x.truncated, y.truncated)
               for x, y in zip(a, b, strict=True))


def test_auto_reset_keeps_the_final_observation_and_seeds_each_episode():
    pool = ProcessPool(ToyCopy, LAYOUT, n_envs=3, seed=7, n_workers=0)
    steps = rollout(pool, steps=12)
    for i in range(3):
        t = [int(s.obs[i, 0, 0]) for s in steps]
        episode = 0
        for k in range(1, len(steps)):
            s = steps[k]
            if s.terminated[i] or s.truncated[i]:
                expected_length = int(np.random.default_rng(episode_seed(7, i, episode)).integers(2, 6))
                assert int(s.final_obs[i, 0, 0]) == expected_length == t[k - 1] + 1
                assert t[k] == 0  # the returned observation is the next episode's first
                episode += 1
            else:
                assert t[k] == t[k - 1] + 1 and torch.equal(s.final_obs[i], s.obs[i])
        assert episode >= 2
    pool.close()


@pytest.mark.parametrize("n_workers", [1, 2])
def test_results_do_not_depend_on_the_number_of_workers(n_workers):
    inline = ProcessPool(ToyCopy, LAYOUT, n_envs=5, seed=3, n_workers=0)
    pooled = ProcessPool(ToyCopy, LAYOUT, n_envs=5, seed=3, n_workers=n_workers)
    try:
        assert pooled.n_workers == n_workers
        assert same(rollout(inline), rollout(pooled))
        other_seed = ProcessPool(ToyCopy, LAYOUT, n_envs=5, seed=4, n_workers=0)
        assert not same(rollout(inline), rollout(other_seed))
    finally:
        inline.close()
        pooled.close()


def test_episode_infos_arrive_with_the_copies_that_finished():
    pool = ProcessPool(ToyCopy, LAYOUT, n_envs=4, seed=0, n_workers=2)
    try:
        for s in rollout(pool, steps=10)[1:]:
            done = (s.terminated | s.truncated).nonzero().flatten().tolist()
            assert sorted(s.infos) == done
            for i in done:
                assert s.infos[i]["length"] == s.final_obs[i, 0, 0].item()
    finally:
        pool.close()


def test_a_worker_error_is_raised_with_its_traceback():
    pool = ProcessPool(functools.partial(ToyCopy, fail_at_step=1), LAYOUT, n_envs=2, seed=0, n_workers=1)
    try:
        pool.reset()
        pool.step(torch.zeros(2, 2, dtype=torch.long))
        with pytest.raises(RuntimeError, match="toy failure"):
            pool.step(torch.zeros(2, 2, dtype=torch.long))
    finally:
        pool.close()


def test_pooled_env_reports_team_returns_and_lengths():
    env = PooledEnv(SPEC, ToyCopy, n_envs=3, seed=1, n_workers=1, episode_info_keys=("length",))
    try:
        ts = env.reset()
        returns = torch.zeros(3)
        lengths = torch.zeros(3)
        for _ in range(12):
            actions = torch.ones(3, 2, dtype=torch.long)
            ts = env.step(actions)
            returns += ts.reward.mean(1)
            lengths += 1
            done = ts.done
            assert torch.allclose(ts.episode_return[done], returns[done])
            assert torch.equal(ts.episode_length[done], lengths[done])
            assert torch.equal(ts.extras["length"][done], lengths[done])
            assert ts.episode_return[~done].isnan().all() and ts.extras["length"][~done].isnan().all()
            returns[done] = 0
            lengths[done] = 0
    finally:
        env.close()


def _round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("n_workers", [0, 2])
def test_exact_resume_continues_bit_for_bit(n_workers):
    env = PooledEnv(SPEC, ToyCopy, n_envs=4, seed=2, n_workers=n_workers)
    fresh = PooledEnv(SPEC, ToyCopy, n_envs=4, seed=2, n_workers=n_workers)
    try:
        env.reset()
        actions = torch.randint(3, (15, 4, 2), generator=torch.Generator().manual_seed(0))
        for a in actions[:4]:
            env.step(a)
        saved = _round_trip(env.state_dict())
        assert saved["exact"]
        first = [env.step(a) for a in actions[4:]]
        fresh.reset()
        fresh.load_state_dict(saved)
        second = [fresh.step(a) for a in actions[4:]]
        for x, y in zip(first, second, strict=True):
            assert torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward)
            assert torch.equal(x.episode_return.nan_to_num(-1), y.episode_return.nan_to_num(-1))
    finally:
        env.close()
        fresh.close()


def test_resume_without_snapshots_restarts_episodes_deterministically():
    make = functools.partial(ToyCopy, snapshot=False)
    env = PooledEnv(SPEC, make, n_envs=2, seed=5, n_workers=0)
    env.reset()
    for _ in range(3):
        env.step(torch.zeros(2, 2, dtype=torch.long))
    saved = _round_trip(env.state_dict())
    assert not saved["exact"] and saved["pool"]["copies"] is None
    again = PooledEnv(SPEC, make, n_envs=2, seed=5, n_workers=0)
    again.load_state_dict(saved)
    # every copy started its next episode, seeded from (seed, copy, episode index)
    episodes = saved["pool"]["episodes"].tolist()
    for i in range(2):
        length = int(np.random.default_rng(episode_seed(5, i, episodes[i])).integers(2, 6))
        assert again.pool.buf["state"][i, 0] == 0 and again.pool.buf["state"][i, 2] == length
    assert again.tracker.lengths.tolist() == [0, 0] and again.tracker.returns.tolist() == [0.0, 0.0]
    ts = again.step(torch.zeros(2, 2, dtype=torch.long))  # the statistics count from the restart
    assert not ts.done.any() and torch.isnan(ts.episode_return).all() and again.tracker.lengths.tolist() == [1, 1]


def test_a_checkpoint_from_before_the_tracker_moved_resumes_its_statistics():
    """Pool checkpoints used to keep each copy's running return and length in the workers' state."""
    env = PooledEnv(SPEC, ToyCopy, n_envs=2, seed=5, n_workers=0)
    env.reset()
    env.step(torch.zeros(2, 2, dtype=torch.long))
    saved = _round_trip(env.state_dict())
    tracker = saved.pop("tracker")
    saved["pool"]["returns"], saved["pool"]["lengths"] = tracker["returns"], tracker["lengths"]
    again = PooledEnv(SPEC, ToyCopy, n_envs=2, seed=5, n_workers=0)
    again.load_state_dict(saved)
    assert torch.equal(again.tracker.lengths, env.tracker.lengths) and again.tracker.lengths.tolist() == [1, 1]


# --- checks shared by the adapter tests (tests/test_adapter_*.py import these) -----------------------
def random_actions(spec, n_envs: int, gen: torch.Generator, timestep=None) -> torch.Tensor:
    if not spec.discrete:
        unit = torch.rand(n_envs, spec.n_agents, spec.action_dim, generator=gen)
        return spec.action_low + (spec.action_high - spec.action_low) * unit
    if timestep is None or timestep.avail_actions is None:
        return torch.randint(spec.n_actions, (n_envs, spec.n_agents), generator=gen)
    weights = timestep.avail_actions.float().reshape(-1, spec.n_actions)
    return torch.multinomial(weights, 1, generator=gen).view(n_envs, spec.n_agents)


def run_random_episodes(env, steps: int, seed: int = 0) -> tuple[list, list[float], list[float]]:
    """Random actions for `steps` steps; checks every TimeStep's shapes, masks, team rewards and
    episode statistics against returns accumulated here. Returns (timesteps, returns, lengths)."""
    spec, n = env.spec, env.n_envs
    gen = torch.Generator().manual_seed(seed)
    ts = env.reset()
    timesteps, returns, lengths = [ts], [], []
    running, count = torch.zeros(n, dtype=torch.float64), torch.zeros(n)
    for _ in range(steps):
        ts = env.step(random_actions(spec, n, gen, ts))
        assert ts.obs.shape == ts.final_obs.shape == (n, spec.n_agents, spec.obs_dim)
        assert ts.state.shape == ts.final_state.shape == (n, spec.state_dim)
        assert ts.obs.dtype == ts.state.dtype == torch.float32 and torch.isfinite(ts.obs).all()
        assert ts.reward.shape == (n, spec.n_agents) and torch.isfinite(ts.reward).all()
        assert ts.terminated.dtype == ts.truncated.dtype == torch.bool
        assert not (ts.terminated & ts.truncated).any()
        if spec.has_action_mask:
            assert ts.avail_actions.shape == (n, spec.n_agents, spec.n_actions) and ts.avail_actions.any(-1).all()
        else:
            assert ts.avail_actions is None
        if spec.reward_mode == "team":  # every agent receives the team reward
            assert torch.equal(ts.reward, ts.reward[:, :1].expand_as(ts.reward))
        running += ts.reward.double().mean(1) if spec.reward_mode == "team" else ts.reward.double().sum(1)
        count += 1
        done = ts.done
        assert torch.allclose(ts.episode_return[done].double(), running[done], rtol=1e-5, atol=1e-4)
        assert torch.equal(ts.episode_length[done], count[done])
        assert ts.episode_return[~done].isnan().all() and ts.episode_length[~done].isnan().all()
        assert (count[done] <= spec.episode_limit).all()
        assert torch.equal(ts.obs[~done], ts.final_obs[~done])
        returns += running[done].tolist()
        lengths += count[done].tolist()
        running[done], count[done] = 0.0, 0.0
        timesteps.append(ts)
    return timesteps, returns, lengths


def same_timesteps(a: list, b: list) -> bool:
    fields = ("obs", "state", "reward", "terminated", "truncated", "final_obs")
    return len(a) == len(b) and all(torch.equal(getattr(x, f), getattr(y, f))
                                    for x, y in zip(a, b, strict=True) for f in fields)


def check_resume(make_env, steps_before: int, steps_after: int, seed: int = 0) -> None:
    """state_dict -> torch.save/load(weights_only) -> a fresh environment continues identically."""
    env, fresh = make_env(), make_env()
    try:
        gen = torch.Generator().manual_seed(seed)
        ts = env.reset()
        for _ in range(steps_before):
            ts = env.step(random_actions(env.spec, env.n_envs, gen, ts))
        saved = _round_trip(env.state_dict())
        actions = [random_actions(env.spec, env.n_envs, gen) for _ in range(steps_after)]
        first = [env.step(a) for a in actions]
        fresh.reset()
        fresh.load_state_dict(saved)
        second = [fresh.step(a) for a in actions]
        assert same_timesteps(first, second)
        for x, y in zip(first, second, strict=True):
            assert torch.equal(x.episode_return.nan_to_num(-1e9), y.episode_return.nan_to_num(-1e9))
    finally:
        env.close()
        fresh.close()


def register_for_test(name: str, target: str, family: str) -> None:
    """Register `name` for ParallelEnvView unless environments/registry.py already does."""
    from environments.registry import ENVIRONMENTS

    if name not in ENVIRONMENTS.names():
        ENVIRONMENTS.register(name, family, target, f"{name} (registered by the adapter tests)")
