"""The PettingZoo view's spaces tell the truth: every action its space contains is one the task's step takes as
is, and the step clips anything beyond, at exactly the space's bounds (issue 19: the view advertised Box(-1, 1)
for every continuous task while CORA's differential games take [-5, 5] and VMAS give_way [-0.5, 0.5]).

Every task whose library starts quickly is checked; of Multi-Agent MuJoCo (a second or more per environment
built) one task; SMAX (JAX compilation), SMAC and gfootball (absent here) are left out.
"""

import numpy as np
import pytest

from coopbench.config import load_env_file
from environments.registry import ENVIRONMENTS
from tests.pettingzoo_view import ParallelEnvView

SKIPPED_FAMILIES = {"smax", "smac", "smacv2", "gfootball"}
ONE_OF = {"mamujoco": "mamujoco/halfcheetah-2x3"}
TASKS = [e.name for e in ENVIRONMENTS.entries()
         if e.family not in SKIPPED_FAMILIES and ONE_OF.get(e.family, e.name) == e.name]


def view(name: str) -> ParallelEnvView:
    return ParallelEnvView(name, seed=0, **load_env_file(name).params)


def outcome(name: str, action: np.ndarray):
    """Observations, rewards and state after one joint step of `action` (every agent) from the seed-0 start."""
    env = view(name)
    try:
        env.reset()
        obs, rewards, *_ = env.step({a: action for a in env.possible_agents})
        return np.stack([obs[a] for a in env.possible_agents]), np.array(list(rewards.values())), env.state()
    finally:
        env.close()


def same(x, y) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(x, y, strict=True))


def test_the_list_covers_every_cheap_family():
    families = {ENVIRONMENTS.get(name).family for name in TASKS}
    assert {"matrix", "differential", "particle", "vmas", "mpe", "rware", "mamujoco"} <= families
    assert "differential/cora-2agent" in TASKS and "vmas/give_way" in TASKS


@pytest.mark.parametrize("name", TASKS)
def test_spaces_match_what_step_accepts(name):
    env = view(name)
    spec = env._env.spec
    try:
        observations, infos = env.reset()
        agent = env.possible_agents[0]
        for a in env.possible_agents:
            assert env.observation_space(a).contains(observations[a]), f"{name}: observation outside its space"
        assert env.state().shape == env.state_space.shape
        space = env.action_space(agent)
        if spec.discrete:
            assert space.n == spec.n_actions
            for action in range(space.n):  # every action of the space is taken (masked ones included)
                env.reset()
                obs, rewards, *_ = env.step({a: action for a in env.possible_agents})
                assert all(np.isfinite(r) for r in rewards.values())
                assert all(env.observation_space(a).contains(obs[a]) for a in env.possible_agents)
            return
    finally:
        env.close()
    # Continuous, one component at a time (the others 0; VMAS clips the action's norm, so the box is the
    # smallest one around the disk it takes): the bounds are where the step clips. Beyond a bound changes
    # nothing (the box is not too narrow); just inside it changes the outcome (nor is it too wide).
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    assert np.all(low < high) and np.all(np.isfinite(low)) and np.all(np.isfinite(high))
    assert np.allclose(low, spec.action_low) and np.allclose(high, spec.action_high)
    for k in range(space.shape[0]):
        for bound, outward in ((high[k], 1.0), (low[k], -1.0)):
            def action(value, k=k):
                out = np.zeros(space.shape, np.float32)
                out[k] = value
                return out

            span = high[k] - low[k]
            at = outcome(name, action(bound))
            beyond = outcome(name, action(bound + outward * span))
            inside = outcome(name, action(bound - outward * 0.05 * span))
            assert same(at, beyond), f"{name}: component {k} beyond the space's bound {bound} is not clipped to it"
            assert not same(at, inside), f"{name}: the step clips component {k} inside the space's bound {bound}"
