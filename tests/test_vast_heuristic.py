"""VAST with BN's heuristic subgroups (BN 6.2.2, Fig. 3; algorithms/vast.py `subgroups: heuristic`)."""

from __future__ import annotations

import math

import pytest
import torch

import algorithms.vast as vast_module
from algorithms.blocks.subteams import dependency_scores, heuristic_subteams, subteam_lists
from algorithms.capabilities import incompatibility
from algorithms.vast import VAST, VASTConfig, heuristic_subteam_ids
from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_json
from coopbench.config import parse_set, resolve
from coopbench.run import execute
from environments import make
from environments.base import EnvSpec

CPU = torch.device("cpu")


def test_heuristic_ids_are_algorithm1s_k_subteams():
    torch.manual_seed(0)
    positions = torch.rand(6, 20, 16, 2) * 10  # [S, T, N, 2]: 16 robots, K = ceil(16 / 4) = 4
    ids = heuristic_subteam_ids(positions, "neg_euclidean", 4)
    assert ids.shape == (6, 20, 16) and ids.min() == 0 and ids.max() == 3
    _, slots = heuristic_subteams(dependency_scores(positions, "neg_euclidean"), n_subteams=4)
    for s in range(6):
        for t in range(20):
            groups = subteam_lists(ids[s, t])
            assert len(groups) == 4 and groups == subteam_lists(slots[s, t])


def test_update_takes_its_subteams_from_the_stored_positions(monkeypatch):
    env = make("coordination/bn-cg-5", n_envs=1, seed=0)
    config = VASTConfig(subgroups="heuristic", dependency_score="neg_state_distance", mixer="mlp", batch_episodes=4,
                        buffer_episodes=8)
    agent = VAST(env.spec, config, CPU)
    assert agent.assignment is None and "assignment" not in agent.learner.online  # no meta-learned assignment
    seen = []

    def spy(positions, score, k):
        ids = heuristic_subteam_ids(positions, score, k)
        seen.append((positions, score, k, ids))
        return ids

    monkeypatch.setattr(vast_module, "heuristic_subteam_ids", spy)
    timestep = env.reset()
    stats = {}
    for _ in range(6):  # > batch_episodes episodes of 20 steps, then updates
        result = agent.train_iteration(env, timestep)
        timestep, stats = result.timestep, result.losses or stats
    assert seen and "assignment_loss" not in stats and math.isfinite(stats["value_loss"])
    positions, score, k, ids = seen[-1]
    assert score == "neg_state_distance" and k == math.ceil(5 / 4) == 2
    assert positions.shape[-2:] == (5, 1)  # the stored states' binary local states, one 1D position per agent
    # two subteams per step; where both local states occur, they are exactly the two groups of equal states
    assert bool((ids.amax(-1) <= 1).all())
    state = positions.squeeze(-1)
    both = (state.amax(-1) != state.amin(-1))
    same = lambda x: x.unsqueeze(-1) == x.unsqueeze(-2)  # noqa: E731
    assert bool(both.any()) and torch.equal(same(ids)[both], same(state)[both])


def test_a_task_without_positions_is_refused_before_anything_runs():
    assert incompatibility("vast", "mpe/simple-spread-3") is None
    reason = incompatibility("vast_heuristic", "mpe/simple-spread-3", {"subgroups": "heuristic"})
    assert reason and "positions" in reason
    # Aloha's positions are per step only (extras), not in its stored views: BN-MAPPO can, VAST's replay cannot
    assert incompatibility("bn_mappo_heuristic", "aloha/bn-aloha-10", {"topology": "heuristic"}) is None
    assert "stored steps" in incompatibility("vast_heuristic", "aloha/bn-aloha-10", {"subgroups": "heuristic"})
    for task in ("rware/warehouse-16ag", "magent2/battle-40v40"):  # BN Fig. 3's tasks
        assert incompatibility("vast_heuristic", task, {"subgroups": "heuristic"}) is None
    spec = EnvSpec(name="test/none", family="test", n_agents=4, obs_dim=2, state_dim=8, n_actions=3, episode_limit=5)
    with pytest.raises(CoopbenchError, match="positions"):
        VAST(spec, VASTConfig(subgroups="heuristic"), CPU)


def test_runs_through_the_driver_on_the_warehouse(tmp_path):
    config = resolve("vast_heuristic", "rware/warehouse-16ag", parse_set(
        ["run.total_env_steps=300", "run.eval_interval=150", "run.eval_episodes=1", "algo.batch_episodes=2",
         "algo.buffer_episodes=8"]))
    run_dir = execute(config, seed=0, results_dir=tmp_path)
    assert read_json(run_dir / "manifest.json")["status"] == "completed"
    assert config.algo_hparams["subgroups"] == "heuristic"
