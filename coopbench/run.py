"""The run driver: what one Snakemake job (and `coopbench run`) does.

build env + algorithm from the resolved config -> seed everything -> loop
(collect+update, evaluate every `eval_interval` steps, append a metrics row, checkpoint) -> write
metrics.parquet and manifest.json atomically. A killed run restarts from checkpoint.pt and ends
bit-for-bit where an uninterrupted one would (CPU): the checkpoint holds every piece of state that
influences the future (networks, optimizers, environment, current timestep, all RNG states,
metrics so far).
"""

from __future__ import annotations

import io as bytes_io
import math
import random
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from algorithms.registry import ALGORITHMS
from coopbench.base import io, provenance
from coopbench.base.errors import CoopbenchError, MissingDependencyError, NonFiniteError, StorageError
from coopbench.base.normalization import normalized_score, resolve
from coopbench.base.schema import METRICS_COLUMNS, OPTIONAL_METRICS_COLUMNS, SCHEMA_VERSION
from coopbench.config import ResolvedConfig
from environments.base import TimeStep
from environments.registry import make

EVAL_SEED_OFFSET = 1_000_003  # evaluation copies never share a random stream with training


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise CoopbenchError("run.device=cuda but no CUDA device is visible to torch",
                             "run on a GPU node, or set run.device=cpu")
    return torch.device(name)


@torch.no_grad()
def evaluate(algorithm, config: ResolvedConfig, seed: int, device: torch.device) -> dict:
    """Greedy policies on `eval_episodes` fresh copies, one episode each; uses no global RNG."""
    n_episodes = config.run["eval_episodes"]
    env = make(config.env, n_envs=n_episodes, seed=seed + EVAL_SEED_OFFSET, device=device, **config.env_params)
    timestep = env.reset()
    returns = torch.full((n_episodes,), float("nan"))
    lengths = torch.full((n_episodes,), float("nan"))
    won = torch.full((n_episodes,), float("nan"))
    finished = torch.zeros(n_episodes, dtype=torch.bool)
    memory = algorithm.initial_memory(n_episodes)
    for _ in range(env.spec.episode_limit + 1):
        actions, memory = algorithm.act(timestep, memory, deterministic=True)
        timestep = env.step(actions)
        first_end = (timestep.done & ~finished).cpu()
        returns[first_end] = timestep.episode_return.cpu()[first_end]
        lengths[first_end] = timestep.episode_length.cpu()[first_end]
        if "won" in timestep.extras:
            won[first_end] = timestep.extras["won"].cpu().float()[first_end]
        finished |= first_end
        if finished.all():
            break
    env.close()
    if not finished.all():
        raise RuntimeError(f"{config.env}: evaluation episodes exceeded the episode limit {env.spec.episode_limit}")
    return {"eval_return_mean": returns.mean().item(), "eval_return_std": returns.std(unbiased=False).item(),
            "eval_length_mean": lengths.mean().item(), "eval_episodes": n_episodes,
            "eval_win_rate": won.mean().item()}  # NaN where the task reports no `won`


@dataclass
class Progress:
    """Everything about the loop's position that a checkpoint must restore."""

    iteration: int = 0
    env_steps: int = 0
    next_eval: int = 0
    rows: list[dict] = field(default_factory=list)
    pending_returns: list[float] = field(default_factory=list)
    last_losses: dict[str, float] = field(default_factory=dict)
    resumes: int = 0
    started_at: str = ""  # start of the first attempt
    elapsed_s: float = 0.0  # wall time spent so far, over all attempts


def save_torch(path: Path, obj) -> None:
    """torch.save through memory, then an atomic write: the bytes depend on `obj` alone (saved to a path,
    torch names the zip's root folder after the temporary file, so two identical runs differed)."""
    buffer = bytes_io.BytesIO()
    torch.save(obj, buffer)
    io.write_bytes(path, buffer.getvalue())


