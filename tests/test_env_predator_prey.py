"""BN 6.2.1 Predator-Prey (PIC simple_tag_n15): MPE physics, reward and observation against loop references."""

import math

import numpy as np
import pytest
import torch
import yaml
from pettingzoo.test import parallel_api_test
from pydantic import ValidationError

from coopbench.config import config_dir
from environments import make
from environments.predator_prey import PredatorPrey
from tests.pettingzoo_view import ParallelEnvView

NAME = "particle/bn-predator-prey-15"


def yaml_params(**changes) -> dict:
    params = yaml.safe_load((config_dir() / "environments" / f"{NAME}.yaml").read_text())["params"]
    return {**params, **changes}


def build(n_envs=4, seed=0, **changes) -> PredatorPrey:
    return make(NAME, n_envs=n_envs, seed=seed, **yaml_params(**changes))


def mpe_world_step(pos, vel, landmarks, controls, p):
    """MPE's World.step for one copy, in float64 loops: apply_action_force, apply_environment_force
    (every colliding pair once, +force to a, -force to b), integrate_state (damping, speed clip)."""
    n_movers = len(pos)
    sizes = [p["predator_size"]] * p["n_predators"] + [p["prey_size"]] * p["n_prey"]
    sizes += [p["landmark_size"]] * p["n_landmarks"]
    accel = [p["predator_accel"]] * p["n_predators"] + [p["prey_accel"]] * p["n_prey"]
    max_speed = [p["predator_max_speed"]] * p["n_predators"] + [p["prey_max_speed"]] * p["n_prey"]
    entities = [np.array(e, dtype=np.float64) for e in list(pos) + list(landmarks)]
    force = [np.array(controls[i], dtype=np.float64) * accel[i] for i in range(n_movers)]
    for a in range(len(entities)):
        for b in range(a + 1, len(entities)):
            delta = entities[a] - entities[b]
            dist = np.sqrt(np.sum(np.square(delta)))
            k = 1e-3
            penetration = np.logaddexp(0, -(dist - (sizes[a] + sizes[b])) / k) * k
            f = 100.0 * delta / dist * penetration
            if a < n_movers:
                force[a] = force[a] + f
            if b < n_movers:
                force[b] = force[b] - f
    new_pos, new_vel = [], []
    for i in range(n_movers):
        v = np.array(vel[i], dtype=np.float64) * (1 - 0.25) + force[i] * 0.1
        speed = np.sqrt(np.square(v[0]) + np.square(v[1]))
        if speed > max_speed[i]:
            v = v / speed * max_speed[i]
        new_vel.append(v)
        new_pos.append(np.array(pos[i], dtype=np.float64) + v * 0.1)
    return np.array(new_pos), np.array(new_vel)


def reference_reward(pos, p):
    pred, prey = pos[: p["n_predators"]], pos[p["n_predators"]:]
    dist = np.sqrt(((pred[:, None] - prey[None]) ** 2).sum(-1))
    catches = (dist < p["predator_size"] + p["prey_size"]).sum()
    return -0.1 * dist.min(0).sum() + 10.0 * catches


def reference_observation(i, pos, vel, landmarks, p):
    n = p["n_predators"]
    me = pos[i]

    def nearest(points, k, skip=None):
        rel = [(q - me) for j, q in enumerate(points) if j != skip]
        order = sorted(range(len(rel)), key=lambda j: float(np.sum(rel[j] ** 2)))[:k]
        return [rel[j] for j in order], order

    lm, _ = nearest(landmarks, p["visible_landmarks"])
    others, _ = nearest(pos[:n], p["visible_predators"], skip=i)
    prey_rel, order = nearest(pos[n:], p["visible_prey"])
    prey_vel = [vel[n + j] for j in order]

    def block(vectors):  # PIC's features, each group as its x components then its y components
        return [np.array([v[0] for v in vectors]), np.array([v[1] for v in vectors])]

    return np.concatenate([vel[i], me] + block(lm) + block(others) + block(prey_rel) + block(prey_vel))


def test_spec_matches_the_pic_scenario():
    env = build()
    spec = env.spec
    assert spec.n_agents == 15 and not spec.discrete and spec.action_dim == 2
    assert (spec.action_low, spec.action_high) == (-1.0, 1.0)
    assert spec.obs_dim == 4 + 2 * (3 + 6 + 3) + 2 * 3 == 34
    assert spec.state_dim == 4 * 20 + 2 * 5
    assert spec.episode_limit == 25 and spec.reward_mode == "team"


