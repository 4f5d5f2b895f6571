"""What the side-by-side benchmarks share (mappo_vs_benchmarl.py, maddpg_vs_benchmarl.py, qmix_vs_epymarl.py): each
side runs in its own subprocess and prints one JSON line of per-iteration timings; repeats alternate the sides; the
report gives min / median / max over repeats of each side's rate and of the paired ratio coopbench / peer."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

# Per-iteration timing keys every side reports, by the name the report gives them.
METRICS = {"collection": "collection_time", "training": "training_time", "total": "iteration_time"}


def single_thread_env(**extra: str) -> dict:
    """The environment of a side's subprocess: one BLAS/OpenMP thread (torch's own count is set by the side)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore", **extra}


def side_result(proc: subprocess.CompletedProcess, side: str) -> dict:
    """The JSON line a side printed last, or stop with its error output."""
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise SystemExit(f"the {side} side failed (exit code {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def rates(run: dict) -> dict:
    """Steps (frames) per second of one repeat: timed steps over the summed time of each part."""
    its = run["iterations"]
    frames = sum(i["frames"] for i in its)
    out = {name: frames / sum(i[key] for i in its) for name, key in METRICS.items()}
    out["total_per_cpu_s"] = frames / sum(i["cpu_time"] for i in its)
    return out


def report(runs: dict[str, list[dict]], peer: str, peer_label: str, unit: str, target: float) -> dict:
    """Print each side's rates and the paired ratios; return them as `results` entries
    (`<unit>_per_s`, `ratio_coopbench_over_<peer>`, `target`)."""
    sides = list(runs)
    rate_key, ratio_key = f"{unit.replace(' ', '_')}_per_s", f"ratio_coopbench_over_{peer}"
    out: dict = {rate_key: {}, ratio_key: {}}
    per_repeat = {side: [rates(run) for run in runs[side]] for side in sides}
    print(f"\n{unit + '/s':28s} {'min':>9s} {'median':>9s} {'max':>9s}")
    for side in sides:
        out[rate_key][side] = {}
        for metric in [*METRICS, "total_per_cpu_s"]:
            stats = summary([p[metric] for p in per_repeat[side]])
            out[rate_key][side][metric] = stats
            print(f"{side + ' ' + metric:28s} " + " ".join(f"{stats[k]:9,.0f}" for k in ("min", "median", "max")))
    if len(sides) == 2:
        print(f"\n{'coopbench / ' + peer_label:28s} {'min':>9s} {'median':>9s} {'max':>9s}")
        for metric in [*METRICS, "total_per_cpu_s"]:
            pairs = zip(per_repeat["coopbench"], per_repeat[peer], strict=True)
            stats = summary([c[metric] / p[metric] for c, p in pairs])
            out[ratio_key][metric] = stats
            print(f"{metric:28s} " + " ".join(f"{stats[k]:9.2f}" for k in ("min", "median", "max")))
        median = out[ratio_key]["total"]["median"]
        out["target"] = {"ratio": target, "met": median >= target}
        print(f"\ncoopbench total {unit}/s = {median:.2f}x {peer_label}'s (median over repeats): "
              f"{'meets' if median >= target else 'MISSES'} the {target:g}x target")
    return out


def compare_with_benchmarl(sides: list[str], base: dict, repeats: int, seed: int, target: float,
                           run_side: Callable[[str, dict], dict], json_path: Path | None) -> dict:
    """The BenchMARL comparisons' run: `repeats` rounds of every side (`run_side(side, settings)`, seed `seed + r`),
    the order alternating so neither side always runs on a warmer machine; print each repeat's rates and the
    report; return the results (also written to `json_path`)."""
    load_before, started = os.getloadavg(), time.perf_counter()
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(repeats):
        settings = {**base, "seed": seed + r}
        for side in sides if r % 2 == 0 else sides[::-1]:
            run = run_side(side, settings)
            runs[side].append(run)
            got = rates(run)
            print(f"repeat {r} {side:9s} frames/s: collection {got['collection']:8,.0f}  training "
                  f"{got['training']:8,.0f}  total {got['total']:8,.0f}  (per CPU s {got['total_per_cpu_s']:,.0f}; "
                  f"threads {run['threads']})", flush=True)
    wall, load_after = time.perf_counter() - started, os.getloadavg()
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "loadavg_before": load_before, "loadavg_after": load_after},
        "settings": base, "repeats": repeats, "wall_s": round(wall, 1),
        "threads": {side: sorted({run["threads"] for run in runs[side]}) for side in sides},
        "resolved": {side: runs[side][0]["resolved"] for side in sides},
        "raw": {side: [{"iterations": run["iterations"], "warmup": run["warmup"]} for run in runs[side]]
                for side in sides},
    }
    if "benchmarl" in runs:
        results["benchmarl_versions"] = runs["benchmarl"][0]["versions"]
    results.update(report(runs, "benchmarl", "BenchMARL", "frames", target))
    print(f"threads: {results['threads']}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs); {wall:.0f} s")
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
    return results


def vmas_task_settings(env: str) -> dict:
    """A VMAS task exactly as coopbench's config file defines it (the BenchMARL comparisons give both sides these)."""
    from coopbench.config import load_env_file

    params = load_env_file(env).params
    if params.get("scenario_kwargs"):
        raise SystemExit(f"{env}'s config sets scenario_kwargs {params['scenario_kwargs']}: not mapped to BenchMARL")
    return {k: params[k] for k in ("n_agents", "max_steps", "shared_rew", "collisions", "continuous_actions")}
