"""BenchMARL's half of benchmarks/mappo_vs_benchmarl.py: one timed MAPPO run on VMAS navigation.

Runs in the BenchMARL venv (`bash benchmarks/setup_benchmarl_venv.sh`), never in coopbench's, and
imports nothing from coopbench. The driver starts it once per repeat:

    build/bench-venvs/benchmarl/bin/python benchmarks/benchmarl_side.py '<settings JSON>'

and reads one JSON object from its last stdout line: per-iteration collection, training and
iteration seconds as BenchMARL's own `Experiment._collection_loop` measures them (its
`timers/collection_time`, `timers/training_time`, `timers/iteration_time`, captured from
`Experiment.logger.log`), plus the versions, the thread count and the resolved configuration.

What BenchMARL's timers cover, per iteration (benchmarl/experiment/experiment.py):
- collection: `next(collector)`: a torchrl `SyncDataCollector` stepping the VMAS env (10 copies)
  for 600 steps with the policy (no critic: values are computed in training);
- training: `Mappo.process_batch` (GAE over the batch, one critic pass over it), filling the
  on-policy replay buffer, `on_policy_n_minibatch_iters` passes of `frames / minibatch_size`
  minibatches (sampled without replacement) through `ClipPPOLoss`, one Adam per loss, and
  `collector.update_policy_weights_()`;
- iteration: the two above plus `logger.log_collection` (episode statistics of the batch).
`cpu_time` is this process's CPU time from one iteration's end record to the next (the first from
the start of `Experiment.run`): a rate on it is less sensitive to other load on a shared machine.
Evaluation, checkpointing and every logger are off, so no file output or rendering is timed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings


def run(settings: dict) -> dict:
    import torch

    torch.set_num_threads(settings["threads"])
    warnings.filterwarnings("ignore")
    from importlib.metadata import version

    from benchmarl.algorithms import MappoConfig
    from benchmarl.environments import VmasTask
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    s = settings
    task = VmasTask.NAVIGATION.get_task()  # the packaged defaults, every value then set explicitly
    task.config.update({
        "max_steps": s["max_steps"], "n_agents": s["n_agents"], "collisions": s["collisions"],
        "shared_rew": s["shared_rew"], "agents_with_same_goal": 1, "split_goals": False,
        "observe_all_goals": False, "lidar_range": 0.35, "agent_radius": 0.1,
    })

    algo = MappoConfig.get_from_yaml()
    algo.share_param_critic = True
    algo.clip_epsilon = s["clip_eps"]
    algo.entropy_coef = s["entropy_coef"]
    algo.critic_coef = 1.0
    algo.loss_critic_type = "l2"
    algo.lmbda = s["gae_lambda"]
    algo.scale_mapping = "biased_softplus_1.0"
    algo.use_tanh_normal = True
    algo.minibatch_advantage = False

    model = MlpConfig(num_cells=list(s["hidden_sizes"]), layer_class=torch.nn.Linear,
                      activation_class={"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[s["activation"]])

    save_folder = tempfile.mkdtemp(prefix="benchmarl-bench-")
    cfg = ExperimentConfig.get_from_yaml()
    cfg.sampling_device = cfg.train_device = cfg.buffer_device = "cpu"
    cfg.share_policy_params = True
    cfg.prefer_continuous_actions = s["continuous_actions"]
    cfg.collect_with_grad = False
    cfg.parallel_collection = False
    cfg.gamma = s["gamma"]
    cfg.lr = s["lr"]
    cfg.clip_grad_norm = True
    cfg.clip_grad_val = s["max_grad_norm"]
    cfg.max_n_iters = s["warmup"] + s["iterations"]
    cfg.max_n_frames = None
    cfg.on_policy_collected_frames_per_batch = s["frames_per_batch"]
    cfg.on_policy_n_envs_per_worker = s["n_envs"]
    cfg.on_policy_n_minibatch_iters = s["epochs"]
    cfg.on_policy_minibatch_size = s["minibatch_size"]
    cfg.evaluation = False
    cfg.render = False
    cfg.loggers = []
    cfg.create_json = False
    cfg.save_folder = save_folder
    cfg.checkpoint_interval = 0
    cfg.checkpoint_at_end = False

    experiment = Experiment(task=task, algorithm_config=algo, model_config=model,
                            critic_model_config=model, seed=s["seed"], config=cfg)

    timers: list[dict] = []
    log = experiment.logger.log
    cpu_mark = [0.0]

    def capture(dict_to_log, step=None):
        if "timers/collection_time" in dict_to_log:  # the end-of-iteration record
            cpu = time.process_time()
            timers.append({k.split("/")[1]: float(v) for k, v in dict_to_log.items() if k.startswith("timers/")}
                          | {"frames": int(dict_to_log["counters/current_frames"]), "cpu_time": cpu - cpu_mark[0]})
            cpu_mark[0] = cpu
        return log(dict_to_log, step=step)

    experiment.logger.log = capture
    start = time.perf_counter()
    cpu_mark[0] = time.process_time()
    experiment.run()
    wall = time.perf_counter() - start

    loss = experiment.losses["agents"]
    n_params = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
    return {
        "iterations": timers[s["warmup"]:],
        "warmup": timers[:s["warmup"]],
        "run_wall_s": wall,
        "threads": torch.get_num_threads(),
        "versions": {p: version(p) for p in ("benchmarl", "torchrl", "tensordict", "torch", "vmas")},
        "resolved": {
            "task": dict(task.config),
            "gradient_steps_per_iteration": cfg.on_policy_n_minibatch_iters
            * -(-cfg.on_policy_collected_frames_per_batch // cfg.on_policy_minibatch_size),
            "actor_params": n_params(loss.actor_network_params.flatten_keys().values()),
            "critic_params": n_params(loss.critic_network_params.flatten_keys().values()),
            "obs_shape": list(experiment.observation_spec["agents", "observation"].shape),
            "action_shape": list(experiment.action_spec["agents", "action"].shape),
        },
    }


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
