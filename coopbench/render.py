"""`coopbench render RUN_DIR`: replay a finished run's trained policy, print its returns, optionally animate it.

What it does, in order (every check before any work, each failure one CoopbenchError):

1. reads RUN_DIR/manifest.json (the run must have `status: completed`) and rebuilds the run's resolved config
   from `manifest["config"]`;
2. builds the environment and the algorithm with the driver's own `coopbench.run.build` and loads the
   weights of RUN_DIR/model.pt (`torch.load(weights_only=True)`);
3. plays `episodes` episodes, one per copy of one batched environment, exactly as the driver's `evaluate()`
   does: greedy actions (unless `stochastic`), environment seed `seed + EVAL_SEED_OFFSET` with `seed` the
   run's own seed by default. So with `episodes` equal to the run's `run.eval_episodes` and greedy actions,
   the returns are those of the run's final evaluation (`manifest["final"]["eval_return_mean"]` is their
   mean). `stochastic` samples the actions from torch's global generator, seeded with `seed` first;
4. with `out`, records copy 0's first episode (`BatchedEnv.render_rgb(0)` before every step, at most
   `max_frames` pictures; the last picture is the state before the episode's final step, since a finished
   copy resets itself inside `step`) and writes it as an animated GIF (or WebP) at `fps` frames per second.
"""

from __future__ import annotations

import io as bytes_io
import math
import time
from pathlib import Path

import numpy as np
import torch

from coopbench.base import io
from coopbench.base.errors import CoopbenchError
from coopbench.config import ResolvedConfig

ANIMATION_SUFFIXES = (".gif", ".webp")


def _run_fix(run_dir: Path) -> str:
    return (f"give a completed run's directory (results/runs/<env>/<algo>/<hash>/seed-<n>, as `coopbench run` "
            f"prints it); re-run a missing or failed one with coopbench run ALGO ENV --seed N ({run_dir})")


