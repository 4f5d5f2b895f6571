"""coopbench's QMIX against EPyMARL's QMIX on RWARE tiny with 2 robots, side by side in one run (issue 14).

    bash benchmarks/setup_epymarl_venv.sh EPYMARL_GIT   # once: EPyMARL in its own venv (build/bench-venvs/epymarl)
    .venv/bin/python benchmarks/qmix_vs_epymarl.py [--repeats 5] [--iterations 16] [--json out.json]
    .venv/bin/python benchmarks/qmix_vs_epymarl.py --only coopbench    # without the EPyMARL venv

Both train QMIX with the same settings (`SETTINGS` below; every value is passed to both sides
explicitly, none is left to a default of either):

- task: RWARE as config/environments/rware/tiny-2ag-hard.yaml defines it (`rware-tiny-2ag-hard-v2`
  as registered by rware, 2 robots, 500 steps; team reward = the robots' rewards summed: EPyMARL's
  gymma env with common_reward and reward_scalarisation "sum"), `--n-envs` copies (default 1:
  PyMARL's and EPyMARL's episode runner, LAN 5.1; more copies use EPyMARL's parallel runner), CPU;
- an iteration = one round of `n_envs` episodes into the replay buffer, then one gradient step on a
  batch of 32 episodes sampled from it (buffer 5000 episodes): EPyMARL's run_sequential loop;
  coopbench updates_per_episode 1;
- agents: parameter sharing, obs + one-hot agent id + one-hot last action -> fc 64 (ReLU) -> GRU 64 ->
  Q per action (EPyMARL's RNNAgent with use_rnn True; its qmix.yaml says False, an MLP: overridden);
  QMIX mixer with embed 32 and 2-layer hypernetworks of width 64, state = concatenated observations;
- Adam (EPyMARL's QLearner hard-codes it; coopbench optimizer "adam") with lr 5e-4, gradient norm
  clipped at 10, gamma 0.99, double Q, one-step targets, hard target updates every 200 gradient steps,
  epsilon 1.0 -> 0.05 linearly over 50,000 env steps; no reward standardisation (EPyMARL's qmix.yaml
  turns it on; coopbench has none).

What cannot be made identical (none of it changes the work by much): RWARE signals its 500-step
limit as a termination and EPyMARL stores it as one (no bootstrap on the last step) while coopbench
stores a truncation; EPyMARL steps its single env in-process (episode runner), and so does coopbench's
RWARE adapter for one copy (more copies run in worker processes, environments/adapters/process_pool.py,
one per core up to n_envs; `--coopbench-env-workers N` sets their number); EPyMARL unrolls the agent
network step by step over the batch in Python (as PyMARL does), coopbench with torch's GRU loop
(algorithms/blocks/q_agents.py).

What each timer covers. coopbench: collection = the episode collector (`EpisodicQLearning.collect`:
acting, the env, episode storage and buffer insert), training = the rest of `QMIX.train_iteration`
(sampling and the gradient step with its target update), total = the whole `train_iteration`.
EPyMARL (benchmarks/epymarl_side.py): its own `run_sequential`, timed from one training
`runner.run` to the next: collection = `runner.run` (acting, env, EpisodeBatch), training = buffer
insert, sampling, `QLearner.train`, total = both. Collection and training thus split the buffer insert
differently; the totals compare the same work. Rates are env steps / second, summed over copies (500
per episode), over the timed iterations; `per CPU s` divides by the CPU time of the process and its
children (env workers), which is less sensitive to other processes on a shared machine.

Each repeat builds both sides afresh with seed `--seed + repeat` and runs `--warmup` untimed
iterations (at least 32 / n_envs: before the buffer holds 32 episodes neither side trains) and
`--iterations` timed ones; EPyMARL runs in a subprocess of its own venv, coopbench in a subprocess of
this venv (`--side coopbench`, so neither side runs in a process warmed by the other), one after the
other, the order alternating between repeats so that the shared machine's load hits both alike.
Reported: min / median / max over repeats of each side's env steps/s, the per-repeat ratio
coopbench / EPyMARL, the same on CPU time, torch threads (one each, `--threads`) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from side_by_side import rates, report, side_result, single_thread_env  # noqa: E402, I001 (benchmarks/)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_EPYMARL_VENV = REPO / "build" / "bench-venvs" / "epymarl"
SIDE_SCRIPT = REPO / "benchmarks" / "epymarl_side.py"
ENV = "rware/tiny-2ag-hard"

SETTINGS = {
    "n_envs": 1,
    "buffer_episodes": 5000,
    "batch_episodes": 32,
    "target_update_interval": 200,
    "epsilon_start": 1.0,
    "epsilon_finish": 0.05,
    "epsilon_anneal_steps": 50000,
    "lr": 5e-4,
    "gamma": 0.99,
    "max_grad_norm": 10.0,
    "double_q": True,
    "hidden_size": 64,  # fc 64 -> GRU 64
    "agent_id_input": True,
    "last_action_input": True,
    "mixing_embed_dim": 32,
    "hypernet_layers": 2,
    "hypernet_embed": 64,
}


def task_settings() -> dict:
    """The task exactly as coopbench's config file defines it, and the rware id + kwargs that build it."""
    from coopbench.config import load_env_file
    from environments.adapters.rware_adapter import RwareParams

    params = RwareParams(**load_env_file(ENV).params)
    return {"env_id": params.env_id(), "env_kwargs": params.overrides(), "max_steps": params.max_steps,
            "env_params": params.model_dump()}


