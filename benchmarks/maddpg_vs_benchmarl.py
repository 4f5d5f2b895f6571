"""coopbench's MADDPG against BenchMARL's MADDPG on VMAS navigation, side by side in one run (issue 15).

    bash benchmarks/setup_benchmarl_venv.sh      # once: BenchMARL in its own venv (build/bench-venvs/benchmarl)
    .venv/bin/python benchmarks/maddpg_vs_benchmarl.py [--repeats 3] [--iterations 2] [--json out.json]
    .venv/bin/python benchmarks/maddpg_vs_benchmarl.py --only coopbench   # without the BenchMARL venv

Both train MADDPG with the same settings (`SETTINGS`; every value is passed to both sides explicitly):

- task: VMAS navigation as config/environments/vmas/navigation.yaml defines it (3 agents, continuous actions,
  100 steps), 10 vectorized copies, CPU;
- 6000 frames (env steps summed over copies) per iteration: coopbench n_envs 10 x train_interval 600;
  BenchMARL off_policy_n_envs_per_worker 10, off_policy_collected_frames_per_batch 6000;
- 1000 gradient steps per iteration on batches of 128 transitions from a 1M replay (BenchMARL's defaults
  off_policy_n_optimizer_steps, off_policy_train_batch_size, off_policy_memory_size; coopbench
  update_per_train 1000/600, batch_size, buffer_size), no random warm-up frames (BenchMARL's default 0),
  one-step targets; each gradient step is one critic and one actor Adam step and a Polyak update (tau 0.005)
  of the target critic on both sides (and of coopbench's target actor, below);
- networks: one actor shared by the agents (no agent id), 2 x 256 tanh MLPs (BenchMARL's default mlp) for the
  actor and the centralized critic on all observations (VMAS has no global state: coopbench's state is their
  concatenation; BenchMARL's critic, `share_param_critic`, is one network on every agent's observation and action
  with one output, expanded to the agents) and all actions; lr 5e-5 for both (BenchMARL's default lr), gamma 0.99;
- the actor loss: BenchMARL's (torchrl `DDPGLoss.loss_actor`): one critic pass on every agent's current-policy
  action, -Q(s, mu_1(o_1), .., mu_N(o_N)). coopbench's default is Lowe et al. eq. 6 (HARL): each agent's term keeps
  the other agents' sampled actions, N critic rows per sample; the benchmark sets coopbench's
  `actor_others_actions: current` (algorithms/maddpg.py) so both sides compute the same update;
- exploration: Gaussian noise of std 0.1 on the [-1, 1] box, constant (BenchMARL's `exploration_eps_init` =
  `exploration_eps_end` = 0.1 instead of its 0.8 -> 0.01 annealing), clipped to the box; no gradient clipping
  (BenchMARL `clip_grad_val: null`; it still computes the gradient norms it logs); Adam eps 1e-8 on both.

What is still not identical: BenchMARL's `Maddpg` has no target actor (torchrl `DDPGLoss` with `delay_actor`
False: the target actions come from the current actor; coopbench's target actor is one more Polyak update per step,
the actor's size); BenchMARL computes the actor loss before the critic's Adam step (one forward for both
losses), coopbench after it (Alg. 1: the updated critic); BenchMARL regresses each agent's critic output on that
agent's reward (navigation's `shared_rew: false`), coopbench its one value on the team reward (their mean): the
same critic work, a different target.

Timers. coopbench: collection = `OffPolicyLearner.collect` (actors, noise, env, replay inserts), training = the
1000 `update`s with their sampling, total = both. BenchMARL: its own `timers/collection_time`,
`timers/training_time` (replay extend, 1000 x sample + loss + Adam + target update) and
`timers/iteration_time` (evaluation, checkpoints and loggers off). Rates are frames/s.

Each repeat builds both sides afresh with seed `--seed + repeat`, one untimed `--warmup` iteration, then
`--iterations` timed ones; the BenchMARL side runs in a subprocess of its venv (this file with `--benchmarl-side`,
which imports nothing of coopbench), coopbench in this process; the order alternates between repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from side_by_side import compare_with_benchmarl, side_result, single_thread_env, vmas_task_settings  # noqa: E402, I001 (benchmarks/)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BENCHMARL_PYTHON = REPO / "build" / "bench-venvs" / "benchmarl" / "bin" / "python"
ENV = "vmas/navigation"

SETTINGS = {
    "n_envs": 10,
    "frames_per_batch": 6000,
    "optimizer_steps": 1000,
    "batch_size": 128,
    "memory_size": 1_000_000,
    "hidden_sizes": [256, 256],
    "activation": "tanh",
    "lr": 5e-5,
    "gamma": 0.99,
    "polyak": 0.005,
    "expl_noise": 0.1,
    "adam_eps": 1e-8,
}


def coopbench_hparams(s: dict) -> dict:
    if s["frames_per_batch"] % s["n_envs"]:
        raise SystemExit("frames per batch must be a multiple of the copies")
    interval = s["frames_per_batch"] // s["n_envs"]
    return {"n_envs": s["n_envs"], "train_interval": interval, "update_per_train": s["optimizer_steps"] / interval,
            "batch_size": s["batch_size"], "buffer_size": s["memory_size"], "warmup_steps": 0, "n_step": 1,
            "hidden_sizes": list(s["hidden_sizes"]), "activation": s["activation"], "lr": s["lr"],
            "critic_lr": s["lr"], "gamma": s["gamma"], "polyak": s["polyak"], "share_parameters": True,
            "agent_id_input": False, "expl_noise": s["expl_noise"], "actor_others_actions": "current"}


# --- the coopbench side (this process) ---------------------------------------------------------------

def run_coopbench(s: dict) -> dict:
    import torch

    from algorithms.registry import ALGORITHMS
    from coopbench.run import seed_everything
    from environments.registry import make

    torch.set_num_threads(s["threads"])
    seed_everything(s["seed"])
    algo_cls = ALGORITHMS.get("maddpg").load()
    hparams = algo_cls.Config(**coopbench_hparams(s))
    env = make(ENV, n_envs=hparams.n_envs, seed=s["seed"], device="cpu", n_agents=s["n_agents"],
               max_steps=s["max_steps"], shared_rew=s["shared_rew"], collisions=s["collisions"],
               continuous_actions=s["continuous_actions"])
    algorithm = algo_cls(env.spec, hparams, torch.device("cpu"))
    timestep = env.reset()
    records = []
    for _ in range(s["warmup"] + s["iterations"]):
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = algorithm.learner.collect(env, timestep, algorithm.policy)
        timestep = result.timestep
        t1 = time.perf_counter()
        for _ in range(hparams.updates_per_iteration):  # what OffPolicyContract.train_iteration does after the warm-up
            algorithm.update(algorithm.learner.sample())
            algorithm.learner.updates += 1
        t2, cpu2 = time.perf_counter(), time.process_time()
        records.append({"collection_time": t1 - t0, "training_time": t2 - t1, "iteration_time": t2 - t0,
                        "cpu_time": cpu2 - cpu0, "frames": algorithm.steps_per_iteration})
    env.close()
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"iterations": records[s["warmup"]:], "warmup": records[:s["warmup"]], "threads": torch.get_num_threads(),
            "resolved": {"hparams": hparams.model_dump(), "obs_dim": env.spec.obs_dim,
                         "action_dim": env.spec.action_dim,
                         "gradient_steps_per_iteration": hparams.updates_per_iteration,
                         "actor_params": n_params(algorithm.actor), "critic_params": n_params(algorithm.critic)}}


# --- the BenchMARL side (run by the BenchMARL venv's python: `this file --benchmarl-side JSON`) -----------

def run_benchmarl_side(s: dict) -> dict:
    """One timed BenchMARL MADDPG run; BenchMARL's `Experiment._collection_loop` timers, captured from its logger."""
    import torch

    torch.set_num_threads(s["threads"])
    warnings.filterwarnings("ignore")
    from importlib.metadata import version

    from benchmarl.algorithms import MaddpgConfig
    from benchmarl.environments import VmasTask
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    task = VmasTask.NAVIGATION.get_task()
    task.config.update({"max_steps": s["max_steps"], "n_agents": s["n_agents"], "collisions": s["collisions"],
                        "shared_rew": s["shared_rew"], "agents_with_same_goal": 1, "split_goals": False,
                        "observe_all_goals": False, "lidar_range": 0.35, "agent_radius": 0.1})
    algo = MaddpgConfig.get_from_yaml()
    algo.share_param_critic = True
    algo.loss_function = "l2"
    algo.delay_value = True
    model = MlpConfig(num_cells=list(s["hidden_sizes"]), layer_class=torch.nn.Linear,
                      activation_class={"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[s["activation"]])
    cfg = ExperimentConfig.get_from_yaml()
    cfg.sampling_device = cfg.train_device = cfg.buffer_device = "cpu"
    cfg.share_policy_params = True
    cfg.prefer_continuous_actions = s["continuous_actions"]
    cfg.collect_with_grad = False
    cfg.parallel_collection = False
    cfg.gamma, cfg.lr = s["gamma"], s["lr"]
    cfg.soft_target_update, cfg.polyak_tau = True, s["polyak"]
    # coopbench's constant exploration noise (std expl_noise x the half box, VMAS navigation's box is [-1, 1]),
    # no gradient clipping and torch's Adam eps, as coopbench (HARL) has them.
    cfg.exploration_eps_init = cfg.exploration_eps_end = s["expl_noise"]
    cfg.clip_grad_val = None
    cfg.adam_eps = s["adam_eps"]
    cfg.max_n_iters, cfg.max_n_frames = s["warmup"] + s["iterations"], None
    cfg.exploration_anneal_frames = s["frames_per_batch"] * (s["warmup"] + s["iterations"])
    cfg.off_policy_collected_frames_per_batch = s["frames_per_batch"]
    cfg.off_policy_n_envs_per_worker = s["n_envs"]
    cfg.off_policy_n_optimizer_steps = s["optimizer_steps"]
    cfg.off_policy_train_batch_size = s["batch_size"]
    cfg.off_policy_memory_size = s["memory_size"]
    cfg.off_policy_init_random_frames = 0
    cfg.evaluation, cfg.render, cfg.loggers, cfg.create_json = False, False, [], False
    cfg.save_folder = tempfile.mkdtemp(prefix="benchmarl-maddpg-")
    cfg.checkpoint_interval, cfg.checkpoint_at_end = 0, False
    experiment = Experiment(task=task, algorithm_config=algo, model_config=model, critic_model_config=model,
                            seed=s["seed"], config=cfg)
    timers: list[dict] = []
    log = experiment.logger.log
    cpu_mark = [time.process_time()]

    def capture(dict_to_log, step=None):
        if "timers/collection_time" in dict_to_log:  # the end-of-iteration record
            cpu = time.process_time()
            timers.append({k.split("/")[1]: float(v) for k, v in dict_to_log.items() if k.startswith("timers/")}
                          | {"frames": s["frames_per_batch"], "cpu_time": cpu - cpu_mark[0]})
            cpu_mark[0] = cpu
        return log(dict_to_log, step=step)

    experiment.logger.log = capture
    experiment.run()
    return {"iterations": timers[s["warmup"]:], "warmup": timers[:s["warmup"]], "threads": torch.get_num_threads(),
            "versions": {p: version(p) for p in ("benchmarl", "torchrl", "tensordict", "torch", "vmas")},
            "resolved": {"task": dict(task.config), "gradient_steps_per_iteration": cfg.off_policy_n_optimizer_steps}}


INSTALL = "bash benchmarks/setup_benchmarl_venv.sh"


def run_benchmarl(python: Path, s: dict) -> dict:
    if not python.exists():
        raise SystemExit(f"no BenchMARL venv: {python} does not exist; install it with `{INSTALL}` "
                         "(or --benchmarl-python); `--only coopbench` measures coopbench's side alone")
    proc = subprocess.run([str(python), str(Path(__file__).resolve()), "--benchmarl-side", json.dumps(s)],
                          capture_output=True, text=True, env=single_thread_env(TQDM_DISABLE="1"),
                          cwd=REPO / "benchmarks")
    return side_result(proc, "BenchMARL")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--benchmarl-side":
        os.environ.setdefault("TQDM_DISABLE", "1")
        print(json.dumps(run_benchmarl_side(json.loads(sys.argv[2]))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per repeat and side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations before them")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["both", "coopbench", "benchmarl"], default="both")
    parser.add_argument("--benchmarl-python", type=Path, default=DEFAULT_BENCHMARL_PYTHON)
    parser.add_argument("--target", type=float, default=2.0, help="required coopbench / BenchMARL total ratio")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    sides = ["coopbench", "benchmarl"] if args.only == "both" else [args.only]
    base = {**vmas_task_settings(ENV), **SETTINGS, "threads": args.threads, "warmup": args.warmup,
            "iterations": args.iterations}
    print(f"MADDPG on {ENV}: {base['n_envs']} copies, {base['frames_per_batch']} frames and "
          f"{base['optimizer_steps']} gradient steps of {base['batch_size']} per iteration; {args.warmup} warm-up + "
          f"{args.iterations} timed iterations x {args.repeats} repeats; torch threads {args.threads}", flush=True)
    compare_with_benchmarl(sides, base, args.repeats, args.seed, args.target,
                           lambda side, s: run_coopbench(s) if side == "coopbench" else
                           run_benchmarl(args.benchmarl_python, s), args.json)


if __name__ == "__main__":
    sys.exit(main())
