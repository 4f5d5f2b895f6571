"""AS 5.1 Cleanup and Harvest: pollution stops apple growth, regrowth depends on neighbouring
apples, +1 per apple to its eater only, and the batched-environment contract."""

import pytest
import torch

from environments import gridworld as gw
from environments import make
from environments.social_dilemmas import CLEANUP_MAP, HARVEST_MAP, Cleanup
from tests.test_gridworld import (
    assert_pettingzoo_api,
    assert_reproducible,
    assert_state_dict_round_trip,
    assert_time_limit,
)

CLEANUP, HARVEST = "social_dilemma/as-cleanup", "social_dilemma/as-harvest"


def edit(env, **tensors):
    state = env.state_dict()
    for key, value in tensors.items():
        state[key] = value.expand_as(state[key]).clone() if value.dim() < state[key].dim() else value
    env.load_state_dict(state)


def stay(env):
    return torch.zeros(env.n_envs, env.n_agents, dtype=torch.long)


@pytest.mark.parametrize("name, shape, n_actions", [(CLEANUP, (11, 18), 8), (HARVEST, (7, 38), 5)])
def test_spec_follows_the_paper(name, shape, n_actions):
    env = make(name, n_envs=2, seed=0)
    assert (env.height, env.width) == shape  # "environment size as 11x18" / "7x38"
    assert (env.spec.episode_limit, env.spec.reward_mode, env.spec.n_actions) == (100, "private", n_actions)
    ts = env.reset()
    assert int(gw.shared_cell_counts(env.pos).max()) == 0 and env.spawn_cells[env.pos[..., 0], env.pos[..., 1]].all()
    assert ts.extras["neighbours"].shape == (2, env.n_agents, env.n_agents)


# --- Cleanup ---------------------------------------------------------------------------------------

def test_cleanup_pollution_stops_apple_growth():
    """AS: "Apples spawn only if the waste density of the river is below a threshold". The map starts
    above it (22 of 48 river cells polluted), so without cleaning no apple ever grows."""
    env = make(CLEANUP, n_envs=64, seed=0, view_radius=1)
    env.reset()
    assert env.waste_density()[0] == pytest.approx(22 / 48)
    assert [p[0].item() for p in env.spawn_probabilities()] == [0.0, 0.0]
    g = torch.Generator().manual_seed(0)
    for _ in range(99):
        moves = torch.randint(5, (64, env.n_agents), generator=g)  # wander, never clean
        ts = env.step(moves)
        assert ts.reward.sum() == 0 and not env.apples.any()
        assert torch.allclose(env.waste_density(), torch.full((64,), 22 / 48))


def test_cleanup_apple_rate_falls_linearly_with_waste_density():
    env = make(CLEANUP, n_envs=4, seed=0, view_radius=1)
    env.reset()
    river = env.river_cells.nonzero()
    for n_waste, apple_prob in [(0, 0.05), (10, 0.05 * (1 - (10 / 48) / 0.4)), (19, 0.05 * (1 - (19 / 48) / 0.4)),
                                (20, 0.0)]:
        waste = torch.zeros(11, 18, dtype=torch.bool)
        waste[river[:n_waste, 0], river[:n_waste, 1]] = True
        edit(env, waste=waste)
        apple, waste_prob = env.spawn_probabilities()
        assert apple[0].item() == pytest.approx(apple_prob, abs=1e-6)
        assert waste_prob[0].item() == (0.5 if n_waste < 20 else 0.0)


def test_cleanup_clean_river_grows_apples_at_five_percent_and_one_waste_cell_per_step():
    env = make(CLEANUP, n_envs=2000, seed=1, view_radius=1)
    env.reset()
    edit(env, waste=torch.zeros(11, 18, dtype=torch.bool))
    env.step(stay(env))
    grown = env.apples[:, env.apple_cells].float().mean()
    assert abs(grown.item() - 0.05) < 0.006  # 39 orchard cells x 2000 copies
    # below the threshold exactly one clean river cell turns to waste (probability 1 - 0.5^48)
    assert torch.equal(env.waste.flatten(1).sum(-1), torch.ones(2000, dtype=torch.long))


