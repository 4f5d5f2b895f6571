"""Agent-steps per second of native environments under random actions, at 1 and 1024 copies.

    .venv/bin/python benchmarks/env_throughput.py [ENV ...] [--copies 1 1024] [--repeats 5] [--json out.json]

One torch thread unless --threads says otherwise. Each configuration is timed `--repeats` times
(after a warm-up) and reported as min / median / max; the machine is shared and noisy, so read
medians and compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from coopbench.config import load_env_file
from environments.registry import ENVIRONMENTS, make


def random_actions(env, generator: torch.Generator, timestep) -> torch.Tensor:
    spec = env.spec
    if not spec.discrete:
        unit = torch.rand(env.n_envs, spec.n_agents, spec.action_dim, generator=generator)
        return spec.action_low + (spec.action_high - spec.action_low) * unit
    if timestep.avail_actions is None:
        return torch.randint(spec.n_actions, (env.n_envs, spec.n_agents), generator=generator)
    weights = timestep.avail_actions.float().reshape(-1, spec.n_actions)
    return torch.multinomial(weights, 1, generator=generator).view(env.n_envs, spec.n_agents)


def measure(name: str, copies: int, steps: int, repeats: int) -> dict:
    env = make(name, n_envs=copies, seed=0, **load_env_file(name).params)  # the task as its config defines it
    generator = torch.Generator().manual_seed(0)
    timestep = env.reset()
    for _ in range(min(steps, 20)):  # warm-up
        timestep = env.step(random_actions(env, generator, timestep))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            timestep = env.step(random_actions(env, generator, timestep))
        rates.append(copies * env.spec.n_agents * steps / (time.perf_counter() - start))
    env.close()
    return {"env": name, "copies": copies, "agents": env.spec.n_agents, "steps": steps,
            "agent_steps_per_s": {"min": min(rates), "median": statistics.median(rates), "max": max(rates)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("envs", nargs="*", help="environment names (default: every native one)")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 1024])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    native = [e.name for e in ENVIRONMENTS.entries() if not e.target.startswith("environments.adapters.")]
    names = args.envs or native
    results = []
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'environment':40s} {'copies':>6s} {'agents':>6s} {'agent-steps/s min / median / max':>40s}")
    for name in names:
        for copies in args.copies:
            row = measure(name, copies, args.steps, args.repeats)
            r = row["agent_steps_per_s"]
            rates = " / ".join(f"{r[k]:12,.0f}" for k in ("min", "median", "max"))
            print(f"{name:40s} {copies:6d} {row['agents']:6d} {rates}", flush=True)
            results.append(row)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"threads": torch.get_num_threads(), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