def coopbench_hparams(s: dict) -> dict:
    """coopbench's qmix config (config/algorithms/qmix.yaml and what it inherits), then the compared settings."""
    from coopbench.config import load_algo_file

    return {**load_algo_file("qmix").hparams,
            "n_envs": s["n_envs"], "buffer_episodes": s["buffer_episodes"], "batch_episodes": s["batch_episodes"],
            "updates_per_episode": 1, "target_update_interval": s["target_update_interval"],
            "target_update_tau": None, "epsilon_start": s["epsilon_start"], "epsilon_finish": s["epsilon_finish"],
            "epsilon_anneal_steps": s["epsilon_anneal_steps"], "gamma": s["gamma"], "td_lambda": 0.0,
            "double_q": s["double_q"], "optimizer": "adam", "lr": s["lr"], "max_grad_norm": s["max_grad_norm"],
            "hidden_sizes": [s["hidden_size"]], "activation": "relu", "recurrent": True,
            "rnn_hidden_size": s["hidden_size"], "share_parameters": True, "agent_id_input": s["agent_id_input"],
            "last_action_input": s["last_action_input"], "mixing_embed_dim": s["mixing_embed_dim"],
            "hypernet_layers": s["hypernet_layers"], "hypernet_embed": s["hypernet_embed"]}


