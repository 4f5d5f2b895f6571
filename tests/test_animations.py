"""The animations stage: one GIF per task that can draw itself, its run chosen at plan time; the task page shows it."""

import shutil

from PIL import Image

from coopbench.base.io import read_json
from coopbench.config import plan
from coopbench.run import execute
from leaderboard.animations import animation_file, can_render, chosen_runs, make_animations
from tests.conftest import REPO

SUITE = """description: animations test
environments: [gridworld/as-coop-navigation, matrix/acpo-3x3]
algorithms: [mappo, ippo]
seeds: [1, 0]
run: {total_env_steps: 64, eval_interval: 64, eval_episodes: 2}
overrides: [{set: {algo.n_envs: 2, algo.rollout_length: 16, algo.ppo_epochs: 1}}]
"""


def test_animations_draw_each_renderable_task_once(tmp_path, monkeypatch):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    shutil.copytree(REPO / "claims", tmp_path / "claims")
    (config / "suites" / "anim.yaml").write_text(SUITE)
    monkeypatch.setenv("COOPBENCH_CONFIG_DIR", str(config))
    assert can_render("gridworld/as-coop-navigation") and not can_render("matrix/acpo-3x3")
    runs = plan("anim").runs
    chosen = chosen_runs(runs)
    assert list(chosen) == ["gridworld/as-coop-navigation"]
    run = chosen["gridworld/as-coop-navigation"]
    assert (run.config.algo, run.seed) == ("ippo", 0)  # first method by name, lowest seed
    execute(run.config, run.seed, tmp_path / "results")

    index = make_animations("anim", tmp_path / "results", tmp_path / "animations")
    entry = index["gridworld/as-coop-navigation"]
    assert entry["file"] == animation_file("gridworld/as-coop-navigation") and entry["frames"] > 1
    gif = Image.open(tmp_path / "animations" / entry["file"])
    assert gif.format == "GIF" and gif.n_frames >= 1
    assert read_json(tmp_path / "animations" / "index.json")["animations"].keys() == {"gridworld/as-coop-navigation"}
