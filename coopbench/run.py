"""The run driver: what one Snakemake job (and `coopbench run`) does.

build env + algorithm from the resolved config -> seed everything -> loop
(collect+update, evaluate every `eval_interval` steps, append a metrics row, checkpoint) -> write
metrics.parquet and manifest.json atomically. A killed run restarts from checkpoint.pt and ends
bit-for-bit where an uninterrupted one would (CPU): the checkpoint holds every piece of state that
influences the future (networks, optimizers, environment, current timestep, all RNG states,
metrics so far).

Seed batches (docs/architecture.md): `execute_seeds(config, [k0, k1, ...])` trains K seeds of one config in one
process, one algorithm holding K seeds' networks and one environment of K seed blocks. Each seed starts exactly
as its solo run (built under its own `seed_everything`, then stacked), and writes the run directory, checkpoint,
metrics, model and manifest it would write alone (the manifest records the batch in `seed_batch`). `execute` is
`execute_seeds` of one seed: the same code path.
"""

from __future__ import annotations

import io as bytes_io
import math
import random
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from algorithms.registry import ALGORITHMS, capabilities
from coopbench.base import io, provenance
from coopbench.base.errors import CoopbenchError, MissingDependencyError, NonFiniteError, StorageError
from coopbench.base.normalization import normalized_score, resolve
from coopbench.base.schema import METRICS_COLUMNS, OPTIONAL_METRICS_COLUMNS, SCHEMA_VERSION
from coopbench.base.seed_state import seed_slice, seed_stack
from coopbench.config import ResolvedConfig
from environments.base import TimeStep
from environments.registry import make
from environments.seed_batch import SeedBatch, join, merge, split

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


def evaluate(algorithm, config: ResolvedConfig, seed: int, device: torch.device) -> dict:
    """Greedy policies on `eval_episodes` fresh copies, one episode each; uses no global RNG."""
    return evaluate_seeds(algorithm, config, [seed], device)[0]


@torch.no_grad()
def evaluate_seeds(algorithm, config: ResolvedConfig, seeds: list[int], device: torch.device) -> list[dict]:
    """`evaluate` for each seed of a seed batch (`algorithm` holds len(seeds) seeds): seed k's greedy policy on the
    evaluation copies its solo run would use, all seeds stepped together."""
    n_episodes, n_seeds = config.run["eval_episodes"], len(seeds)
    env = merge([make(config.env, n_envs=n_episodes, seed=seed + EVAL_SEED_OFFSET, device=device,
                                 **config.env_params) for seed in seeds])
    total = n_seeds * n_episodes
    timestep = env.reset()
    returns = torch.full((total,), float("nan"))
    lengths = torch.full((total,), float("nan"))
    won = torch.full((total,), float("nan"))
    finished = torch.zeros(total, dtype=torch.bool)
    memory = algorithm.initial_memory(n_episodes)  # per seed
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
    results = []
    for r, ln, w in zip(returns.view(n_seeds, -1), lengths.view(n_seeds, -1), won.view(n_seeds, -1), strict=True):
        results.append({"eval_return_mean": r.mean().item(), "eval_return_std": r.std(unbiased=False).item(),
                        "eval_length_mean": ln.mean().item(), "eval_episodes": n_episodes,
                        "eval_win_rate": w.mean().item()})  # NaN where the task reports no `won`
    return results


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


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's raw state (a torn or foreign file: one line saying so)."""
    try:
        return torch.load(path, weights_only=True)
    except Exception as err:  # a torn or foreign file: refuse rather than guess (torch's message is pages long)
        raise CoopbenchError(f"corrupt checkpoint {path}: not a checkpoint coopbench wrote "
                             f"(torch cannot read it: {type(err).__name__})", f"delete {path} to restart this run "
                             "from scratch") from None


def load_checkpoint(path: Path, algorithm, env) -> tuple[TimeStep, Progress]:
    [(timestep, progress)] = restore_checkpoints([path], [read_checkpoint(path)], algorithm, SeedBatch([env]))
    return timestep, progress


