"""`coopbench render RUN_DIR` and the environments' optional `render_rgb`.

A tiny MAPPO run on Cooperative Navigation (random starts, so the episodes differ) is trained once through the
driver; render must give back its final evaluation exactly (greedy, environment seed = run seed + the driver's
EVAL_SEED_OFFSET, one episode per copy), write a GIF of the first episode, and refuse what it cannot replay
with one line and exit status 2.
"""

import json
import math
import shutil
from importlib.util import find_spec

import numpy as np
import pytest
import torch
from PIL import Image

from coopbench import cli
from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_json
from coopbench.config import parse_set, resolve
from coopbench.render import config_of, load_weights, render_run
from coopbench.run import build, evaluate, execute, record_failure
from environments.registry import ENVIRONMENTS, make

TINY = ["algo.n_envs=2", "algo.rollout_length=8", "algo.ppo_epochs=1", "run.total_env_steps=32",
        "run.eval_interval=16", "run.eval_episodes=5"]
SEED = 7
NATIVE = [e.name for e in ENVIRONMENTS.entries() if not e.target.startswith("environments.adapters.")]
RENDERS = {"gridworld/as-coop-navigation", "gridworld/as-exchange", "gridworld/lan-checkers",
           "social_dilemma/as-cleanup", "social_dilemma/as-harvest", "particle/bn-predator-prey-15",
           *(n for n in NATIVE if n.startswith("gridworld/as-coop-predation-"))}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    config = resolve("mappo", "gridworld/as-coop-navigation", parse_set(TINY))
    return execute(config, seed=SEED, results_dir=tmp_path_factory.mktemp("results"))


