"""SMAX (JaxMARL) adapter: shapes, masks, rewards, episode statistics, seeding, resume, PettingZoo view.

Skipped with the reason when jaxmarl/jax are not installed (`make venv`). Compiling a
scenario's step takes seconds to a minute on a CPU (JAX's persistent cache makes later runs quick),
so the episode tests use 3m and small batches.
"""

import math

import pytest
import torch

pytest.importorskip("jax", reason="jax is not installed (make venv)")
pytest.importorskip("jaxmarl", reason="jaxmarl is not installed (make venv)")

from environments.adapters import smax_adapter  # noqa: E402
from environments.adapters.smax_adapter import SCENARIO_CLASSES, Smax3m  # noqa: E402
from environments.registry import ENVIRONMENTS  # noqa: E402

EXPECTED = {  # scenario: (allies, enemies)
    "3m": (3, 3), "8m": (8, 8), "2s3z": (5, 5), "3s_vs_5z": (3, 5), "2s_vs_1sc": (2, 1),
    "smacv2_5_units": (5, 5), "smacv2_10_units": (10, 10),
}


def random_actions(timestep, generator):
    avail = timestep.avail_actions
    return torch.multinomial(avail.float().flatten(0, 1), 1, generator=generator).view(avail.shape[:2])


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_every_scenario_builds_with_smax_family_and_spec(scenario):
    allies, enemies = EXPECTED[scenario]
    env = SCENARIO_CLASSES[scenario](n_envs=2, seed=0)  # builds the JaxMARL env; compiles nothing yet
    spec = env.spec
    assert spec.name == f"smax/{scenario}" and spec.family == "smax"  # never "smac"
    assert spec.n_agents == allies and spec.n_actions == enemies + 5
    assert spec.has_action_mask and spec.reward_mode == "team" and spec.return_bounds == (0.0, 2.0)
    assert spec.obs_dim == env.jax_env.obs_size and spec.state_dim == env.jax_env.state_size
    assert "not StarCraft II" in spec.description


def test_2s_vs_1sc_adds_an_immobile_spine_crawler():
    env = smax_adapter._build_jax_env("2s_vs_1sc", smax_adapter.SmaxParams())
    assert env.unit_type_names[-1] == "spine_crawler"
    assert float(env.unit_type_velocities[-1]) == 0.0 and float(env.unit_type_health[-1]) == 300.0
    assert env.scenario.tolist() == [2, 2, len(env.unit_type_names) - 1]


@pytest.mark.slow
def test_random_episodes_shapes_masks_rewards_and_statistics():
    env = Smax3m(n_envs=4, seed=3, max_steps=25)
    spec, g = env.spec, torch.Generator().manual_seed(0)
    ts = env.reset()
    assert ts.obs.shape == (4, 3, spec.obs_dim) and ts.state.shape == (4, spec.state_dim)
    assert ts.avail_actions.shape == (4, 3, spec.n_actions) and ts.avail_actions.dtype == torch.bool
    running = torch.zeros(4)
    lengths = torch.zeros(4)
    finished = []
    for _ in range(60):
        ts = env.step(random_actions(ts, g))
        assert ts.obs.shape == (4, 3, spec.obs_dim) and ts.final_obs.shape == ts.obs.shape
        assert ts.reward.shape == (4, 3) and torch.equal(ts.reward, ts.reward[:, :1].expand(-1, 3))  # team reward
        assert (ts.reward >= 0).all()
        assert ts.avail_actions[..., 4].all()  # "stop" is always available (dead units: only stop)
        dead = ~ts.avail_actions[..., :4].any(-1)
        assert not ts.avail_actions[..., 5:][dead].any()
        assert not (ts.terminated & ts.truncated).any()
        running += ts.reward[:, 0]
        lengths += 1
        done = ts.done
        assert torch.equal(done, ~ts.episode_return.isnan()) and torch.equal(done, ~ts.extras["won"].isnan())
        assert torch.equal(ts.final_obs[~done], ts.obs[~done])
        for i in done.nonzero().flatten().tolist():
            assert ts.episode_return[i].item() == pytest.approx(running[i].item(), abs=1e-4)
            # JaxMARL checks its time limit before counting the step: at most max_steps + 1 steps
            assert ts.episode_length[i].item() == lengths[i].item() <= 26 == spec.episode_limit
            assert ts.truncated[i] == (lengths[i].item() == 26 and not ts.terminated[i])
            won = ts.extras["won"][i].item()
            assert won in (0.0, 1.0) and (won == 0.0 or ts.terminated[i])
            assert 0.0 <= ts.episode_return[i].item() <= 2.0 + 1e-5
            finished.append(i)
            running[i], lengths[i] = 0.0, 0
    assert len(finished) >= 4  # every copy finished at least one 25-step episode
    env.close()


