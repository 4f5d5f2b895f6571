"""environments/gridworld.py: the shared grid building blocks, and contract checks the grid tasks'
test files import (`assert_*` helpers below)."""

from __future__ import annotations

import pytest
import torch
from pettingzoo.test import parallel_api_test

from environments import gridworld as gw
from environments import make
from environments.base import CopyRandom
from tests.pettingzoo_view import ParallelEnvView

CPU = torch.device("cpu")

# --- contract checks shared by tests/test_env_*.py --------------------------------------------------

def random_actions(env, timestep, generator):
    if timestep.avail_actions is None:
        return torch.randint(env.spec.n_actions, (env.n_envs, env.spec.n_agents), generator=generator)
    weights = timestep.avail_actions.float().reshape(-1, env.spec.n_actions)
    return torch.multinomial(weights, 1, generator=generator).view(env.n_envs, env.spec.n_agents)


def assert_reproducible(name, steps=30, n_envs=3, **params):
    """Same seed and actions: identical trajectories; another seed: a different one."""
    def run(seed):
        env, g = make(name, n_envs=n_envs, seed=seed, **params), torch.Generator().manual_seed(7)
        ts, out = env.reset(), []
        for _ in range(steps):
            ts = env.step(random_actions(env, ts, g))
            out.append((ts.obs, ts.state, ts.reward))
        return out

    first, again, other = run(11), run(11), run(12)
    assert all(torch.equal(a, b) for x, y in zip(first, again, strict=True) for a, b in zip(x, y, strict=True))
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(first, other, strict=True))


def assert_state_dict_round_trip(name, warmup, steps, n_envs=3, **params):
    """Save mid-episode, run on (through an auto-reset), reload: the continuation is identical."""
    env, g = make(name, n_envs=n_envs, seed=3, **params), torch.Generator().manual_seed(5)
    ts = env.reset()
    for _ in range(warmup):
        ts = env.step(random_actions(env, ts, g))
    saved, first_ts = env.state_dict(), ts
    actions, first = [], []
    for _ in range(steps):
        actions.append(random_actions(env, ts, g))
        ts = env.step(actions[-1])
        first.append(ts)
    assert bool(torch.cat([t.done for t in first]).any()), "the round trip should cross an episode end"
    fresh = make(name, n_envs=n_envs, seed=999, **params)  # a different seed: everything must come from the state
    fresh.load_state_dict(saved)
    for a, ts1 in zip(actions, first, strict=True):
        ts2 = fresh.step(a)
        for field in ("obs", "state", "reward", "terminated", "truncated", "final_obs", "final_state"):
            assert torch.equal(getattr(ts1, field), getattr(ts2, field)), field
        assert torch.equal(ts1.episode_return.nan_to_num(-1e9), ts2.episode_return.nan_to_num(-1e9))
    assert first_ts is not None


def assert_time_limit(name, n_envs=2, **params):
    """Episodes end by truncation at the limit, report team return = sum of private rewards, and
    the copies restart (final_obs is the last observation, obs the next episode's first)."""
    env, g = make(name, n_envs=n_envs, seed=0, **params), torch.Generator().manual_seed(0)
    ts = env.reset()
    assert ts.obs.shape == (n_envs, env.spec.n_agents, env.spec.obs_dim)
    assert ts.state.shape == (n_envs, env.spec.state_dim)
    assert ts.obs.dtype == torch.float32 and ts.reward.shape == (n_envs, env.spec.n_agents)
    assert env.spec.reward_mode == "private"
    neighbours = ts.extras["neighbours"]
    assert neighbours.shape == (n_envs, env.spec.n_agents, env.spec.n_agents) and neighbours.dtype == torch.bool
    assert not neighbours.diagonal(dim1=1, dim2=2).any() and torch.equal(neighbours, neighbours.transpose(1, 2))
    total = torch.zeros(n_envs)
    for t in range(env.spec.episode_limit):
        ts = env.step(random_actions(env, ts, g))
        total += ts.reward.sum(-1)
        assert bool(ts.done.all()) == (t == env.spec.episode_limit - 1)
    assert ts.truncated.all() and not ts.terminated.any()
    assert torch.allclose(ts.episode_return, total, atol=1e-4)
    assert torch.equal(ts.episode_length, torch.full((n_envs,), float(env.spec.episode_limit)))
    assert not torch.equal(ts.final_obs, ts.obs)
    assert int(env.t.max()) == 0