def _main(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(["render", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_greedy_returns_are_the_runs_final_evaluation(run_dir):
    manifest = read_json(run_dir / "manifest.json")
    report = render_run(run_dir, episodes=5)
    assert report["seed"] == SEED and report["env_seed"] == SEED + 1_000_003 and report["deterministic"]
    assert len(report["returns"]) == 5 and len(set(report["returns"])) > 1  # random starts: episodes differ
    assert report["return_mean"] == manifest["final"]["eval_return_mean"]
    # and evaluate() itself, on the weights render loads, agrees episode for episode (mean and spread)
    config = config_of(manifest)
    env, algorithm = build(config, SEED, torch.device("cpu"))
    env.close()
    load_weights(run_dir, algorithm, torch.device("cpu"))
    evaluation = evaluate(algorithm, config, SEED, torch.device("cpu"))
    assert report["return_mean"] == evaluation["eval_return_mean"]
    assert report["return_std"] == evaluation["eval_return_std"]
    assert float(np.mean(report["lengths"])) == evaluation["eval_length_mean"]


def test_cli_prints_one_json_line_and_writes_a_gif(run_dir, tmp_path, capsys):
    gif = tmp_path / "episode.gif"
    code, out, err = _main(capsys, run_dir, "--episodes", 2, "--stochastic", "--out", gif, "--fps", 20,
                           "--max-frames", 30)
    assert code == 0, err
    report = json.loads(out)
    assert len(out.strip().splitlines()) == 1
    assert len(report["returns"]) == 2 and all(math.isfinite(r) for r in report["returns"])
    assert report["return_mean"] == pytest.approx(np.mean(report["returns"]))
    assert report["frames"] == 30 and report["frame_size"] == [160, 160]  # 5x5 cells of 32 px
    with Image.open(gif) as image:
        assert image.size == (160, 160)
        assert image.n_frames > 1  # Pillow merges identical consecutive frames, so at most 30
        assert image.info["duration"] >= 50
    # stochastic episodes are seeded, and recording changes nothing: the same command without --out gives the
    # same returns
    code, again, _ = _main(capsys, run_dir, "--episodes", 2, "--stochastic")
    assert json.loads(again)["returns"] == report["returns"]


def _fails(capsys, *args) -> str:
    code, out, err = _main(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("coopbench: error: ")
    return err


def test_errors_are_one_line_with_status_2(run_dir, tmp_path, capsys):
    assert "no run directory" in _fails(capsys, tmp_path / "absent")
    assert "has no manifest.json" in _fails(capsys, tmp_path)
    assert "at least 1" in _fails(capsys, run_dir, "--episodes", 0)
    assert ".gif" in _fails(capsys, run_dir, "--out", tmp_path / "a.webm")
    assert "does not exist" in _fails(capsys, run_dir, "--out", tmp_path / "no" / "a.gif")

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "model.pt").write_bytes(b"not a torch file")
    assert "corrupt" in _fails(capsys, broken)
    (broken / "model.pt").unlink()
    assert "model.pt is missing" in _fails(capsys, broken)

    config = resolve("mappo", "gridworld/as-coop-navigation", parse_set(TINY))
    assert record_failure(config, 3, tmp_path / "failed", RuntimeError("boom"), after_attempts=1)
    failed = config.run_dir(tmp_path / "failed", 3)
    err = _fails(capsys, failed)
    assert "did not complete" in err and "failed" in err and "boom" in err


def test_a_task_without_pictures_says_so_but_still_replays(tmp_path, capsys):
    config = resolve("mappo", "matrix/acpo-3x3", parse_set(TINY))
    run_dir = execute(config, seed=0, results_dir=tmp_path)
    capsys.readouterr()  # the run's progress lines
    err = _fails(capsys, run_dir, "--out", tmp_path / "m.gif")
    assert "matrix/acpo-3x3 cannot render" in err
    assert not (tmp_path / "m.gif").exists()
    code, out, _ = _main(capsys, run_dir, "--episodes", 2)
    assert code == 0 and len(json.loads(out)["returns"]) == 2


@pytest.mark.parametrize("name", NATIVE)
def test_native_tasks_render_or_refuse(name):
    env = make(name, n_envs=2, seed=0)
    env.reset()
    if name not in RENDERS:
        with pytest.raises(CoopbenchError, match="cannot render"):
            env.render_rgb(0)
        return
    first = env.render_rgb(1)
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        if env.spec.discrete:
            actions = torch.randint(0, env.spec.n_actions, (2, env.spec.n_agents), generator=generator)
        else:
            actions = torch.rand(2, env.spec.n_agents, env.spec.action_dim, generator=generator) * 2 - 1
        env.step(actions)
    assert env.render_rgb(0).shape == first.shape  # one size for every frame of a task
    with pytest.raises(ValueError, match="out of range"):
        env.render_rgb(2)


def _adapter_frame(name: str) -> np.ndarray:
    env = make(name, n_envs=2, seed=0)
    try:
        env.reset()
        return env.render_rgb(1)
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.skipif(find_spec("mpe2") is None, reason="mpe2 not installed")
def test_mpe_renders_with_pygame_off_screen():
    frame = _adapter_frame("mpe/simple-spread-3")
    assert frame.shape == (700, 700, 3) and frame.dtype == np.uint8 and frame.std() > 0


@pytest.mark.slow
@pytest.mark.skipif(find_spec("vmas") is None, reason="vmas not installed")
def test_vmas_renders_or_names_what_is_missing():
    try:
        frame = _adapter_frame("vmas/navigation")
    except CoopbenchError as err:  # no OpenGL context on this machine: the error says what to install
        assert "cannot render here" in str(err) and "xvfb-run" in str(err)
        return
    assert frame.shape == (700, 700, 3) and frame.std() > 0


@pytest.mark.slow
@pytest.mark.skipif(find_spec("gymnasium_robotics") is None, reason="gymnasium-robotics not installed")
def test_mamujoco_renders_or_names_what_is_missing():
    try:
        frame = _adapter_frame("mamujoco/hopper-3x1")
    except CoopbenchError as err:
        assert "cannot render here" in str(err) and "MUJOCO_GL" in str(err)
        return
    assert frame.shape == (480, 480, 3) and frame.std() > 0
