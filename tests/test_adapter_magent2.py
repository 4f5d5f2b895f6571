"""MAgent2 battle 40 v 40 adapter: shapes, masks, rewards, episode statistics, the fixed opponent,
seeding, worker processes, and PettingZoo's API test. Skipped with the reason without magent2."""

import pytest
import torch

pytest.importorskip("magent2", reason="magent2 is not installed (make venv)")

from environments.adapters.magent2_adapter import N_ACTIONS, STAY, Battle40v40, BattleCopy  # noqa: E402
from environments.registry import ENVIRONMENTS  # noqa: E402


def random_actions(timestep, generator):
    avail = timestep.avail_actions
    return torch.multinomial(avail.float().flatten(0, 1), 1, generator=generator).view(avail.shape[:2])


def test_random_red_team_episodes_shapes_masks_rewards_and_statistics():
    env = Battle40v40(n_envs=2, seed=0, n_workers=0, max_cycles=30)
    spec, g = env.spec, torch.Generator().manual_seed(0)
    assert spec.family == "magent2" and spec.n_agents == 40 and spec.n_actions == N_ACTIONS == 21
    assert spec.obs_dim == 13 * 13 * 5 and spec.state_dim == 32 * 32 * 5 + 2 * 40 and spec.has_action_mask
    ts = env.reset()
    assert ts.obs.shape == (2, 40, 845) and ts.state.shape == (2, 5200) and ts.avail_actions.all()
    assert ts.state[:, :5120].view(2, 32, 32, 5)[..., 1].sum(dim=(1, 2)).tolist() == [40.0, 40.0]  # red presence
    # the state ends with every red agent's cell / 32, each on the red presence map (BN 6.2.2's positions)
    cells = (Battle40v40.positions_from_views(ts.obs, ts.state) * 32).round().long()  # [2, 40, 2]
    assert len({tuple(c) for c in cells[0].tolist()}) == 40
    grid = ts.state[:, :5120].view(2, 32, 32, 5)[..., 1]
    assert bool((grid[torch.arange(2).unsqueeze(1), cells[..., 0], cells[..., 1]] == 1).all())
    running, ends = torch.zeros(2), 0
    for _ in range(1, 61):
        ts = env.step(random_actions(ts, g))
        assert ts.reward.shape == (2, 40) and torch.equal(ts.reward, ts.reward[:, :1].expand(-1, 40))
        assert ts.avail_actions[..., STAY].all()
        dead = ~ts.avail_actions.all(-1)  # dead agents: only the stay action, zero observation
        assert not ts.avail_actions[dead].sum(-1).ne(1).any() and not ts.obs[dead].any()
        running += ts.reward[:, 0]
        for i in ts.done.nonzero().flatten().tolist():
            ends += 1
            assert ts.episode_return[i].item() == pytest.approx(running[i].item(), rel=1e-4, abs=1e-3)
            assert ts.episode_length[i].item() <= 30
            assert ts.extras["won"][i].item() in (0.0, 1.0) and -40 <= ts.extras["kill_diff"][i].item() <= 40
            assert ts.truncated[i].item() == (ts.episode_length[i].item() == 30 and not ts.terminated[i].item())
            running[i] = 0.0
        assert torch.equal(ts.done, ~ts.episode_return.isnan())
    assert ends >= 2
    env.close()


def test_scripted_blue_team_attacks_adjacent_and_chases_visible_red():
    copy = BattleCopy(Battle40v40.Params().model_dump())
    view = torch.zeros(3, 13, 13, 5).numpy()
    view[0, 6, 7, 3] = 1.0  # red agent right next to blue agent 0 (dx = +1): attack it
    view[1, 6, 10, 3] = 1.0  # red agent 4 cells east of blue agent 1: move 2 east (dx = +2, dy = 0)
    actions = copy.blue_actions(view)  # blue agent 2 sees nobody: move 2 west
    attack_base, view2attack = copy.world.get_view2attack(copy.blue)
    assert actions[0] == attack_base + view2attack[6, 7]
    assert tuple(copy._moves[actions[1]]) == (0, 2) and tuple(copy._moves[actions[2]]) == (0, -2)


def test_scripted_blue_team_beats_a_random_red_team():
    env = Battle40v40(n_envs=1, seed=1, n_workers=0)
    g, ts = torch.Generator().manual_seed(1), env.reset()
    for _ in range(100):
        ts = env.step(random_actions(ts, g))
        if ts.done[0]:
            break
    assert ts.terminated[0] and ts.extras["won"][0] == 0.0 and ts.extras["kill_diff"][0] < 0


def test_seeding_and_worker_processes_give_the_same_copies():
    actions = [torch.randint(21, (3, 40), generator=torch.Generator().manual_seed(k)) for k in range(25)]
    runs = []
    for seed, workers in ((5, 0), (5, 2), (6, 0)):
        env = Battle40v40(n_envs=3, seed=seed, n_workers=workers, opponent="random", max_cycles=10)
        first = env.reset().state
        runs.append([first] + [env.step(a).state for a in actions])
        env.close()
    assert all(torch.equal(x, y) for x, y in zip(runs[0], runs[1], strict=True))  # workers change nothing
    assert not all(torch.equal(x, y) for x, y in zip(runs[0], runs[2], strict=True))


def test_pettingzoo_parallel_api(monkeypatch):
    from pettingzoo.test import parallel_api_test

    from tests.pettingzoo_view import ParallelEnvView

    monkeypatch.setenv("COOPBENCH_ENV_WORKERS", "0")
    if "magent2/battle-40v40" not in ENVIRONMENTS.names():  # until the registry carries the adapter
        monkeypatch.setattr(ENVIRONMENTS, "_entries", dict(ENVIRONMENTS._entries))
        ENVIRONMENTS.register("magent2/battle-40v40", "magent2", "environments.adapters.magent2_adapter:Battle40v40",
                              "MAgent2 battle 40 v 40 (test)")
    parallel_api_test(ParallelEnvView("magent2/battle-40v40", seed=0, max_cycles=12), num_cycles=30)