def tree_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process and all its live descendants (Linux /proc)."""
    pid = os.getpid() if pid is None else pid
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += sum(tree_cpu_seconds(int(c)) for c in (task / "children").read_text().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


# --- the coopbench side (a subprocess of this venv: `--side coopbench SETTINGS_JSON`) -----------------------

def plain(value):
    """A counter as JSON: the learner keeps some per seed (`[K]` tensors, one seed here)."""
    return value.tolist() if hasattr(value, "tolist") else value


def run_coopbench_here(s: dict) -> dict:
    import torch

    from algorithms.registry import ALGORITHMS
    from coopbench.run import seed_everything
    from environments.registry import make

    torch.set_num_threads(s["threads"])
    seed_everything(s["seed"])
    algo_cls = ALGORITHMS.get("qmix").load()
    hparams = algo_cls.Config(**coopbench_hparams(s))
    env = make(ENV, n_envs=hparams.n_envs, seed=s["seed"], device="cpu", **s["env_params"])
    algorithm = algo_cls(env.spec, hparams, torch.device("cpu"))
    learner = algorithm.learner
    collect = learner.collect
    collect_time = [0.0]

    def timed_collect(*args, **kwargs):  # the same call, with a stopwatch around it
        t0 = time.perf_counter()
        out = collect(*args, **kwargs)
        collect_time[0] = time.perf_counter() - t0
        return out

    learner.collect = timed_collect
    timestep = env.reset()
    records = []
    for _ in range(s["warmup"] + s["iterations"]):
        cpu0, t0 = tree_cpu_seconds(), time.perf_counter()
        result = algorithm.train_iteration(env, timestep)
        t2, cpu2 = time.perf_counter(), tree_cpu_seconds()
        timestep = result.timestep
        records.append({"collection_time": collect_time[0], "training_time": t2 - t0 - collect_time[0],
                        "iteration_time": t2 - t0, "cpu_time": cpu2 - cpu0, "frames": result.env_steps,
                        "trained": bool(result.losses)})
    first_training = next((i for i, r in enumerate(records) if r["trained"]), len(records))
    if s["warmup"] <= first_training:
        raise SystemExit(f"warmup {s['warmup']} must exceed {first_training}: no training before then")
    workers = getattr(getattr(env, "pool", None), "n_workers", None)
    env.close()
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"iterations": records[s["warmup"]:], "warmup": records[:s["warmup"]], "threads": torch.get_num_threads(),
            "resolved": {"hparams": hparams.model_dump(), "obs_dim": env.spec.obs_dim, "state_dim": env.spec.state_dim,
                         "n_actions": env.spec.n_actions, "env_workers": workers, "updates": plain(learner.updates),
                         "env_steps": plain(learner.env_steps), "agent_params": n_params(learner.agents),
                         "mixer_params": n_params(algorithm.mixer)}}


# --- the sides as subprocesses ----------------------------------------------------------------------------

INSTALL = "bash benchmarks/setup_epymarl_venv.sh EPYMARL_GIT"




def check_epymarl(venv: Path) -> None:
    """Stop with what is missing and how to get it, before anything is timed."""
    python, src = venv / "bin" / "python", venv / "epymarl" / "src"
    if not python.exists() or not (src / "run.py").exists():
        raise SystemExit(f"no EPyMARL venv at {venv} (needs bin/python and epymarl/src/run.py).\n"
                         f"  install it with `{INSTALL}` (EPYMARL_GIT: a clone of github.com/uoe-agents/epymarl);\n"
                         f"  `--only coopbench` measures coopbench's side alone")
    probe = ("import importlib, sys\nsys.path.insert(0, sys.argv[1])\nmissing = []\n"
             "for m in ('torch', 'numpy', 'yaml', 'gymnasium', 'rware', 'run', 'runners', 'learners', 'envs'):\n"
             "    try:\n        importlib.import_module(m)\n"
             "    except Exception as e:\n        missing.append(f'{m} ({type(e).__name__}: {e})')\n"
             "print('; '.join(missing))")
    out = subprocess.run([str(python), "-c", probe, str(src)], capture_output=True, text=True, cwd=src,
                         env=single_thread_env())
    missing = out.stdout.strip() or (out.stderr.strip().splitlines() or [""])[-1]
    if out.returncode or missing:
        raise SystemExit(f"{python} cannot import: {missing}\n  (re)install with `{INSTALL}`; "
                         f"`--only coopbench` measures coopbench's side alone")


def run_side(side: str, s: dict, venv: Path, env_workers: int | None = None) -> dict:
    env = single_thread_env()
    if side == "epymarl":
        side_settings = {**s, "epymarl_src": str(venv / "epymarl" / "src")}
        cmd = [str(venv / "bin" / "python"), str(SIDE_SCRIPT), json.dumps(side_settings)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--side", "coopbench", json.dumps(s)]
        if env_workers is not None:
            env["COOPBENCH_ENV_WORKERS"] = str(env_workers)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    return side_result(proc, side)




def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--side" and sys.argv[2] == "coopbench":
        print(json.dumps(run_coopbench_here(json.loads(sys.argv[3]))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=16, help="timed iterations (rounds of n_envs episodes)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations before them (default: 32 / n_envs + 2, two past the first update)")
    parser.add_argument("--n-envs", type=int, default=SETTINGS["n_envs"], help="environment copies, both sides")
    parser.add_argument("--batch-episodes", type=int, default=SETTINGS["batch_episodes"])
    parser.add_argument("--buffer-episodes", type=int, default=SETTINGS["buffer_episodes"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--coopbench-env-workers", type=int, default=None,
                        help="coopbench's RWARE worker processes ($COOPBENCH_ENV_WORKERS; 0: in-process; "
                             "default: the adapter's own, in-process for one copy, else one per core up to n_envs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["both", "coopbench", "epymarl"], default="both")
    parser.add_argument("--epymarl-venv", type=Path, default=DEFAULT_EPYMARL_VENV)
    parser.add_argument("--target", type=float, default=2.0, help="required coopbench / EPyMARL total ratio")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    sides = ["coopbench", "epymarl"] if args.only == "both" else [args.only]
    if "epymarl" in sides:
        check_epymarl(args.epymarl_venv)
    fill = -(-args.batch_episodes // args.n_envs)  # iterations before the buffer holds a batch
    warmup = fill + 2 if args.warmup is None else args.warmup
    base = {**task_settings(), **SETTINGS, "n_envs": args.n_envs, "batch_episodes": args.batch_episodes,
            "buffer_episodes": args.buffer_episodes, "threads": args.threads, "warmup": warmup,
            "iterations": args.iterations}
    print(f"QMIX on {ENV} ({base['env_id']}, {base['max_steps']} steps): {base['n_envs']} env copies, buffer "
          f"{base['buffer_episodes']} episodes, batch {base['batch_episodes']} episodes, one update per round; "
          f"{warmup} warm-up + {args.iterations} timed iterations x {args.repeats} repeats; torch threads "
          f"{args.threads}", flush=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(args.repeats):
        s = {**base, "seed": args.seed + r}
        for side in sides if r % 2 == 0 else sides[::-1]:
            run = run_side(side, s, args.epymarl_venv, args.coopbench_env_workers)
            runs[side].append(run)
            got = rates(run)
            print(f"repeat {r} {side:9s} env steps/s: collection {got['collection']:7,.0f}  training "
                  f"{got['training']:7,.0f}  total {got['total']:7,.0f}  (per CPU s {got['total_per_cpu_s']:,.0f}; "
                  f"threads {run['threads']}; load {os.getloadavg()[0]:.2f})", flush=True)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()

    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "loadavg_before": load_before, "loadavg_after": load_after},
        "settings": {**base, "coopbench_env_workers": args.coopbench_env_workers},
        "repeats": args.repeats, "wall_s": round(wall, 1),
        "threads": {side: sorted({run["threads"] for run in runs[side]}) for side in sides},
        "resolved": {side: runs[side][0]["resolved"] for side in sides},
        "raw": {side: [{"iterations": run["iterations"], "warmup": run["warmup"]} for run in runs[side]]
                for side in sides},
    }
    if "epymarl" in runs:
        results["epymarl_versions"] = runs["epymarl"][0]["versions"]
    results.update(report(runs, "epymarl", "EPyMARL", "env steps", args.target))
    print(f"threads: {results['threads']}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}); {wall:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
