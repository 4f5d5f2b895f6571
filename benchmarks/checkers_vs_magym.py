"""coopbench's batched Checkers against ma-gym's Checkers, side by side in one run.

    bash benchmarks/setup_magym_venv.sh            # once: ma-gym in its own venv (build/bench-venvs/magym)
    .venv/bin/python benchmarks/checkers_vs_magym.py [--repeats 5] [--json out.json]
    .venv/bin/python benchmarks/checkers_vs_magym.py --check-only   # trajectories identical to ma-gym's?

ma-gym needs gym 0.19/0.20, which cannot live in coopbench's venv, so its side runs in a worker
process of the other venv (this same file, `--worker`), driven over a pipe. Each repeat times, one
after the other so that the shared machine's noise hits them alike:

- ma-gym: one `Checkers()` (the class itself, no gym wrappers), its own Python loop, uniformly
  random actions from a numpy generator, reset when done;
- coopbench: `gridworld/lan-checkers` at 1 and at 1024 copies (one torch thread), uniformly random
  actions from `torch.randint`, finished copies resetting themselves.

Rates are agent-steps per second (env steps x copies x 2 agents), reported as min / median / max
over the repeats, and the ratio coopbench / ma-gym per repeat (min / median / max). Before timing,
both are stepped with the same random actions and must agree exactly (observations, team reward =
sum of ma-gym's per-agent rewards, episode ends); `--check-only` runs just that check.

The ma-gym side imports nothing from coopbench, and this file imports torch only on coopbench's side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MAGYM_PYTHON = REPO / "build" / "bench-venvs" / "magym" / "bin" / "python"
N_AGENTS = 2


# --- the ma-gym side (runs in the ma-gym venv) ----------------------------------------------------

def worker() -> None:
    """Answer one JSON command per stdin line with one JSON line on stdout."""
    import warnings

    warnings.filterwarnings("ignore")  # gym 0.20's "Box bound precision lowered" on construction
    import numpy as np
    from ma_gym.envs.checkers import Checkers

    def bench(steps: int, seed: int) -> dict:
        env = Checkers()
        rng = np.random.default_rng(seed)
        env.reset()
        actions = rng.integers(0, 5, size=(steps, N_AGENTS)).tolist()
        start = time.perf_counter()
        for joint in actions:
            _, _, dones, _ = env.step(joint)
            if all(dones):
                env.reset()
        elapsed = time.perf_counter() - start
        return {"agent_steps_per_s": steps * N_AGENTS / elapsed}

    def trace(actions: list) -> dict:
        env = Checkers()
        obs = [env.reset()]
        rewards, dones = [], []
        for joint in actions:
            o, r, d, _ = env.step(joint)
            rewards.append(float(sum(r)))
            dones.append(bool(all(d)))
            obs.append(o)
            if all(d):
                obs.append(env.reset())  # the first observation of the next episode
        return {"obs": obs, "rewards": rewards, "dones": dones}

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        out = bench(cmd["steps"], cmd["seed"]) if cmd["cmd"] == "bench" else trace(cmd["actions"])
        print(json.dumps(out), flush=True)


class MagymWorker:
    def __init__(self, python: Path):
        if not Path(python).exists():
            raise SystemExit(f"no ma-gym venv at {python}: run `bash benchmarks/setup_magym_venv.sh` first")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([str(python), "-u", __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the ma-gym worker died (exit code {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


# --- the coopbench side -----------------------------------------------------------------------------

def check_against_magym(worker: MagymWorker, steps: int, seed: int) -> list[str]:
    """Step both with the same random actions; return the differences (empty when identical)."""
    import torch

    from environments.registry import make

    gen = torch.Generator().manual_seed(seed)
    # Bias towards moving left so that episodes also end by eating every apple, not only by time.
    actions = torch.multinomial(torch.tensor([0.2, 0.35, 0.2, 0.1, 0.15]), steps * N_AGENTS, replacement=True,
                                generator=gen).view(steps, N_AGENTS)
    ref = worker.ask(cmd="trace", actions=actions.tolist())
    env = make("gridworld/lan-checkers", n_envs=1, seed=seed)
    ours_obs = [env.reset().obs[0]]
    problems = []
    ref_obs = iter(ref["obs"])
    expect = torch.tensor(next(ref_obs), dtype=torch.float32)
    if not torch.equal(ours_obs[0], expect):
        problems.append("first observation differs")
    ends = {"apples": 0, "time": 0}
    for k, joint in enumerate(actions):
        ts = env.step(joint.unsqueeze(0))
        done = bool(ts.done[0])
        if done != ref["dones"][k]:
            problems.append(f"step {k}: done {done} vs ma-gym {ref['dones'][k]}")
            break
        if abs(float(ts.reward[0, 0]) - ref["rewards"][k]) > 1e-5:
            problems.append(f"step {k}: team reward {float(ts.reward[0, 0])} vs ma-gym {ref['rewards'][k]}")
        final = torch.tensor(next(ref_obs), dtype=torch.float32)
        if not torch.equal(ts.final_obs[0], final):
            problems.append(f"step {k}: observation differs")
        if done:
            ends["apples" if bool(ts.terminated[0]) else "time"] += 1
            if not torch.equal(ts.obs[0], torch.tensor(next(ref_obs), dtype=torch.float32)):
                problems.append(f"step {k}: first observation after the reset differs")
        if len(problems) > 10:
            break
    print(f"check: {steps} steps, episodes ended by eating every apple: {ends['apples']}, by time: {ends['time']}; "
          f"{'identical to ma-gym' if not problems else 'DIFFERENCES'}", flush=True)
    return problems


def time_coopbench(env, steps: int, gen) -> float:
    import torch

    shape = (env.n_envs, env.spec.n_agents)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(torch.randint(5, shape, generator=gen))
    return env.n_envs * env.spec.n_agents * steps / (time.perf_counter() - start)


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--magym-python", type=Path, default=DEFAULT_MAGYM_PYTHON)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--magym-steps", type=int, default=20_000, help="ma-gym steps per repeat")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 1024])
    parser.add_argument("--agent-steps", type=int, default=400_000,
                        help="coopbench agent-steps per repeat and copy count (200 to 2000 env steps)")
    parser.add_argument("--check-steps", type=int, default=3_000)
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--target", type=float, default=3.0, help="required coopbench(1024) / ma-gym ratio")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.worker:
        worker()
        return

    import torch

    from environments.registry import make

    torch.set_num_threads(1)
    magym = MagymWorker(args.magym_python)
    try:
        problems = check_against_magym(magym, args.check_steps, seed=0)
        for line in problems:
            print("  " + line)
        if problems:
            raise SystemExit(1)
        if args.check_only:
            return
        envs = {c: make("gridworld/lan-checkers", n_envs=c, seed=0) for c in args.copies}
        steps = {c: min(2_000, max(200, args.agent_steps // (c * N_AGENTS))) for c in args.copies}
        gen = torch.Generator().manual_seed(0)
        for env in envs.values():  # warm-up
            env.reset()
            time_coopbench(env, 20, gen)
        magym.ask(cmd="bench", steps=2_000, seed=0)
        rates: dict[str, list[float]] = {"ma-gym": [], **{f"coopbench x{c}": [] for c in args.copies}}
        print(f"torch threads: {torch.get_num_threads()}; {args.repeats} repeats", flush=True)
        for r in range(args.repeats):
            rates["ma-gym"].append(magym.ask(cmd="bench", steps=args.magym_steps, seed=r)["agent_steps_per_s"])
            for c, env in envs.items():
                rates[f"coopbench x{c}"].append(time_coopbench(env, steps[c], gen))
            print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()), flush=True)
    finally:
        magym.close()

    print(f"\n{'agent-steps/s':24s} {'min':>12s} {'median':>12s} {'max':>12s}")
    results = {"threads": 1, "repeats": args.repeats, "agent_steps_per_s": {}, "ratio_to_magym": {}}
    for name, values in rates.items():
        s = summary(values)
        results["agent_steps_per_s"][name] = s
        print(f"{name:24s} {s['min']:12,.0f} {s['median']:12,.0f} {s['max']:12,.0f}")
    print(f"\n{'ratio to ma-gym (per repeat)':30s} {'min':>8s} {'median':>8s} {'max':>8s}")
    for c in args.copies:
        ratios = [ours / ref for ours, ref in zip(rates[f"coopbench x{c}"], rates["ma-gym"], strict=True)]
        s = summary(ratios)
        results["ratio_to_magym"][f"coopbench x{c}"] = s
        print(f"{'coopbench x' + str(c):30s} {s['min']:8.2f} {s['median']:8.2f} {s['max']:8.2f}")
    big = max(args.copies)
    median_ratio = results["ratio_to_magym"][f"coopbench x{big}"]["median"]
    verdict = "meets" if median_ratio >= args.target else "MISSES"
    print(f"\ncoopbench x{big} / ma-gym median ratio {median_ratio:.1f} {verdict} the target {args.target:g}x")
    results["target"] = {"ratio": args.target, "met": median_ratio >= args.target}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