def test_cleanup_beam_cleans_three_lines_of_six_cells():
    env = make(CLEANUP, n_envs=1, seed=0, waste_spawn_prob=0.0)
    env.reset()
    before = env.waste.clone()
    edit(env, pos=torch.tensor([[[3, 7], [7, 9], [8, 9], [9, 11]]]),
         orientation=torch.tensor([[gw.NORTH, 0, 0, 0]]))
    env.step(torch.tensor([[Cleanup.TURN_CCW, 0, 0, 0]]))  # north -> west
    assert env.orientation[0, 0] == gw.WEST
    ts = env.step(torch.tensor([[Cleanup.CLEAN, 0, 0, 0]]))
    expected = before[0].clone()
    expected[2:5, 2:8] = False  # rows 2-4 (own line and both sides), start column 7 and 5 ahead
    assert torch.equal(env.waste[0], expected)
    assert env.waste[0, 3, 1] and not env.waste[0, 3, 2:6].any()
    assert ts.reward.sum() == 0  # cleaning is neither rewarded nor costly


def test_cleanup_eating_rewards_only_the_eater():
    env = make(CLEANUP, n_envs=1, seed=0)
    env.reset()
    apples = torch.zeros(11, 18, dtype=torch.bool)
    apples[1, 13] = apples[2, 16] = True
    edit(env, pos=torch.tensor([[[1, 12], [2, 15], [7, 9], [8, 9]]]), apples=apples.unsqueeze(0))
    ts = env.step(torch.tensor([[gw.RIGHT, gw.STAY, gw.STAY, gw.STAY]]))
    assert ts.reward[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert not env.apples[0, 1, 13] and env.apples[0, 2, 16]


def test_cleanup_observation_window_shows_the_map_around_the_agent():
    env = make(CLEANUP, n_envs=1, seed=0)
    env.reset()
    edit(env, pos=torch.tensor([[[3, 7], [3, 9], [8, 9], [9, 11]]]), orientation=torch.tensor([[gw.WEST, 0, 0, 2]]))
    ts = env.step(torch.tensor([[Cleanup.CLEAN, 0, 0, 0]]))
    window = ts.obs[0, 0, :15 * 15 * 8].view(15, 15, 8)  # [row, col, channel], agent 0 at the centre (7, 7)
    channel = {name: i for i, name in enumerate(Cleanup.CHANNELS)}
    assert window[7, 9, channel["agent"]] == 1 and window[7, 7, channel["agent"]] == 0  # others, not itself
    assert window[7 - 3 - 1, 7, channel["wall"]] == 1 and window[0, 0, channel["wall"]] == 1  # map edge, outside
    assert window[7, 7 - 6, channel["river"]] == 1 and window[7, 7 - 6, channel["waste"]] == 1  # (3, 1) polluted
    assert window[7, 7 - 5, channel["waste"]] == 0 and window[7, 7 - 5, channel["beam"]] == 1  # (3, 2) just cleaned
    assert window[7 + 2, 7, channel["stream"]] == 1 and window[7, 7 + 6, channel["orchard"]] == 1
    assert ts.obs[0, 0, -4:].tolist() == [0, 0, 0, 1]  # facing west
    assert ts.obs.shape[-1] == env.spec.obs_dim == 15 * 15 * 8 + 4


# --- Harvest ---------------------------------------------------------------------------------------

def test_harvest_regrowth_depends_on_neighbouring_apples():
    """AS: "Apples spawn at a rate proportional to the number of apples around the spawn positions"
    (SSD law: 0 / 0.005 / 0.02 / 0.05 for 0 / 1 / 2 / >=3 apples among the 8 neighbours), measured over
    one step of 4000 copies."""
    env = make(HARVEST, n_envs=4000, seed=0)
    env.reset()
    apples = torch.zeros(7, 38, dtype=torch.bool)
    apples[2, 3] = True  # keep only the centre of the first patch
    apples[4, 7] = apples[3, 7] = True  # and two cells of the second
    edit(env, apples=apples)  # in every copy
    env.step(stay(env))
    grown = (env.apples & ~apples).float().mean(0)  # per cell: the fraction of copies where an apple appeared
    assert 0.001 < grown[1, 3] < 0.012  # top arm of patch 1: one neighbour (the centre), p = 0.005
    assert 0.01 < grown[4, 6] < 0.035  # left arm of patch 2: two neighbours, p = 0.02
    counts = gw.neighbour_counts(apples.unsqueeze(0))[0]
    assert grown[(counts == 0) | ~env.apple_cells].sum() == 0  # no neighbour or no apple cell: never


def test_harvest_stripped_map_never_regrows_and_a_dense_patch_does():
    env = make(HARVEST, n_envs=4000, seed=2, view_radius=1)
    env.reset()
    edit(env, apples=torch.zeros(7, 38, dtype=torch.bool))
    for _ in range(20):
        env.step(stay(env))
        assert not env.apples.any()
    full = env.apple_cells.clone()
    full[1, 3] = False  # one eaten apple with 3 neighbours
    edit(env, apples=full)
    env.step(stay(env))
    assert abs(env.apples[:, 1, 3].float().mean().item() - 0.05) < 0.015


def test_harvest_observation_window_shows_the_map_around_the_agent():
    env = make(HARVEST, n_envs=1, seed=0)
    ts = env.reset()
    edit(env, pos=torch.tensor([[[1, 1], [1, 4], [5, 1], [3, 36]]]))
    ts = env.step(torch.zeros(1, 4, dtype=torch.long))
    window = ts.obs[0, 0].view(15, 15, 4)  # wall, orchard, apple, agent; agent 0 at (1, 1) is the centre
    assert window[6, 7, 0] == 1 and window[7, 6, 0] == 1 and window[0, 7, 0] == 1  # walls above, left, outside
    assert window[7, 9, 1] == 1 and window[7, 9, 2] == 1  # (1, 3): an apple cell holding an apple
    assert window[7, 10, 3] == 1 and window[7, 7, 3] == 0  # agent 1 at (1, 4); itself not shown
    assert ts.obs.shape[-1] == env.spec.obs_dim == 15 * 15 * 4


def test_harvest_eating_rewards_only_the_eater():
    env = make(HARVEST, n_envs=1, seed=0)
    env.reset()
    edit(env, pos=torch.tensor([[[1, 1], [1, 4], [5, 1], [3, 36]]]))
    ts = env.step(torch.tensor([[gw.RIGHT, gw.STAY, gw.STAY, gw.STAY]]))  # agent 1 already stands on an apple cell
    assert ts.reward[0].tolist() == [0.0, 0.0, 0.0, 0.0]  # (1, 2) holds no apple
    ts = env.step(torch.tensor([[gw.RIGHT, gw.LEFT, gw.STAY, gw.STAY]]))  # both want (1, 3): one wins
    assert sorted(ts.reward[0].tolist()) == [0.0, 0.0, 0.0, 1.0]
    assert not env.apples[0, 1, 3]


def test_maps():
    assert [len(r) for r in CLEANUP_MAP] == [18] * 11 and [len(r) for r in HARVEST_MAP] == [38] * 7
    cleanup = gw.parse_ascii_map(CLEANUP_MAP)
    assert (cleanup["H"].sum() + cleanup["R"].sum(), cleanup["H"].sum(), cleanup["P"].sum()) == (48, 22, 6)
    harvest = gw.parse_ascii_map(HARVEST_MAP)
    assert (harvest["A"].sum(), harvest["P"].sum()) == (45, 12)


@pytest.mark.parametrize("name", [CLEANUP, HARVEST])
def test_contract(name):
    assert_time_limit(name)
    assert_reproducible(name)
    assert_state_dict_round_trip(name, warmup=95, steps=10)
    assert_pettingzoo_api(name, cycles=105)
