"""coopbench's MAPPO against BenchMARL's MAPPO on VMAS navigation, side by side in one run.

    bash benchmarks/setup_benchmarl_venv.sh      # once: BenchMARL in its own venv (build/bench-venvs/benchmarl)
    .venv/bin/python benchmarks/mappo_vs_benchmarl.py [--repeats 3] [--iterations 3] [--json out.json]
    .venv/bin/python benchmarks/mappo_vs_benchmarl.py --only coopbench   # without the BenchMARL venv

Both train MAPPO with the same settings (`SETTINGS` below; every value is passed to both sides
explicitly, none is left to a default of either):

- task: VMAS navigation as config/environments/vmas/navigation.yaml defines it (3 agents,
  continuous actions, max_steps 100, shared_rew false, collisions true; BenchMARL's vmas/navigation
  defaults are the same and are set explicitly anyway), 10 vectorized copies, CPU;
- 6000 frames (environment steps summed over copies) per iteration: coopbench n_envs 10 x
  rollout_length 600; BenchMARL on_policy_n_envs_per_worker 10, on_policy_collected_frames_per_batch
  6000;
- optimisation, BenchMARL's MAPPO defaults: BenchMARL's `on_policy_n_minibatch_iters` (45) is the
  number of passes over the 6000 frames, each split into 6000 / on_policy_minibatch_size (400) = 15
  minibatches drawn without replacement (`Experiment._collection_loop`), i.e. 675 gradient steps per
  iteration. coopbench: ppo_epochs 45, num_minibatches 15 (minibatches of 400 frames). Each gradient
  step is one actor and one critic Adam step on both sides;
- networks: parameter sharing, 2 x 256 tanh MLPs (BenchMARL's default mlp) for the actor and the
  centralised critic; the actor outputs a mean and a state-dependent scale per action dimension
  (coopbench state_dependent_std, BenchMARL NormalParamExtractor); the critic sees the concatenated
  observations (VMAS has no global state); no agent-id inputs (BenchMARL appends none);
- lr 5e-5 (actor and critic), gamma 0.99, GAE lambda 0.9, clip 0.2, entropy coefficient 0, grad-norm
  clip 5, advantages not normalized (BenchMARL's MAPPO defaults).

What cannot be made identical (none of it changes the work by much): BenchMARL samples a TanhNormal
(and estimates its entropy from a sample), coopbench an unsquashed Gaussian clipped by the env;
BenchMARL's shared critic computes one value per state and expands it to the agents, coopbench's
computes it per agent (3x the critic rows: work against coopbench); coopbench learns from the team
reward (mean of the agents' VMAS rewards), BenchMARL from each agent's own; Adam eps 1e-5 vs 1e-6;
value loss 0.5 MSE vs MSE; orthogonal vs PyTorch default init.

What each timer covers. coopbench: collection = `MAPPO.collect` (policy and critic forward every
step, the env, rollout storage), training = `MAPPO.update` (GAE and the 675 gradient steps), total =
the whole iteration. BenchMARL: its own `timers/collection_time` (the SyncDataCollector: policy and
env; no critic), `timers/training_time` (GAE with a critic pass over the batch, replay-buffer fill,
the 675 gradient steps, policy weight sync) and `timers/iteration_time` (also its per-iteration
episode statistics; evaluation, checkpoints and loggers are off). Collection and training are
therefore split differently (coopbench computes values while collecting); the totals compare the same
work. Rates are frames / second (6000 frames per iteration).

Each repeat builds both sides afresh with seed `--seed + repeat`, runs `--warmup` untimed iterations
and `--iterations` timed ones; BenchMARL runs in a subprocess of its own venv
(benchmarks/benchmarl_side.py), coopbench in this process, one after the other, the order
alternating between repeats so that the shared machine's load hits both alike. Reported: min /
median / max over repeats of each side's frames/s (frames of the timed iterations / their summed
time), the per-repeat ratio coopbench / BenchMARL, the same on CPU time (less sensitive to other
processes), torch threads (one each, `--threads`) and the load average.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from side_by_side import compare_with_benchmarl, side_result, single_thread_env, vmas_task_settings  # noqa: E402, I001 (benchmarks/)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BENCHMARL_PYTHON = REPO / "build" / "bench-venvs" / "benchmarl" / "bin" / "python"
SIDE_SCRIPT = REPO / "benchmarks" / "benchmarl_side.py"
ENV = "vmas/navigation"

SETTINGS = {
    "n_envs": 10,
    "frames_per_batch": 6000,
    "epochs": 45,  # passes over the batch (BenchMARL on_policy_n_minibatch_iters)
    "minibatch_size": 400,  # BenchMARL on_policy_minibatch_size -> 15 minibatches
    "hidden_sizes": [256, 256],
    "activation": "tanh",
    "lr": 5e-5,
    "gamma": 0.99,
    "gae_lambda": 0.9,
    "clip_eps": 0.2,
    "entropy_coef": 0.0,
    "max_grad_norm": 5.0,
}


def coopbench_hparams(s: dict) -> dict:
    if s["frames_per_batch"] % s["n_envs"] or s["frames_per_batch"] % s["minibatch_size"]:
        raise SystemExit("frames per batch must be a multiple of the copies and of the minibatch size")
    return {
        "n_envs": s["n_envs"], "rollout_length": s["frames_per_batch"] // s["n_envs"],
        "ppo_epochs": s["epochs"], "num_minibatches": s["frames_per_batch"] // s["minibatch_size"],
        "lr_actor": s["lr"], "lr_critic": s["lr"], "gamma": s["gamma"], "gae_lambda": s["gae_lambda"],
        "clip_eps": s["clip_eps"], "value_clip_eps": None, "entropy_coef": s["entropy_coef"],
        "max_grad_norm": s["max_grad_norm"], "hidden_sizes": list(s["hidden_sizes"]), "activation": s["activation"],
        "share_parameters": True, "agent_id_input": False, "normalize_advantages": False,
        "state_dependent_std": True, "learning_reward": "team",
    }


# --- the coopbench side (this process) ---------------------------------------------------------------

def run_coopbench(s: dict) -> dict:
    import torch

    from algorithms.registry import ALGORITHMS
    from coopbench.run import seed_everything
    from environments.registry import make

    torch.set_num_threads(s["threads"])
    seed_everything(s["seed"])
    algo_cls = ALGORITHMS.get("mappo").load()
    hparams = algo_cls.Config(**coopbench_hparams(s))
    env = make(ENV, n_envs=hparams.n_envs, seed=s["seed"], device="cpu",
               n_agents=s["n_agents"], max_steps=s["max_steps"], shared_rew=s["shared_rew"],
               collisions=s["collisions"], continuous_actions=s["continuous_actions"])
    algorithm = algo_cls(env.spec, hparams, torch.device("cpu"))
    timestep = env.reset()
    records = []
    for _ in range(s["warmup"] + s["iterations"]):
        cpu0, t0 = time.process_time(), time.perf_counter()
        rollout = algorithm.collect(env, timestep)
        timestep = rollout.timestep
        t1 = time.perf_counter()
        algorithm.update(rollout.storage)
        torch.cat(rollout.finished_returns)  # what train_iteration hands the run loop
        t2, cpu2 = time.perf_counter(), time.process_time()
        records.append({"collection_time": t1 - t0, "training_time": t2 - t1, "iteration_time": t2 - t0,
                        "cpu_time": cpu2 - cpu0, "frames": algorithm.steps_per_iteration})
    env.close()
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"iterations": records[s["warmup"]:], "warmup": records[:s["warmup"]], "threads": torch.get_num_threads(),
            "resolved": {"hparams": hparams.model_dump(), "obs_dim": env.spec.obs_dim,
                         "action_dim": env.spec.action_dim,
                         "gradient_steps_per_iteration": hparams.ppo_epochs * hparams.num_minibatches,
                         "actor_params": n_params(algorithm.actor.net),
                         "critic_params": n_params(algorithm.critic.net)}}


# --- how close to the limit: coopbench's training step against its bare kernels ------------------------------

def layer_shapes(net) -> list[tuple[int, int, int]]:
    """(groups x seeds, in, out) of every AgentLinear of `net`, in forward order."""
    from algorithms.blocks.networks import AgentLinear

    return [tuple(m.weight.shape) for m in net.modules() if isinstance(m, AgentLinear)]


def bare_step_seconds(actor: list, critic: list, actor_rows: int, critic_rows: int, activation: str,
                      steps: int) -> float:
    """Seconds per gradient step of the bare kernels of one coopbench step: each network's layers forward (one
    addmm, or one baddbmm over seeds, and the activation), the backward pass of a plain sum of the outputs, and
    torch's foreach Adam on both networks; nothing else (no distributions, losses, clipping, minibatch gathering,
    normalisation or bookkeeping)."""
    import torch
    from torch.optim.adam import adam

    act = {"tanh": torch.tanh, "relu": torch.relu}[activation]

    def build(shapes, rows):
        params = []
        for seeds, fan_in, fan_out in shapes:
            params += [torch.nn.Parameter(torch.randn(seeds, fan_in, fan_out) / fan_in ** 0.5),
                       torch.nn.Parameter(torch.zeros(seeds, 1, fan_out))]
        return params, torch.randn(shapes[0][0], rows, shapes[0][1])

    def forward(params, x):
        for i in range(0, len(params), 2):
            w, b = params[i], params[i + 1]
            x = torch.addmm(b[0], x[0], w[0]).unsqueeze(0) if w.shape[0] == 1 else torch.baddbmm(b, x, w)
            if i + 2 < len(params):
                x = act(x)
        return x

    nets = [build(actor, actor_rows), build(critic, critic_rows)]
    params = [p for net, _ in nets for p in net]
    moments = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    counts = [torch.tensor(0.0) for _ in params]

    def step():
        for p in params:
            p.grad = None
        loss = sum(forward(net, x).sum() for net, x in nets)
        loss.backward()
        with torch.no_grad():
            adam(params, [p.grad for p in params], *moments, [], counts, amsgrad=False, has_complex=False,
                 beta1=0.9, beta2=0.999, lr=1e-4, weight_decay=0.0, eps=1e-5, maximize=False, foreach=True,
                 capturable=False, differentiable=False, fused=None, grad_scale=None, found_inf=None,
                 decoupled_weight_decay=False)

    for _ in range(10):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def kernel_ratio(s: dict, n_seeds: int) -> dict:
    """coopbench's MAPPO training step (`MAPPO.update` over one collected batch, per gradient step) against the
    bare kernels of the same layers and minibatch (`bare_step_seconds`), with `n_seeds` seeds in one batch."""
    import torch

    from algorithms.registry import ALGORITHMS
    from coopbench.run import seed_everything
    from environments.registry import make
    from environments.seed_batch import SeedBatch

    torch.set_num_threads(s["threads"])
    seed_everything(s["seed"])
    algo_cls = ALGORITHMS.get("mappo").load()
    hparams = algo_cls.Config(**coopbench_hparams(s))
    env = SeedBatch([make(ENV, n_envs=hparams.n_envs, seed=s["seed"] + k, device="cpu", n_agents=s["n_agents"],
                          max_steps=s["max_steps"], shared_rew=s["shared_rew"], collisions=s["collisions"],
                          continuous_actions=s["continuous_actions"]) for k in range(n_seeds)])
    algorithm = algo_cls(env.spec, hparams, torch.device("cpu"), n_seeds=n_seeds)
    storage = algorithm.collect(env, env.reset()).storage
    env.close()
    gradient_steps = hparams.ppo_epochs * hparams.num_minibatches
    algorithm.update(storage)  # warm-up
    timings = []
    for _ in range(s["kernel_repeats"]):
        start = time.perf_counter()
        algorithm.update(storage)
        timings.append((time.perf_counter() - start) / gradient_steps)
    frames = s["frames_per_batch"] // hparams.num_minibatches
    bare = [bare_step_seconds(layer_shapes(algorithm.actor.net), layer_shapes(algorithm.critic.net),
                              frames * env.spec.n_agents, frames * algorithm.critic.width, s["activation"],
                              gradient_steps) for _ in range(s["kernel_repeats"])]
    ratios = sorted(c / b for c, b in zip(timings, bare, strict=True))
    return {"seeds": n_seeds, "coopbench_ms_per_step": sorted(1e3 * t for t in timings),
            "bare_ms_per_step": sorted(1e3 * t for t in bare), "ratio": ratios,
            "minibatch_rows": {"actor": frames * env.spec.n_agents, "critic": frames * algorithm.critic.width},
            "threads": torch.get_num_threads()}


def report_kernels(s: dict, seeds: list[int]) -> list[dict]:
    results = []
    print("coopbench's training step against its bare kernels (same layers, minibatch and Adam; ms per gradient "
          f"step, min / median / max over {s['kernel_repeats']} repeats, {s['threads']} thread(s)):")
    for n_seeds in seeds:
        r = kernel_ratio(s, n_seeds)
        mmm = lambda xs: f"{xs[0]:.2f} / {xs[len(xs) // 2]:.2f} / {xs[-1]:.2f}"  # noqa: E731
        print(f"  {n_seeds} seed(s): coopbench {mmm(r['coopbench_ms_per_step'])}  bare {mmm(r['bare_ms_per_step'])}"
              f"  coopbench / bare {mmm(r['ratio'])}", flush=True)
        results.append(r)
    return results


# --- the BenchMARL side (a subprocess in its own venv) ---------------------------------------------------

INSTALL = "bash benchmarks/setup_benchmarl_venv.sh"


def check_benchmarl(python: Path) -> None:
    """Stop with what is missing and how to get it, before anything is timed."""
    if not python.exists():
        raise SystemExit(f"no BenchMARL venv: {python} does not exist.\n  install it with `{INSTALL}` "
                         f"(or point --benchmarl-python at a python with benchmarl, torchrl, tensordict and vmas);\n"
                         f"  `--only coopbench` measures coopbench's side alone")
    probe = ("import importlib, sys\nmissing = []\nfor m in ('torch', 'tensordict', 'torchrl', 'vmas', 'benchmarl'):\n"
             "    try:\n        importlib.import_module(m)\n"
             "    except Exception as e:\n        missing.append(f'{m} ({type(e).__name__}: {e})')\n"
             "print('; '.join(missing))")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                         env=single_thread_env(TQDM_DISABLE="1"))
    missing = out.stdout.strip() or (out.stderr.strip().splitlines() or [""])[-1]
    if out.returncode or missing:
        raise SystemExit(f"{python} cannot import: {missing}\n  (re)install with `{INSTALL}`; "
                         f"`--only coopbench` measures coopbench's side alone")




def run_benchmarl(python: Path, s: dict) -> dict:
    proc = subprocess.run([str(python), str(SIDE_SCRIPT), json.dumps(s)], capture_output=True, text=True,
                          env=single_thread_env(TQDM_DISABLE="1"), cwd=REPO)
    return side_result(proc, "BenchMARL")




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per repeat and side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations before them")
    parser.add_argument("--epochs", type=int, default=SETTINGS["epochs"],
                        help="passes over each batch (BenchMARL on_policy_n_minibatch_iters; default its 45)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["both", "coopbench", "benchmarl"], default="both")
    parser.add_argument("--benchmarl-python", type=Path, default=DEFAULT_BENCHMARL_PYTHON)
    parser.add_argument("--target", type=float, default=3.0, help="required coopbench / BenchMARL total ratio")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--kernels", choices=["also", "only", "no"], default="also",
                        help="time coopbench's training step against its bare kernels (for 1 and 5 seeds)")
    parser.add_argument("--kernel-seeds", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--kernel-repeats", type=int, default=3)
    args = parser.parse_args()
    kernels = {**vmas_task_settings(ENV), **SETTINGS, "epochs": args.epochs, "threads": args.threads,
               "seed": args.seed, "kernel_repeats": args.kernel_repeats}
    if args.kernels == "only":
        results = report_kernels(kernels, args.kernel_seeds)
        if args.json:
            args.json.write_text(json.dumps({"kernels": results}, indent=1))
        return

    sides = ["coopbench", "benchmarl"] if args.only == "both" else [args.only]
    if "benchmarl" in sides:
        check_benchmarl(args.benchmarl_python)
    base = {**vmas_task_settings(ENV), **SETTINGS, "epochs": args.epochs, "threads": args.threads,
            "warmup": args.warmup, "iterations": args.iterations}
    print(f"MAPPO on {ENV}: {base['n_envs']} copies, {base['frames_per_batch']} frames/iteration, "
          f"{base['epochs']} epochs x {base['frames_per_batch'] // base['minibatch_size']} minibatches of "
          f"{base['minibatch_size']}; {args.warmup} warm-up + {args.iterations} timed iterations x "
          f"{args.repeats} repeats; torch threads {args.threads}", flush=True)
    compare_with_benchmarl(sides, base, args.repeats, args.seed, args.target,
                           lambda side, s: run_coopbench(s) if side == "coopbench" else
                           run_benchmarl(args.benchmarl_python, s), args.json)
    if args.kernels == "also":
        results = report_kernels(kernels, args.kernel_seeds)
        if args.json:
            args.json.write_text(json.dumps({**json.loads(args.json.read_text()), "kernels": results}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