def assert_pettingzoo_api(name, cycles=40, **params):
    parallel_api_test(ParallelEnvView(name, seed=0, **params), num_cycles=cycles)


# --- the building blocks ----------------------------------------------------------------------------

def test_parse_ascii_map_and_cells():
    layers = gw.parse_ascii_map(["@@@@", "@PA@", "@@@@"])
    assert layers["@"].sum() == 10 and layers["P"].nonzero().tolist() == [[1, 1]]
    assert gw.flat_index(torch.tensor([1, 2]), 4) == 6
    assert gw.unflatten_index(torch.tensor(6), 4).tolist() == [1, 2]


def test_move_targets_bump_into_walls_and_borders():
    walls = gw.parse_ascii_map(["....", ".@..", "...."])["@"]
    pos = torch.tensor([[[0, 1], [0, 0], [2, 3]]])
    actions = torch.tensor([[gw.DOWN, gw.LEFT, gw.RIGHT]])
    assert gw.move_targets(pos, actions, walls=walls).tolist() == pos.tolist()  # wall, border, border
    actions = torch.tensor([[gw.RIGHT, gw.DOWN, gw.UP]])
    assert gw.move_targets(pos, actions, walls=walls).tolist() == [[[0, 2], [1, 0], [1, 3]]]


def test_resolve_moves_rules():
    pos = torch.tensor([[[0, 0], [0, 2], [2, 2], [3, 3]]])
    # 0 and 1 both enter (0, 1): without a generator nobody gets it; 2 enters 3's cell while 3 stays
    target = torch.tensor([[[0, 1], [0, 1], [3, 3], [3, 3]]])
    assert gw.resolve_moves(pos, target).tolist() == pos.tolist()
    # swaps fail unless allowed
    pos = torch.tensor([[[0, 0], [0, 1]]])
    swap = torch.tensor([[[0, 1], [0, 0]]])
    assert gw.resolve_moves(pos, swap).tolist() == pos.tolist()
    assert gw.resolve_moves(pos, swap, allow_swaps=True).tolist() == swap.tolist()
    # a train moves together; a blocked head stops the whole train
    pos = torch.tensor([[[0, 0], [0, 1], [0, 2]]])
    train = torch.tensor([[[0, 1], [0, 2], [0, 3]]])
    assert gw.resolve_moves(pos, train).tolist() == train.tolist()
    blocked = torch.tensor([[[0, 1], [0, 2], [0, 2]]])
    assert gw.resolve_moves(pos, blocked).tolist() == pos.tolist()
    # a 4-cycle around a 2x2 block rotates
    pos = torch.tensor([[[0, 0], [0, 1], [1, 1], [1, 0]]])
    cycle = torch.tensor([[[0, 1], [1, 1], [1, 0], [0, 0]]])
    assert gw.resolve_moves(pos, cycle).tolist() == cycle.tolist()


def test_resolve_moves_random_winner_is_fair_and_never_overlaps():
    g = torch.Generator().manual_seed(0)
    pos = torch.tensor([[0, 0], [0, 2]]).expand(4000, -1, -1)
    target = torch.tensor([[0, 1], [0, 1]]).expand(4000, -1, -1)
    new = gw.resolve_moves(pos, target, CopyRandom([g], 4000, CPU))
    winners = (new == torch.tensor([0, 1])).all(-1)
    assert torch.equal(winners.sum(-1), torch.ones(4000, dtype=torch.long))
    assert 0.45 < winners[:, 0].float().mean() < 0.55
    # random walks of 6 agents on a 4x4 grid never share a cell
    random = CopyRandom([g], 256, CPU)
    pos = gw.sample_cells(random, torch.ones(4, 4, dtype=torch.bool), 6)
    for _ in range(30):
        target = gw.move_targets(pos, torch.randint(5, (256, 6), generator=g), shape=(4, 4))
        pos = gw.resolve_moves(pos, target, random)
        assert int(gw.shared_cell_counts(pos).max()) == 0