def test_physics_matches_mpe_world_step():
    p = yaml_params()
    env = build(n_envs=3, seed=4)
    env.reset()
    for _ in range(3):  # move away from the all-zero velocities of the start
        env.step(torch.rand(3, 15, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    # crowd some entities so that contacts (including landmark ones) actually push
    env.x[0, 1], env.y[0, 1] = env.x[0, 0] + 0.015, env.y[0, 0]
    env.x[1, 16], env.y[1, 16] = env.lx[1, 0] + 0.05, env.ly[1, 0]
    env.x[2, 5], env.y[2, 5] = env.x[2, 4], env.y[2, 4] + 0.048  # just apart: z = -8, the exp regime
    controls = torch.rand(3, 20, 2, generator=torch.Generator().manual_seed(2)) * 2 - 1
    x, y, vx, vy = env._move(env.x, env.y, env.vx, env.vy, env.lx, env.ly, controls[..., 0], controls[..., 1])
    for b in range(3):
        pos, vel = env.pos[b].double().numpy(), env.vel[b].double().numpy()
        ref_pos, ref_vel = mpe_world_step(pos, vel, env.landmarks[b].double().numpy(), controls[b].numpy(), p)
        assert np.allclose(torch.stack([x[b], y[b]], -1).numpy(), ref_pos, atol=1e-5)
        assert np.allclose(torch.stack([vx[b], vy[b]], -1).numpy(), ref_vel, atol=1e-5)


def test_step_reward_and_observation_match_the_references():
    p = yaml_params(prey_noise=0.0)
    env = build(n_envs=2, seed=5, prey_noise=0.0)
    env.reset()
    env.step(torch.zeros(2, 15, 2))
    # put predator 3 on prey 1 of copy 0: their contact force is part of the step
    env.x[0, 3], env.y[0, 3] = env.x[0, 16] - 0.005, env.y[0, 16]
    before = (env.pos.double().numpy(), env.vel.double().numpy(), env.landmarks.double().numpy())
    prey_u = torch.stack(env._prey_actions(env.x, env.y), dim=-1)
    actions = torch.rand(2, 15, 2, generator=torch.Generator().manual_seed(3)) * 2 - 1
    ts = env.step(actions)
    for b in range(2):
        controls = torch.cat([actions[b], prey_u[b]]).numpy()
        pos, vel = mpe_world_step(before[0][b], before[1][b], before[2][b], controls, p)
        assert ts.reward[b, 0].item() == pytest.approx(reference_reward(pos, p), abs=1e-4)
        assert torch.equal(ts.reward[b], ts.reward[b, :1].expand(15))  # the team reward to every predator
        for i in range(15):
            ref = reference_observation(i, pos, vel, before[2][b], p)
            assert np.allclose(ts.obs[b, i].numpy(), ref, atol=1e-5)
        state = np.concatenate([pos.ravel(), vel.ravel(), before[2][b].ravel()])
        assert np.allclose(ts.state[b].numpy(), state, atol=1e-5)


def test_both_ways_of_summing_contact_forces_agree():
    cpu_way, other_way = build(n_envs=8, seed=7), build(n_envs=8, seed=7)
    other_way._index_add = False  # the deterministic scatter-and-sum used off the CPU
    cpu_way.reset(), other_way.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        actions = torch.rand(8, 15, 2, generator=gen) * 2 - 1
        a, b = cpu_way.step(actions), other_way.step(actions)
        assert torch.allclose(a.obs, b.obs, atol=1e-5)
    crowd = cpu_way.state_dict()  # everyone in a small disc: many contacts at once
    crowd["x"], crowd["y"] = crowd["x"] * 0.05, crowd["y"] * 0.05
    cpu_way.load_state_dict(crowd), other_way.load_state_dict(crowd)
    assert torch.allclose(cpu_way.step(actions).obs, other_way.step(actions).obs, atol=1e-5)


def test_reward_counts_catches_and_distance():
    env = build(n_envs=1)
    env.reset()
    x, y = torch.zeros(1, 20), torch.zeros(1, 20)
    x[0, :15] = torch.linspace(-0.9, 0.9, 15)
    y[0, :15] = 0.5
    x[0, 15:], y[0, 15:] = x[0, [0, 0, 7, 7, 14]], 0.5 + torch.tensor([0.02, -0.029, 0.031, 0.3, 0.0])
    _, _, (reward, catches) = env._views(x, y, torch.zeros(1, 20), torch.zeros(1, 20), env.lx, env.ly)
    distances = [0.02, 0.029, 0.031, 0.3, 0.0]
    assert catches.item() == 3  # 0.02, 0.029 and 0.0 are closer than 0.03; 0.031 is not
    assert reward.item() == pytest.approx(-0.1 * sum(distances) + 30.0, abs=1e-5)


def test_prey_flee_and_everyone_respects_top_speed():
    env = build(n_envs=1, prey_noise=0.0, episode_length=100)
    env.reset()
    x, y = torch.full((1, 20), -0.5), torch.full((1, 20), -0.5)
    x[0, 15], y[0, 15] = -0.2, -0.5  # prey 0 to the right of the predators
    ux, uy = env._prey_actions(x, y)
    assert ux[0, 0] > 0.99 and abs(uy[0, 0]) < 1e-3  # flees straight away, at full control
    env.x, env.y = x, y
    for _ in range(40):
        ts = env.step(torch.ones(1, 15, 2))
    speed = env.vel.norm(dim=-1)[0]
    assert (speed[:15] <= 1.0 + 1e-5).all() and (speed[15:] <= 1.3 + 1e-5).all()
    assert speed[:15].max() > 0.99  # full throttle reaches the predators' top speed
    assert not ts.done.any()


def test_actions_are_clipped_to_the_box():
    env = build(n_envs=2, seed=1)
    env.reset()
    saved = env.state_dict()
    big = env.step(torch.full((2, 15, 2), 5.0))
    env.load_state_dict(saved)
    unit = env.step(torch.full((2, 15, 2), 1.0))
    assert torch.equal(big.obs, unit.obs) and torch.equal(big.reward, unit.reward)


def test_episodes_truncate_after_25_steps_and_respawn():
    env = build(n_envs=8, seed=2)
    ts = env.reset()
    assert ((ts.state[:, :40].abs()) <= 1).all() and (ts.state[:, 40:80] == 0).all()
    total = torch.zeros(8)
    for t in range(25):
        ts = env.step(torch.rand(8, 15, 2) * 2 - 1)
        total += ts.reward[:, 0]
        assert ts.truncated.all() == (t == 24) and not ts.terminated.any()
    assert torch.allclose(ts.episode_return, total) and torch.equal(ts.episode_length, torch.full((8,), 25.0))
    assert (env.vel == 0).all() and (env.pos.abs() <= 1).all() and (env.landmarks.abs() <= 0.9).all()
    assert not torch.equal(ts.obs, ts.final_obs)
    assert torch.equal(ts.state[:, 40:80], torch.zeros(8, 40))


def test_same_seed_same_trajectory_and_different_seeds_differ():
    def rollout(seed, policy="flee"):
        env = build(n_envs=3, seed=seed, prey_policy=policy)
        gen = torch.Generator().manual_seed(0)
        out = [env.reset().obs]
        for _ in range(30):
            out.append(env.step(torch.rand(3, 15, 2, generator=gen) * 2 - 1).obs)
        return torch.stack(out)

    assert torch.equal(rollout(3), rollout(3))
    assert not torch.equal(rollout(3), rollout(4))
    assert torch.equal(rollout(3, "random"), rollout(3, "random"))


def test_state_dict_round_trip_continues_identically():
    env = build(n_envs=4, seed=6)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        env.step(torch.rand(4, 15, 2, generator=gen) * 2 - 1)
    saved = env.state_dict()
    actions = torch.rand(12, 4, 15, 2, generator=gen) * 2 - 1  # crosses the episode end at step 25
    first = [env.step(a) for a in actions]
    other = build(n_envs=4, seed=123)
    other.reset()
    other.load_state_dict(saved)
    second = [other.step(a) for a in actions]
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward) and torch.equal(x.done, y.done)
        assert torch.equal(x.final_state, y.final_state)


def test_params_are_validated():
    with pytest.raises(ValidationError):
        PredatorPrey.Params(visible_predators=15)
    with pytest.raises(ValidationError):
        PredatorPrey.Params(prey_policy="trained")
    with pytest.raises(ValidationError):
        PredatorPrey.Params(preys=5)
    assert math.isclose(PredatorPrey.Params().prey_max_speed, 1.3)


def test_parallel_env_view_passes_pettingzoo_api_test():
    parallel_api_test(ParallelEnvView(NAME, seed=0, **yaml_params()), num_cycles=30)