@pytest.mark.slow
def test_steps_like_jaxmarl_step_env_and_reset_with_the_same_keys():
    """The batched step (one jitted call: state carried as one packed array, only the finished copies reset,
    episode statistics inside) against a plain reference from JaxMARL's own functions with the adapter's key
    schedule: `step_env`, then `reset` where the copy finished; over steps where no copy, a few and many finished."""
    import functools

    import jax
    import numpy as np

    n, seed = 16, 3  # 16 copies: at most 2 are reset by gathering them, more take the every-copy path
    env = Smax3m(n_envs=n, seed=seed, max_steps=12)
    jenv, agents = env.jax_env, env.jax_env.agents
    step_env = jax.jit(jax.vmap(lambda k, s, a: jenv.step_env(k, s, {x: a[i] for i, x in enumerate(agents)})))
    reset = jax.jit(jax.vmap(jenv.reset))
    avail_of = jax.jit(jax.vmap(jenv.get_avail_actions))
    stack = lambda d: np.stack([np.asarray(d[a]) for a in agents], axis=1)  # noqa: E731 - {agent: [B, ...]} -> [B, N, ...]

    def split(keys, parts):  # every copy's key split as the adapter splits it
        return (np.asarray(k) for k in jax.vmap(lambda key: jax.random.split(key, parts), out_axes=1)(keys))

    def pick(done, new, old):  # the finished copies' value from `new`
        return np.where(done.reshape(-1, *[1] * (np.ndim(old) - 1)), new, old)

    keys, reset_keys = split(jax.random.split(jax.random.PRNGKey(seed), n), 2)
    obs, state = reset(reset_keys)
    returns, lengths = np.zeros(n, np.float32), np.zeros(n)
    ts, g = env.reset(), torch.Generator().manual_seed(0)
    finished_per_step = []
    for _ in range(45):
        np.testing.assert_array_equal(ts.obs.numpy(), stack(obs))
        np.testing.assert_array_equal(ts.state.numpy(), np.asarray(obs["world_state"]))
        np.testing.assert_array_equal(ts.avail_actions.numpy(), stack(avail_of(state)).astype(bool))
        actions = random_actions(ts, g)
        ts = env.step(actions)
        keys, step_keys, reset_keys = split(keys, 3)
        obs_st, state_st, rewards, dones, _ = step_env(step_keys, state, actions.numpy().astype(np.int32))
        done = np.asarray(dones["__all__"])
        alive = np.asarray(state_st.state.unit_alive)
        allies_dead, enemies_dead = ~alive[:, :3].any(1), ~alive[:, 3:].any(1)
        reward = np.asarray(rewards[agents[0]], np.float32)
        returns, lengths = returns + reward, lengths + 1
        np.testing.assert_array_equal(ts.reward.numpy(), np.repeat(reward[:, None], 3, 1))
        np.testing.assert_array_equal(ts.terminated.numpy(), done & (allies_dead | enemies_dead))
        np.testing.assert_array_equal(ts.truncated.numpy(), done & ~(allies_dead | enemies_dead))
        np.testing.assert_array_equal(ts.final_obs.numpy(), stack(obs_st))
        np.testing.assert_array_equal(ts.final_state.numpy(), np.asarray(obs_st["world_state"]))
        np.testing.assert_array_equal(ts.episode_return.numpy(), np.where(done, returns, np.nan))
        np.testing.assert_array_equal(ts.episode_length.numpy(), np.where(done, lengths, np.nan))
        np.testing.assert_array_equal(ts.extras["won"].numpy(), np.where(done, enemies_dead & ~allies_dead, np.nan))
        returns, lengths = np.where(done, 0, returns), np.where(done, 0, lengths)
        obs_re, state_re = reset(reset_keys)  # JaxMARL's auto-reset: the finished copies start a new episode
        finished = functools.partial(pick, done)
        obs, state = jax.tree.map(finished, obs_re, obs_st), jax.tree.map(finished, state_re, state_st)
        finished_per_step.append(int(done.sum()))
    assert 0 in finished_per_step and {1, 2} & set(finished_per_step) and max(finished_per_step) > 2


@pytest.mark.slow
def test_seeding_and_resume_are_exact():
    actions = [torch.tensor([[1, 2, 4]] * 2)] * 30
    a, b, c = (Smax3m(n_envs=2, seed=s, max_steps=20) for s in (7, 7, 8))
    ta, tb, tc = a.reset(), b.reset(), c.reset()
    assert torch.equal(ta.obs, tb.obs) and not torch.equal(ta.obs, tc.obs)
    saved = None
    for t, act in enumerate(actions):
        if t == 10:
            saved = a.state_dict()
        ta, tb = a.step(act), b.step(act)
        assert torch.equal(ta.obs, tb.obs) and torch.equal(ta.reward, tb.reward)
    after = [a.step(act).obs for act in actions[:5]]
    a.load_state_dict(saved)
    replay = [a.step(act) for act in actions[10:]]
    assert torch.equal(replay[-1].obs, ta.obs)
    assert all(torch.equal(x, a.step(act).obs) for x, act in zip(after, actions[:5], strict=True))
    # checkpoints hold tensors only: they load with weights_only=True
    import io
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)


@pytest.mark.slow
def test_pettingzoo_parallel_api(monkeypatch):
    from pettingzoo.test import parallel_api_test

    from tests.pettingzoo_view import ParallelEnvView

    if "smax/3m" not in ENVIRONMENTS.names():  # until the registry carries the adapter
        monkeypatch.setattr(ENVIRONMENTS, "_entries", dict(ENVIRONMENTS._entries))
        ENVIRONMENTS.register("smax/3m", "smax", "environments.adapters.smax_adapter:Smax3m", "SMAX 3m (test)")
    view = ParallelEnvView("smax/3m", seed=0, max_steps=15)
    parallel_api_test(view, num_cycles=40)
    assert not math.isnan(float(view.state().sum()))
