"""EPyMARL's half of benchmarks/qmix_vs_epymarl.py: one timed QMIX run on RWARE.

Runs in the EPyMARL venv (`bash benchmarks/setup_epymarl_venv.sh EPYMARL_GIT`), never in coopbench's,
and imports nothing from coopbench. The driver starts it once per repeat:

    build/bench-venvs/epymarl/bin/python benchmarks/epymarl_side.py '<settings JSON>'

and reads one JSON object from its last stdout line.

What runs is EPyMARL's own training loop, `run.run_sequential` (src/run.py), on a configuration built
the way src/main.py builds it (default.yaml, then envs/gymma.yaml, then algs/qmix.yaml, then the
`with key=value` overrides: here the settings below) and seeded as main.py seeds it (numpy, torch,
env_args.seed); main.py's sacred experiment and file observer are skipped (they only record). The
only instrumentation is a subclass of the configured runner ("episode" for one environment,
"parallel" for several) put in EPyMARL's runner registry, which notes the wall clock and the CPU
time when each `runner.run(test_mode=False)` starts and returns and when `close_env` is called
after the loop. One iteration of run_sequential (collect `batch_size_run` episodes, insert them into
the replay buffer, sample `batch_size` episodes and take one `QLearner.train` step) is therefore the
span from one training `run` call to the next (the last one ends at `close_env`):
- collection: inside `runner.run` (the agents' forward pass every step, the env, EpisodeBatch writes);
- training: the rest (buffer insert, sample, the Q-learning step, target updates, EPyMARL's logging);
- total: both.
Evaluation episodes (`runner.run(test_mode=True)`) run only in the first iteration (test_interval
is set past the run's end), which is a warm-up one. `cpu_time` counts this process and its children
(the parallel runner's env workers) from /proc, so it is comparable when envs run in other processes.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path


def tree_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process and all its live descendants (Linux /proc)."""
    pid = os.getpid() if pid is None else pid
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            total += sum(tree_cpu_seconds(int(c)) for c in children)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def epymarl_config(s: dict) -> dict:
    """default.yaml <- envs/gymma.yaml <- algs/qmix.yaml <- overrides, as src/main.py composes them."""
    from collections.abc import Mapping

    import yaml

    def recursive_dict_update(d, u):  # src/main.py's (importing main.py would start its sacred experiment)
        for k, v in u.items():
            d[k] = recursive_dict_update(d.get(k, {}), v) if isinstance(v, Mapping) else v
        return d

    config_dir = Path(s["epymarl_src"]) / "config"
    load = lambda p: yaml.load((config_dir / p).read_text(), Loader=yaml.FullLoader)  # noqa: E731
    config = load("default.yaml")
    config = recursive_dict_update(config, load("envs/gymma.yaml"))
    config = recursive_dict_update(config, load("algs/qmix.yaml"))
    n_envs = s["n_envs"]
    total_episodes = (s["warmup"] + s["iterations"]) * n_envs
    overrides = {
        "env_args": {"key": f"rware:{s['env_id']}", "time_limit": s["max_steps"], **s["env_kwargs"]},
        "seed": s["seed"],
        "use_cuda": False,
        "runner": "episode" if n_envs == 1 else "parallel",
        "batch_size_run": n_envs,
        "common_reward": True,
        "reward_scalarisation": "sum",  # coopbench's team reward: the robots' rewards summed
        # the run: exactly `total_episodes` episodes of max_steps (RWARE episodes never end earlier)
        "t_max": total_episodes * s["max_steps"] - 1,
        "test_nepisode": n_envs,  # one round of evaluation episodes, in the first (warm-up) iteration
        "test_interval": 10**12,
        "save_model": False,
        "use_tensorboard": False,
        "use_wandb": False,
        # the compared settings (every one set, none left to a default)
        "buffer_size": s["buffer_episodes"],
        "batch_size": s["batch_episodes"],
        "target_update_interval_or_tau": s["target_update_interval"],
        "epsilon_start": s["epsilon_start"],
        "epsilon_finish": s["epsilon_finish"],
        "epsilon_anneal_time": s["epsilon_anneal_steps"],
        "lr": s["lr"],
        "gamma": s["gamma"],
        "grad_norm_clip": s["max_grad_norm"],
        "double_q": s["double_q"],
        "agent": "rnn",
        "use_rnn": True,  # EPyMARL's qmix.yaml says False (an MLP agent); the comparison uses PyMARL's GRU
        "hidden_dim": s["hidden_size"],
        "obs_agent_id": s["agent_id_input"],
        "obs_last_action": s["last_action_input"],
        "mixer": "qmix",
        "mixing_embed_dim": s["mixing_embed_dim"],
        "hypernet_layers": s["hypernet_layers"],
        "hypernet_embed": s["hypernet_embed"],
        "standardise_rewards": False,  # qmix.yaml: True; coopbench has no reward standardisation
        "standardise_returns": False,
    }
    return recursive_dict_update(config, overrides)


