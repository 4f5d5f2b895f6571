"""What the side-by-side benchmarks share (mappo_vs_benchmarl.py, qmix_vs_epymarl.py): each side runs in its own
subprocess and prints one JSON line of per-iteration timings; repeats alternate the sides; the report gives
min / median / max over repeats of each side's rate and of the paired ratio coopbench / peer."""

from __future__ import annotations

import json
import os
import statistics
import subprocess

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