def test_sample_cells_distinct_allowed_uniform():
    g = torch.Generator().manual_seed(0)
    allowed = torch.zeros(3, 4, dtype=torch.bool)
    allowed[0, :] = True
    allowed[2, 1] = True
    cells = gw.sample_cells(CopyRandom([g], 5000, CPU), allowed, 3)
    assert allowed[cells[..., 0], cells[..., 1]].all()
    assert int(gw.shared_cell_counts(cells).max()) == 0
    first = gw.flat_index(cells[:, 0], 4)
    freq = torch.bincount(first, minlength=12)[allowed.flatten()].float() / 5000
    assert torch.allclose(freq, torch.full((5,), 0.2), atol=0.03)


@pytest.mark.parametrize("n_channels", [3, 4, 8])  # 4 and 8: gathered as machine words
def test_egocentric_windows_match_a_slice_of_the_padded_map(n_channels):
    g = torch.Generator().manual_seed(0)
    layers = (torch.rand(2, n_channels, 5, 6, generator=g) < 0.5).to(torch.uint8)  # [B, C, H, W]
    radius = 2
    pad = [1] + [0] * (n_channels - 1)
    padded = gw.padded_grid(layers, radius, pad_values=pad)
    pos = torch.tensor([[[0, 0], [4, 5]], [[2, 3], [1, 4]]])
    windows = gw.egocentric_windows(padded, pos, radius)
    assert windows.shape == (2, 2, 5, 5, n_channels)
    for b in range(2):
        for n in range(2):
            r, c = pos[b, n].tolist()
            for i in range(5):
                for j in range(5):
                    rr, cc = r + i - radius, c + j - radius
                    inside = 0 <= rr < 5 and 0 <= cc < 6
                    expected = layers[b, :, rr, cc] if inside else torch.tensor(pad, dtype=torch.uint8)
                    assert torch.equal(windows[b, n, i, j], expected)
    gw.inner_view(padded, radius)[..., 1] = 0  # writing the inner view updates the grid
    assert gw.egocentric_windows(padded, pos, radius)[..., 1].sum() == 0


def test_neighbour_counts_match_a_convolution():
    mask = torch.rand(4, 6, 7, generator=torch.Generator().manual_seed(1)) < 0.4
    for radius in (1, 2):
        box = torch.ones(1, 1, 2 * radius + 1, 2 * radius + 1)
        ref = torch.nn.functional.conv2d(mask.unsqueeze(1).float(), box, padding=radius).squeeze(1).long()
        assert torch.equal(gw.neighbour_counts(mask, radius, include_centre=True), ref)
        assert torch.equal(gw.neighbour_counts(mask, radius), ref - mask.long())


def test_beam_is_three_wide_six_long_and_stops_at_walls():
    walls = gw.parse_ascii_map([
        "@@@@@@@@@@",
        "@........@",
        "@........@",
        "@.....@..@",
        "@........@",
        "@@@@@@@@@@",
    ])["@"]
    pos = torch.tensor([[[2, 1], [4, 8]]])
    orientation = torch.tensor([[gw.EAST, gw.NORTH]])
    hit = gw.beam_cells(pos, orientation, torch.tensor([[True, False]]), walls, length=5)[0]
    expected = torch.zeros_like(walls)
    expected[1, 1:7] = True  # left-hand line (north side)
    expected[2, 1:7] = True  # own line: start cell + 5 ahead
    expected[3, 1:6] = True  # right-hand line stopped by the wall at (3, 6)
    assert torch.equal(hit, expected)
    # the lookup table gives the same cells for random agents
    g = torch.Generator().manual_seed(0)
    pos = gw.sample_cells(CopyRandom([g], 64, CPU), ~walls, 3)
    orientation = torch.randint(4, (64, 3), generator=g)
    firing = torch.rand(64, 3, generator=g) < 0.5
    table = gw.beam_table(walls, 5)
    assert torch.equal(gw.beam_hits(table, pos, orientation, firing, walls.shape[1]).view(64, *walls.shape),
                       gw.beam_cells(pos, orientation, firing, walls, 5))


def test_adjacency_helpers():
    assert gw.chain_adjacency(3).int().tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    assert gw.full_adjacency(3).sum() == 6