def _timestep_to_dict(timestep: TimeStep) -> dict:
    return {f.name: getattr(timestep, f.name) for f in fields(TimeStep)}


def save_checkpoint(path: Path, algorithm, env, timestep: TimeStep, progress: Progress) -> None:
    state = {
        "algorithm": algorithm.state_dict(),
        "env": env.state_dict(),
        "timestep": _timestep_to_dict(timestep),
        "progress": vars(progress),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                "numpy": [np.random.get_state()[0], torch.from_numpy(np.random.get_state()[1].copy()),
                          *np.random.get_state()[2:]]},
    }
    save_torch(path, state)


def load_checkpoint(path: Path, algorithm, env) -> tuple[TimeStep, Progress]:
    fix = f"delete {path} to restart this run from scratch"
    try:
        state = torch.load(path, weights_only=True)
    except Exception as err:  # a torn or foreign file: refuse rather than guess (torch's message is pages long)
        raise CoopbenchError(f"corrupt checkpoint {path}: not a checkpoint coopbench wrote "
                             f"(torch cannot read it: {type(err).__name__})", fix) from None
    try:
        algorithm.load_state_dict(state["algorithm"])
        env.load_state_dict(state["env"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        kind, keys, *rest = state["rng"]["numpy"]
        np.random.set_state((kind, keys.numpy(), *rest))
        return TimeStep(**state["timestep"]), Progress(**state["progress"])
    except Exception as err:  # another config's networks, another version's layout
        raise CoopbenchError(f"checkpoint {path} does not fit this run ({type(err).__name__}: it was written by "
                             "another config or coopbench version)", fix) from None


def check_finite(values: dict[str, float], where: str, checkpoint: Path) -> None:
    """Stop the run at the first NaN or infinite loss or return: the last checkpoint (saved before) stays good."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{k}={v}" for k, v in bad.items())
        kept = f"the last good checkpoint {checkpoint} is kept" if checkpoint.exists() else "no checkpoint yet"
        raise NonFiniteError(f"non-finite {shown} {where}; the run stopped ({kept})",
                             "lower the learning rate or check the task's rewards, then delete the run directory "
                             "and re-run")


class ProgressReport:
    """A tqdm bar on an interactive terminal; plain log lines (one per evaluation) otherwise."""

    def __init__(self, total: int, label: str, initial: int):
        self.label = label
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=label, unit="step", unit_scale=True, dynamic_ncols=True)
        self.last = initial

    def update(self, env_steps: int, row: dict | None, steps_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(env_steps - self.last)
            if row is not None:  # tqdm shows steps and steps/s itself
                self.bar.set_postfix(eval_return=f"{row['eval_return_mean']:.4g}",
                                     train_return=f"{row['train_return_mean']:.4g}")
        elif row is not None:
            print(f"[{self.label}] env_steps={env_steps} eval_return={row['eval_return_mean']:.4g} "
                  f"train_return={row['train_return_mean']:.4g} steps/s={steps_per_s:.0f}", file=sys.stderr, flush=True)
        self.last = env_steps

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build(config: ResolvedConfig, seed: int, device: torch.device, n_envs: int | None = None):
    """The environment (`n_envs` copies, default the algorithm's `n_envs`) and the freshly initialised algorithm
    of `config`, as the driver trains them; `coopbench render` rebuilds a finished run's with this."""
    algo_cls = ALGORITHMS.get(config.algo).load()
    hparams = algo_cls.Config(**config.algo_hparams)
    env = make(config.env, n_envs=hparams.n_envs if n_envs is None else n_envs, seed=seed, device=device,
               **config.env_params)
    algorithm = algo_cls(env.spec, hparams, device)
    algorithm.set_budget(config.run["total_env_steps"])
    return env, algorithm


def execute(config: ResolvedConfig, seed: int, results_dir: Path, torch_threads: int = 1,
            checkpoint_interval_s: float = 300.0) -> Path:
    """Run (or resume, or skip if complete) one (env, algo, config, seed); return its directory.

    Holds the run directory's lock throughout (re-entrant: the CLI takes it first, to cover a recorded failure)."""
    from coopbench.config import check_seed

    check_seed(seed)
    with io.run_lock(config.run_dir(results_dir, seed)):
        return _execute(config, seed, results_dir, torch_threads, checkpoint_interval_s)


def _execute(config: ResolvedConfig, seed: int, results_dir: Path, torch_threads: int,
             checkpoint_interval_s: float) -> Path:
    run_dir = config.run_dir(results_dir, seed)
    manifest_path, metrics_path = run_dir / "manifest.json", run_dir / "metrics.parquet"
    checkpoint_path = run_dir / "checkpoint.pt"
    if manifest_path.exists() and metrics_path.exists():
        print(f"{run_dir}: already complete", file=sys.stderr)
        return run_dir

    torch.set_num_threads(torch_threads)
    device = resolve_device(config.run["device"])
    seed_everything(seed)
    env, algorithm = build(config, seed, device)
    norm = resolve(config.normalization, config.env, env.spec.return_bounds)

    if checkpoint_path.exists():
        timestep, progress = load_checkpoint(checkpoint_path, algorithm, env)
        progress.resumes += 1
    else:
        timestep, progress = env.reset(), Progress()
    progress.started_at = progress.started_at or provenance.now()
    start, elapsed_before, steps_at_start = time.perf_counter(), progress.elapsed_s, progress.env_steps
    total = config.run["total_env_steps"]
    per_iteration = algorithm.steps_per_iteration
    report = ProgressReport(math.ceil(total / per_iteration) * per_iteration,
                            f"{config.algo} {config.env} seed {seed}", progress.env_steps)

    def record_evaluation() -> dict:
        returns = progress.pending_returns
        evaluation = evaluate(algorithm, config, seed, device)
        check_finite({k: evaluation[k] for k in ("eval_return_mean", "eval_return_std", "eval_length_mean")},
                     f"in the evaluation at env_steps {progress.env_steps}", checkpoint_path)
        row = {"iteration": progress.iteration, "env_steps": progress.env_steps, **evaluation,
               "train_return_mean": float(np.mean(returns)) if returns else float("nan"),
               "train_episodes": len(returns),
               **{k: progress.last_losses.get(k, float("nan"))
                  for k in ("policy_loss", "value_loss", "entropy", *OPTIONAL_METRICS_COLUMNS)}}
        progress.rows.append(row)
        progress.pending_returns = []
        while progress.next_eval <= progress.env_steps:
            progress.next_eval += config.run["eval_interval"]
        return row

    if not progress.rows:
        record_evaluation()  # the untrained policy: the curve's first point
    last_checkpoint = time.perf_counter()
    while progress.env_steps < total:
        result = algorithm.train_iteration(env, timestep)
        returns = result.episode_returns.cpu().tolist()
        bad_returns = [r for r in returns if not math.isfinite(r)]
        check_finite({**{k: float(v) for k, v in result.losses.items() if "loss" in k or k == "entropy"},
                      **({"train_return": bad_returns[0]} if bad_returns else {})},
                     f"at training iteration {progress.iteration + 1}", checkpoint_path)
        timestep = result.timestep
        progress.iteration += 1
        progress.env_steps += result.env_steps
        progress.pending_returns += returns
        progress.last_losses = result.losses
        row = None
        if progress.env_steps >= progress.next_eval or progress.env_steps >= total:
            row = record_evaluation()
        if row is not None or time.perf_counter() - last_checkpoint > checkpoint_interval_s:
            progress.elapsed_s = elapsed_before + time.perf_counter() - start
            save_checkpoint(checkpoint_path, algorithm, env, timestep, progress)
            last_checkpoint = time.perf_counter()
        rate = (progress.env_steps - steps_at_start) / max(time.perf_counter() - start, 1e-9)
        report.update(progress.env_steps, row, rate)
    report.close()
    env.close()

    wall_time = elapsed_before + (time.perf_counter() - start)
    metrics = pd.DataFrame(progress.rows, columns=METRICS_COLUMNS + OPTIONAL_METRICS_COLUMNS)
    final = progress.rows[-1]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "env": config.env,
        "algo": config.algo,
        "seed": seed,
        "env_family": config.env_family,
        "algo_family": config.algo_family,
        "config": config.to_dict(),
        "config_hash": config.hash,
        "normalization": norm,
        "env_notes": config.env_notes,
        "status": "completed",
        "code": provenance.code_version(),
        "packages": provenance.package_versions(),
        "host": provenance.host(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "container_image": provenance.container_image(),
        "slurm_job_id": provenance.slurm_job_id(),
        "started_at": progress.started_at,
        "finished_at": provenance.now(),
        "wall_time_s": round(wall_time, 3),
        "env_steps": progress.env_steps,
        "env_steps_per_s": round(progress.env_steps / max(wall_time, 1e-9), 1),
        "resumes": progress.resumes,
        "final": {"env_steps": final["env_steps"], "eval_return_mean": final["eval_return_mean"],
                  "eval_return_std": final["eval_return_std"],
                  "normalized_score": normalized_score(final["eval_return_mean"], norm)},
    }
    if not all(math.isfinite(v) for v in (final["eval_return_mean"], manifest["final"]["normalized_score"])):
        raise RuntimeError(f"non-finite final evaluation in {run_dir}")
    # Metrics first, manifest last: a manifest therefore always means a complete run.
    io.write_parquet(metrics_path, metrics)
    save_torch(run_dir / "model.pt", algorithm.state_dict())
    io.write_json(manifest_path, manifest)
    checkpoint_path.unlink(missing_ok=True)
    return run_dir


def record_failure(config: ResolvedConfig, seed: int, results_dir: Path, error: BaseException,
                   after_attempts: int) -> bool:
    """Count a failed attempt of a workflow job; on the last one, write the run's outcome as data.

    A missing dependency (StarCraft II, gfootball) or another CoopbenchError will not change on a retry: it
    is recorded at once. Other errors are recorded after `after_attempts` failed attempts (the workflow's
    retries, each resuming from the checkpoint). The record is a manifest with status "not_run" or
    "failed" and the one-line reason, and an empty metrics.parquet, so that the rest of the suite is still
    aggregated, judged and published. Returns whether the failure was recorded (the job then succeeds).
    """
    run_dir = config.run_dir(results_dir, seed)
    attempts_path = run_dir / "failed_attempts.json"
    attempts = (io.read_json(attempts_path)["count"] if attempts_path.exists() else 0) + 1
    # A config error, a missing dependency or a NaN (deterministic: a retry from the checkpoint meets it again) is
    # final at once; a crash or a full disk (StorageError) may pass on a retry.
    final = (isinstance(error, CoopbenchError) and not isinstance(error, StorageError)) or attempts >= after_attempts
    reason = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, CoopbenchError):
        reason = f"{type(error).__name__}: {reason} (after {attempts} attempts)"
    if not final:
        io.write_json(attempts_path, {"count": attempts, "last_error": reason})
        return False
    io.write_parquet(run_dir / "metrics.parquet", pd.DataFrame(columns=METRICS_COLUMNS))
    io.write_json(run_dir / "manifest.json", {
        "schema_version": SCHEMA_VERSION, "env": config.env, "algo": config.algo, "seed": seed,
        "config": config.to_dict(), "config_hash": config.hash,
        "status": "not_run" if isinstance(error, MissingDependencyError) else "failed", "reason": reason,
        "code": provenance.code_version(), "host": provenance.host(), "finished_at": provenance.now(),
        "slurm_job_id": provenance.slurm_job_id()})
    attempts_path.unlink(missing_ok=True)
    return True
