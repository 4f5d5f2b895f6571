"""Check a suite's results from one run of the workflow against a local run of the same suite.

    python .ci/slurm/compare.py SUITE WORKDIR LOCAL_WORKDIR [--slurm] [--image REF] [--site | --runs-only]
                                [--resumed-run ENV ALGO SEED --cancelled-job ID]

Both work directories hold `results/` as the workflow writes it (results_dir=results). Checks:
every planned run completed in both; the aggregated scores (results/<suite>/scores.parquet) are
equal, value for value; every run's metrics.parquet is byte-identical; the local runs record no
Slurm job id and container image "none". With --slurm, WORKDIR's runs record their Slurm job id;
with --image, they record that container image (else "none"); with --site, WORKDIR's site shows
each run's Slurm job id and container image; with --runs-only, only the runs are compared (the
workflow was not asked for scores); with --resumed-run, that run resumed from its checkpoint at
least once, in a job other than the cancelled one.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import pandas as pd

from coopbench.config import plan_suite
from leaderboard.site import run_page


def fail(message: str) -> None:
    print(f"[compare] FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("suite")
    parser.add_argument("slurm_dir", type=Path, metavar="WORKDIR")
    parser.add_argument("local_dir", type=Path, metavar="LOCAL_WORKDIR")
    parser.add_argument("--slurm", action="store_true", help="WORKDIR's runs ran as Slurm jobs")
    parser.add_argument("--image", default="none", help="the container image WORKDIR's runs ran in")
    parser.add_argument("--site", action="store_true", help="also check WORKDIR's site")
    parser.add_argument("--runs-only", action="store_true", help="compare the runs, not the aggregated scores")
    parser.add_argument("--resumed-run", nargs=3, metavar=("ENV", "ALGO", "SEED"))
    parser.add_argument("--cancelled-job")
    args = parser.parse_args()

    planned = plan_suite(args.suite)
    manifests: dict[str, dict] = {"slurm": {}, "local": {}}
    for run in planned:
        key = (run.config.env, run.config.algo, run.seed)
        metrics = {}
        for where, root in (("slurm", args.slurm_dir), ("local", args.local_dir)):
            run_dir = run.config.run_dir(root / "results", run.seed)
            if not (run_dir / "manifest.json").is_file():
                fail(f"{where}: {run_dir} has no manifest.json")
            manifest = json.loads((run_dir / "manifest.json").read_text())
            if manifest.get("status") != "completed":
                fail(f"{where}: {run_dir} status {manifest.get('status')!r}")
            expected_image = args.image if where == "slurm" else "none"
            if manifest.get("container_image") != expected_image:
                fail(f"{where}: {run_dir} records container image {manifest.get('container_image')!r}, "
                     f"expected {expected_image!r}")
            manifests[where][key] = manifest
            metrics[where] = (run_dir / "metrics.parquet").read_bytes()
        if metrics["slurm"] != metrics["local"]:
            fail(f"{key}: metrics.parquet differs between the Slurm and the local run")
        job_id = manifests["slurm"][key].get("slurm_job_id")
        if args.slurm and not (isinstance(job_id, str) and job_id.isdigit()):
            fail(f"{key}: the Slurm run's manifest has slurm_job_id {job_id!r}")
        if not args.slurm and job_id is not None:
            fail(f"{key}: {args.slurm_dir}'s manifest has Slurm job id {job_id!r}")
        if manifests["local"][key].get("slurm_job_id") is not None:
            fail(f"{key}: the local run's manifest has a Slurm job id")
    print(f"[compare] {len(planned)} runs completed in both; metrics.parquet byte-identical; "
          f"Slurm job ids {sorted(str(m['slurm_job_id']) for m in manifests['slurm'].values())}; "
          f"container image {args.image}")

    if args.runs_only:
        check_resumed(args, manifests)
        return
    scores = {where: pd.read_parquet(root / "results" / args.suite / "scores.parquet")
              for where, root in (("slurm", args.slurm_dir), ("local", args.local_dir))}
    order = ["env", "algo", "config_hash", "seed", "env_steps"]
    a, b = (scores[w].sort_values(order).reset_index(drop=True) for w in ("slurm", "local"))
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError as err:
        fail(f"aggregated scores differ:\n{err}")
    final = a[a.is_final]
    if len(final) != len(planned):
        fail(f"scores.parquet has {len(final)} final rows for {len(planned)} planned runs")
    print(f"[compare] results/{args.suite}/scores.parquet equal ({len(a)} rows, {len(final)} runs); "
          f"mean final normalized score {final.normalized_score.mean():.6g}")

    if args.site:
        for run in planned:
            key = (run.config.env, run.config.algo, run.seed)
            page = args.slurm_dir / "site" / run_page(run.config.env, run.config.algo, run.config.hash, run.seed)
            text = html.unescape(page.read_text())
            manifest = manifests["slurm"][key]
            for label, value in (("Slurm job id", manifest["slurm_job_id"] or "—"),
                                 ("Container image", manifest["container_image"])):
                if f"<th>{label}</th><td>{value}</td>" not in text:
                    fail(f"{page} does not show {label} {value!r}")
        print("[compare] the site's run pages show each run's Slurm job id and container image")

    check_resumed(args, manifests)


def check_resumed(args, manifests: dict) -> None:
    if args.resumed_run:
        env, algo, seed = args.resumed_run
        manifest = manifests["slurm"].get((env, algo, int(seed)))
        if manifest is None:
            fail(f"no planned run {env} {algo} seed {seed}")
        if manifest["resumes"] < 1:
            fail(f"{env} {algo} seed {seed} did not resume from a checkpoint (resumes={manifest['resumes']})")
        if args.cancelled_job and manifest["slurm_job_id"] == args.cancelled_job:
            fail(f"{env} {algo} seed {seed} finished in the cancelled job {args.cancelled_job}")
        print(f"[compare] {env} {algo} seed {seed}: Slurm job {args.cancelled_job} was cancelled, the retry "
              f"(job {manifest['slurm_job_id']}) resumed {manifest['resumes']}x from the checkpoint "
              "and ended identical to the uninterrupted local run")


if __name__ == "__main__":
    main()