def load_manifest(run_dir: Path) -> dict:
    """The manifest of a completed run, or a CoopbenchError saying what RUN_DIR is instead."""
    if not run_dir.is_dir():
        raise CoopbenchError(f"no run directory {run_dir}", _run_fix(run_dir))
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise CoopbenchError(f"{run_dir} has no manifest.json: the run never finished, or this is not a run directory",
                             _run_fix(run_dir))
    manifest = io.read_json(manifest_path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise CoopbenchError(f"{manifest_path} is not a run manifest (no 'config' mapping)", _run_fix(run_dir))
    status = manifest.get("status")
    if status != "completed":
        reason = manifest.get("reason", "no reason recorded")
        raise CoopbenchError(f"run {run_dir} did not complete (status {status!r}: {reason}): it has no trained policy",
                             "fix the cause, delete the run directory and run it again with coopbench run")
    return manifest


def config_of(manifest: dict) -> ResolvedConfig:
    """The run's resolved config, from the manifest (what the driver ran, not today's config files)."""
    try:
        config = manifest["config"]
        return ResolvedConfig(env=config["env"]["name"], algo=config["algo"]["name"],
                              env_params=dict(config["env"]["params"]), algo_hparams=dict(config["algo"]["hparams"]),
                              run=dict(config["run"]), normalization=dict(manifest.get("normalization", {})),
                              algo_family=manifest.get("algo_family", ""), env_family=manifest.get("env_family", ""),
                              env_notes=manifest.get("env_notes", ""))
    except (KeyError, TypeError) as err:
        raise CoopbenchError(f"the run manifest's config lacks {err}: it was written by another coopbench version",
                             "re-run the run with this version") from None


def load_weights(run_dir: Path, algorithm, device: torch.device) -> None:
    path = run_dir / "model.pt"
    if not path.is_file():
        raise CoopbenchError(f"{path} is missing: the run completed but its trained policy was not kept",
                             "re-run it: delete the run directory and run coopbench run again")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torn or foreign file (torch's own message is pages long)
        raise CoopbenchError(f"corrupt {path}: not a model coopbench wrote (torch cannot read it: "
                             f"{type(err).__name__})", "re-run it: delete the run directory and run coopbench "
                             "run again") from None
    try:
        algorithm.load_state_dict(state)
    except Exception as err:
        raise CoopbenchError(f"{path} does not fit the run's config ({type(err).__name__}: it was written by "
                             "another config or coopbench version)", "re-run it with this version") from None


@torch.no_grad()
def play(env, algorithm, episodes: int, deterministic: bool, record: bool = False,
         max_frames: int = 500) -> tuple[list[float], list[float], list[np.ndarray]]:
    """One episode per copy of `env` (which has `episodes` copies), as `coopbench.run.evaluate` plays them;
    the returns and lengths of those first episodes, and (with `record`) pictures of copy 0's episode."""
    timestep = env.reset()
    returns = torch.full((episodes,), float("nan"))
    lengths = torch.full((episodes,), float("nan"))
    finished = torch.zeros(episodes, dtype=torch.bool)
    memory = algorithm.initial_memory(episodes)
    frames: list[np.ndarray] = []
    for _ in range(env.spec.episode_limit + 1):
        if record and not finished[0] and len(frames) < max_frames:
            frames.append(env.render_rgb(0))
        actions, memory = algorithm.act(timestep, memory, deterministic=deterministic)
        timestep = env.step(actions)
        first_end = (timestep.done & ~finished).cpu()
        returns[first_end] = timestep.episode_return.cpu()[first_end]
        lengths[first_end] = timestep.episode_length.cpu()[first_end]
        finished |= first_end
        if finished.all():
            break
    if not finished.all():
        raise RuntimeError(f"{env.spec.name}: episodes exceeded the episode limit {env.spec.episode_limit}")
    return returns.tolist(), lengths.tolist(), frames


def encode_animation(frames: list[np.ndarray], suffix: str, fps: float) -> bytes:
    """An animated GIF or WebP of `frames` (`[H, W, 3]` uint8, one size), looping, at `fps`."""
    from PIL import Image, features

    if suffix == ".webp" and not features.check("webp"):
        raise CoopbenchError("this Pillow was built without WebP support", "write a .gif instead")
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
    if suffix == ".gif":  # GIF holds 256 colours a frame: Pillow's fast octree, not its default median cut (~10x)
        images = [image.quantize(colors=256, method=Image.Quantize.FASTOCTREE) for image in images]
    buffer = bytes_io.BytesIO()
    options = {"lossless": True} if suffix == ".webp" else {"optimize": False}
    images[0].save(buffer, format=suffix[1:].upper(), save_all=True, append_images=images[1:],
                   duration=max(int(round(1000 / fps)), 1), loop=0, **options)
    return buffer.getvalue()


def check_options(episodes: int, fps: float, max_frames: int, out: Path | None) -> None:
    if episodes < 1:
        raise CoopbenchError(f"--episodes {episodes}: needs at least 1", "give --episodes a positive integer")
    if not (math.isfinite(fps) and fps > 0):
        raise CoopbenchError(f"--fps {fps}: needs a positive number", "give --fps FRAMES_PER_SECOND > 0")
    if max_frames < 1:
        raise CoopbenchError(f"--max-frames {max_frames}: needs at least 1", "give --max-frames a positive integer")
    if out is not None:
        if out.suffix.lower() not in ANIMATION_SUFFIXES:
            raise CoopbenchError(f"--out {out}: can write {' or '.join(ANIMATION_SUFFIXES)} animations only "
                                 "(video formats such as .webm need ffmpeg, which coopbench does not use)",
                                 "give --out FILE.gif")
        if not out.parent.is_dir():
            raise CoopbenchError(f"--out {out}: folder {out.parent} does not exist", "create it, or give another path")


def render_run(run_dir: str | Path, episodes: int = 4, stochastic: bool = False, out: str | Path | None = None,
               fps: float = 10.0, max_frames: int = 500, seed: int | None = None, device: str = "cpu") -> dict:
    """Replay the policy of the completed run in `run_dir` (see the module docstring); returns the report the CLI
    prints (returns per episode, their mean and std, the animation written)."""
    from coopbench.config import check_seed
    from coopbench.run import EVAL_SEED_OFFSET, build, resolve_device, seed_everything

    started = time.perf_counter()
    run_dir = Path(run_dir)
    out = None if out is None else Path(out)
    check_options(episodes, fps, max_frames, out)
    manifest = load_manifest(run_dir)
    config = config_of(manifest)
    seed = int(manifest["seed"]) if seed is None else seed
    check_seed(seed)
    torch_device = resolve_device(device)
    seed_everything(seed)  # the stream `stochastic` samples from
    env, algorithm = build(config, seed + EVAL_SEED_OFFSET, torch_device, n_envs=episodes)
    try:
        load_weights(run_dir, algorithm, torch_device)
        # a task that cannot render fails at play's first picture, taken before the first step
        returns, lengths, frames = play(env, algorithm, episodes, deterministic=not stochastic,
                                        record=out is not None, max_frames=max_frames)
    finally:
        env.close()
    report = {
        "run_dir": str(run_dir), "env": config.env, "algo": config.algo, "seed": seed,
        "env_seed": seed + EVAL_SEED_OFFSET, "deterministic": not stochastic, "episodes": episodes,
        "returns": returns, "lengths": lengths,
        # as evaluate() computes them (float32, population std): equal to its numbers, not just close
        "return_mean": torch.tensor(returns).mean().item(),
        "return_std": torch.tensor(returns).std(unbiased=False).item(),
        # the run's own final evaluation, for comparison (equal returns when episodes == run.eval_episodes, greedy)
        "run_eval_episodes": config.run.get("eval_episodes"),
        "run_final_eval_return_mean": manifest.get("final", {}).get("eval_return_mean"),
    }
    if out is not None:
        io.write_bytes(out, encode_animation(frames, out.suffix.lower(), fps))
        height, width = frames[0].shape[:2]
        report.update(out=str(out), frames=len(frames), frame_size=[width, height], fps=fps)
    report["wall_s"] = round(time.perf_counter() - started, 3)
    return report