def restore_checkpoints(paths: list[Path], states: list[dict], algorithm, env: SeedBatch) -> list[tuple[TimeStep,
                                                                                                      Progress]]:
    """Restore a seed batch from its seeds' checkpoints (one seed: exactly `load_checkpoint`): the algorithm from
    the stacked per-seed states, each seed's environment, and the global RNG of the first seed's."""
    fix = f"delete {' and '.join(map(str, paths))} to restart from scratch"
    try:
        algorithm.load_state_dict(seed_stack([state["algorithm"] for state in states]))
        env.load_seed_states([state["env"] for state in states])
        rng = states[0]["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        kind, keys, *rest = rng["numpy"]
        np.random.set_state((kind, keys.numpy(), *rest))
        return [(TimeStep(**state["timestep"]), Progress(**state["progress"])) for state in states]
    except Exception as err:  # another config's networks, another version's layout
        raise CoopbenchError(f"checkpoint {paths[0]} does not fit this run ({type(err).__name__}: it was written by "
                             "another config or coopbench version)", fix) from None


class _Frozen:
    """A state dict standing in for its owner where `save_checkpoint` asks for one (a seed's slice of a batch)."""

    def __init__(self, state: dict):
        self.state = state

    def state_dict(self) -> dict:
        return self.state


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


def build_seeds(config: ResolvedConfig, seeds: list[int], device: torch.device):
    """A seed batch's environment (`SeedBatch`, seed k's block built as its solo run builds it) and algorithm:
    each seed's networks and random streams are initialised under its own `seed_everything`, exactly as alone,
    then stacked into one algorithm of K seeds. One seed: `seed_everything` and `build`, as always."""
    envs, states = [], []
    for seed in seeds:
        seed_everything(seed)
        env, algorithm = build(config, seed, device)
        envs.append(env)
        states.append(algorithm.state_dict() if len(seeds) > 1 else None)
    if len(seeds) > 1:
        algo_cls = ALGORITHMS.get(config.algo).load()
        algorithm = algo_cls(envs[0].spec, algo_cls.Config(**config.algo_hparams), device, n_seeds=len(seeds))
        algorithm.set_budget(config.run["total_env_steps"])
        algorithm.load_state_dict(seed_stack(states))
    return merge(envs), algorithm


def execute(config: ResolvedConfig, seed: int, results_dir: Path, torch_threads: int = 1,
            checkpoint_interval_s: float = 300.0) -> Path:
    """Run (or resume, or skip if complete) one (env, algo, config, seed); return its directory.

    Holds the run directory's lock throughout (re-entrant: the CLI takes it first, to cover a recorded failure)."""
    return execute_seeds(config, [seed], results_dir, torch_threads, checkpoint_interval_s)[0]


def execute_seeds(config: ResolvedConfig, seeds: list[int], results_dir: Path, torch_threads: int = 1,
                  checkpoint_interval_s: float = 300.0) -> list[Path]:
    """Run (or resume, or skip where complete) seeds of one (env, algo, config) in one process, as one seed batch
    where the method can (`Capabilities.seed_batch`), else one after the other; return their directories.

    Holds every seed's run-directory lock throughout."""
    from coopbench.config import check_seed

    for seed in seeds:
        check_seed(seed)
    if len(set(seeds)) != len(seeds):
        raise CoopbenchError(f"--seeds {seeds}: a seed appears twice", "give each seed once")
    with ExitStack() as locks:
        for seed in seeds:
            locks.enter_context(io.run_lock(config.run_dir(results_dir, seed)))
        if len(seeds) > 1 and not capabilities(config.algo).seed_batch:
            print(f"{config.algo} trains one seed at a time (no seed batches yet): running seeds {seeds} one after "
                  "another", file=sys.stderr)
            return [_execute(config, [seed], results_dir, torch_threads, checkpoint_interval_s)[0] for seed in seeds]
        return _execute(config, seeds, results_dir, torch_threads, checkpoint_interval_s)


def _complete(run_dir: Path) -> bool:
    return (run_dir / "manifest.json").exists() and (run_dir / "metrics.parquet").exists()


def _execute(config: ResolvedConfig, seeds: list[int], results_dir: Path, torch_threads: int,
             checkpoint_interval_s: float) -> list[Path]:
    run_dirs = [config.run_dir(results_dir, seed) for seed in seeds]
    todo = []
    for seed, run_dir in zip(seeds, run_dirs, strict=True):
        if _complete(run_dir):
            print(f"{run_dir}: already complete", file=sys.stderr)
        else:
            todo.append(seed)
    if not todo:
        return run_dirs
    torch.set_num_threads(torch_threads)
    device = resolve_device(config.run["device"])
    # Seeds continue together from checkpoints written at the same iteration (all of a batch's are, unless it was
    # killed between two seeds' writes: those seeds then continue as separate batches).
    groups: dict[int, list[tuple[int, dict | None]]] = {}
    for seed in todo:
        path = config.run_dir(results_dir, seed) / "checkpoint.pt"
        state = read_checkpoint(path) if path.exists() else None
        groups.setdefault(-1 if state is None else _iteration(state), []).append((seed, state))
    for group in groups.values():
        _train(config, [seed for seed, _ in group], [state for _, state in group], results_dir, device,
               checkpoint_interval_s)
    return run_dirs


def _iteration(state) -> int:
    """The iteration a checkpoint stands at (-2 for a file that is no checkpoint: restoring it says so)."""
    try:
        return int(state["progress"]["iteration"])
    except (KeyError, TypeError, ValueError):
        return -2


def _train(config: ResolvedConfig, seeds: list[int], states: list[dict | None], results_dir: Path,
           device: torch.device, checkpoint_interval_s: float) -> None:
    n_seeds = len(seeds)
    run_dirs = [config.run_dir(results_dir, seed) for seed in seeds]
    checkpoint_paths = [run_dir / "checkpoint.pt" for run_dir in run_dirs]
    env, algorithm = build_seeds(config, seeds, device)
    norm = resolve(config.normalization, config.env, env.spec.return_bounds)

    if states[0] is not None:
        restored = restore_checkpoints(checkpoint_paths, states, algorithm, env)
        timestep = join([timestep for timestep, _ in restored])
        progresses = [progress for _, progress in restored]
        for progress in progresses:
            progress.resumes += 1
    else:
        timestep, progresses = env.reset(), [Progress() for _ in seeds]
    for progress in progresses:
        progress.started_at = progress.started_at or provenance.now()
    # Every seed of a batch is at the same iteration; its env steps may differ (a value-based round runs until n_envs
    # episodes finish), so each seed evaluates when its own steps reach its next point and completes at its own
    # budget: its results are written then, and the batch's later iterations are not its (they are dropped).
    lead = progresses[0]
    start, elapsed_before = time.perf_counter(), lead.elapsed_s
    steps_at_start = min(progress.env_steps for progress in progresses)
    total = config.run["total_env_steps"]
    per_iteration = algorithm.steps_per_iteration
    label = f"seed {seeds[0]}" if n_seeds == 1 else f"seeds {','.join(map(str, seeds))}"
    report = ProgressReport(math.ceil(total / per_iteration) * per_iteration, f"{config.algo} {config.env} {label}",
                            lead.env_steps)

    def record_evaluations(due: list[bool]) -> list[dict]:
        rows = []
        # (one seed: through `evaluate`, the solo entry point, which is `evaluate_seeds` of one seed). Every seed is
        # evaluated (greedy: no state moves), the due ones recorded.
        evaluations = ([evaluate(algorithm, config, seeds[0], device)] if n_seeds == 1
                       else evaluate_seeds(algorithm, config, seeds, device))
        for seed, progress, path, evaluation, is_due in zip(seeds, progresses, checkpoint_paths, evaluations, due,
                                                            strict=True):
            if not is_due:
                continue
            returns = progress.pending_returns
            check_finite({k: evaluation[k] for k in ("eval_return_mean", "eval_return_std", "eval_length_mean")},
                         f"in the evaluation of seed {seed} at env_steps {progress.env_steps}", path)
            row = {"iteration": progress.iteration, "env_steps": progress.env_steps, **evaluation,
                   "train_return_mean": float(np.mean(returns)) if returns else float("nan"),
                   "train_episodes": len(returns),
                   **{k: progress.last_losses.get(k, float("nan"))
                      for k in ("policy_loss", "value_loss", "entropy", *OPTIONAL_METRICS_COLUMNS)}}
            progress.rows.append(row)
            progress.pending_returns = []
            while progress.next_eval <= progress.env_steps:
                progress.next_eval += config.run["eval_interval"]
            rows.append(row)
        return rows

    def save_checkpoints() -> None:
        state, env_states = algorithm.state_dict(), env.seed_states()
        for k, (path, progress, seed_timestep) in enumerate(zip(checkpoint_paths, progresses,
                                                                split(timestep, n_seeds), strict=True)):
            if written[k]:
                continue
            progress.elapsed_s = elapsed_before + time.perf_counter() - start
            save_checkpoint(path, _Frozen(seed_slice(state, k, n_seeds)), _Frozen(env_states[k]), seed_timestep,
                            progress)

    def write_results(done: list[bool]) -> None:
        if not any(d and not w for d, w in zip(done, written, strict=True)):
            return
        state, wall_time = algorithm.state_dict(), elapsed_before + (time.perf_counter() - start)
        for k, (seed, run_dir, progress) in enumerate(zip(seeds, run_dirs, progresses, strict=True)):
            if done[k] and not written[k]:
                _write_results(config, seed, run_dir, progress, norm, device, wall_time,
                               seed_slice(state, k, n_seeds), seeds)
                written[k] = True

    written = [False] * n_seeds
    if not lead.rows:
        record_evaluations([True] * n_seeds)  # the untrained policy: the curve's first point
    last_checkpoint = time.perf_counter()
    while any(progress.env_steps < total for progress in progresses):
        training = [progress.env_steps < total for progress in progresses]
        result = algorithm.train_iteration(env, timestep)
        # one seed: the result itself (its `seeds` entry holds the same values)
        for seed, progress, path, part, trains in zip(seeds, progresses, checkpoint_paths,
                                                      [result] if n_seeds == 1 else result.seeds, training,
                                                      strict=True):
            if not trains:
                continue
            returns = part.episode_returns.cpu().tolist()
            bad_returns = [r for r in returns if not math.isfinite(r)]
            where = f"at training iteration {progress.iteration + 1}" + (f" of seed {seed}" if n_seeds > 1 else "")
            check_finite({**{k: float(v) for k, v in part.losses.items() if "loss" in k or k == "entropy"},
                          **({"train_return": bad_returns[0]} if bad_returns else {})}, where, path)
            progress.iteration += 1
            progress.env_steps += part.env_steps
            progress.pending_returns += returns
            progress.last_losses = part.losses
        timestep = result.timestep
        rows = None
        due = [trains and (progress.env_steps >= progress.next_eval or progress.env_steps >= total)
               for trains, progress in zip(training, progresses, strict=True)]
        if any(due):
            rows = record_evaluations(due)
        # the checkpoint first, then a finished seed's results: a failure while writing them (a full disk) resumes
        # from its final state instead of retraining
        if not all(written) and (rows is not None or time.perf_counter() - last_checkpoint > checkpoint_interval_s):
            save_checkpoints()
            last_checkpoint = time.perf_counter()
        write_results([trains and progress.env_steps >= total for trains, progress in zip(training, progresses,
                                                                                         strict=True)])
        slowest = min(progress.env_steps for progress in progresses)
        rate = (slowest - steps_at_start) / max(time.perf_counter() - start, 1e-9)
        report.update(slowest, None if rows is None else rows[0], rate)
    report.close()
    env.close()
    write_results([True] * n_seeds)  # (a run resumed from a checkpoint written after its last iteration)


def _write_results(config: ResolvedConfig, seed: int, run_dir: Path, progress: Progress, norm: dict,
                   device: torch.device, wall_time: float, model: dict, seeds: list[int]) -> None:
    """One seed's metrics, model and manifest, exactly as a solo run writes them (plus the batch it ran in)."""
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
        "wall_time_s": round(wall_time, 3),  # the batch's (every seed of a batch shares the process)
        "env_steps": progress.env_steps,
        "env_steps_per_s": round(progress.env_steps / max(wall_time, 1e-9), 1),  # this seed's share
        "resumes": progress.resumes,
        "seed_batch": list(seeds),  # the seeds trained together in this process (one: a solo run)
        "final": {"env_steps": final["env_steps"], "eval_return_mean": final["eval_return_mean"],
                  "eval_return_std": final["eval_return_std"],
                  "normalized_score": normalized_score(final["eval_return_mean"], norm)},
    }
    if not all(math.isfinite(v) for v in (final["eval_return_mean"], manifest["final"]["normalized_score"])):
        raise RuntimeError(f"non-finite final evaluation in {run_dir}")
    # Metrics first, manifest last: a manifest therefore always means a complete run.
    io.write_parquet(run_dir / "metrics.parquet", metrics)
    save_torch(run_dir / "model.pt", model)
    io.write_json(run_dir / "manifest.json", manifest)
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)


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