def run(s: dict) -> dict:
    sys.path.insert(0, s["epymarl_src"])
    os.chdir(s["epymarl_src"])  # EPyMARL's paths (results/, SC2PATH) are relative to where it runs
    warnings.filterwarnings("ignore")
    import logging
    from importlib.metadata import version
    from types import SimpleNamespace as SN

    import numpy as np
    import torch as th
    from run import args_sanity_check, run_sequential
    from runners import REGISTRY as r_REGISTRY
    from utils.logging import Logger, get_logger

    th.set_num_threads(s["threads"])  # main.py sets 1
    config = epymarl_config(s)
    np.random.seed(config["seed"])  # main.py's my_main
    th.manual_seed(config["seed"])
    config["env_args"]["seed"] = config["seed"]

    console = get_logger()
    console.setLevel(logging.WARNING)  # EPyMARL's INFO lines go to stderr; keep them out of the timing
    config = args_sanity_check(config, console)
    args = SN(**config)
    args.device = "cpu"
    logger = Logger(console)

    marks: list[tuple[str, float, float]] = []  # (event, wall, cpu)
    base = r_REGISTRY[args.runner]
    learner_box: dict = {}

    class TimedRunner(base):
        def run(self, test_mode=False):
            if not test_mode:
                marks.append(("start", time.perf_counter(), tree_cpu_seconds()))
            batch = super().run(test_mode=test_mode)
            if not test_mode:
                marks.append(("collected", time.perf_counter(), tree_cpu_seconds()))
                learner_box["t_env"] = self.t_env
            return batch

        def setup(self, scheme, groups, preprocess, mac):
            learner_box["mac"] = mac
            return super().setup(scheme, groups, preprocess, mac)

        def close_env(self):
            marks.append(("end", time.perf_counter(), tree_cpu_seconds()))
            return super().close_env()

    r_REGISTRY[args.runner] = TimedRunner
    start = time.perf_counter()
    run_sequential(args=args, logger=logger)
    wall = time.perf_counter() - start

    starts = [m for m in marks if m[0] == "start"]
    collected = [m for m in marks if m[0] == "collected"]
    ends = starts[1:] + [m for m in marks if m[0] == "end"]
    frames = args.batch_size_run * s["max_steps"]
    records = [{"collection_time": c[1] - a[1], "training_time": e[1] - c[1], "iteration_time": e[1] - a[1],
                "cpu_time": e[2] - a[2], "frames": frames}
               for a, c, e in zip(starts, collected, ends, strict=True)]
    # the iterations that trained: the first ones only fill the buffer up to batch_size episodes
    first_training = -(-args.batch_size // args.batch_size_run) - 1
    if s["warmup"] <= first_training:
        raise SystemExit(f"warmup {s['warmup']} must exceed {first_training}: no training before then")
    from modules.mixers.qmix import QMixer

    mac = learner_box["mac"]
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    commit_file = Path(sys.prefix) / "epymarl-commit"
    return {
        "iterations": records[s["warmup"]:],
        "warmup": records[:s["warmup"]],
        "run_wall_s": wall,
        "threads": th.get_num_threads(),
        "versions": {"epymarl": commit_file.read_text().strip() if commit_file.exists() else "unknown",
                     **{p: version(p) for p in ("torch", "rware", "gymnasium", "numpy")}},
        "resolved": {
            "runner": args.runner, "batch_size_run": args.batch_size_run, "buffer_size": args.buffer_size,
            "batch_size": args.batch_size, "target_update_interval_or_tau": args.target_update_interval_or_tau,
            "learner": args.learner, "optimizer": "Adam (q_learner)", "double_q": args.double_q,
            "use_rnn": args.use_rnn, "hidden_dim": args.hidden_dim, "obs_agent_id": args.obs_agent_id,
            "obs_last_action": args.obs_last_action, "n_agents": args.n_agents, "n_actions": args.n_actions,
            "state_shape": args.state_shape, "env_args": config["env_args"], "t_env": learner_box.get("t_env"),
            "agent_params": n_params(mac.agent), "mixer_params": n_params(QMixer(args)),
            "standardise_rewards": args.standardise_rewards,
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
