"""`python -m leaderboard {aggregate,stats,figures,analysis,claims,site} ...`: one subcommand per Snakemake rule."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coopbench.base.errors import CoopbenchError


def _run_dirs(args: argparse.Namespace) -> list[Path]:
    """Run dirs from the command line plus those listed (one per line) in --runs-from."""
    dirs = list(args.run_dirs)
    if args.runs_from is not None:
        try:
            lines = args.runs_from.read_text().splitlines()
        except OSError as err:
            raise CoopbenchError(f"cannot read run list {args.runs_from}: {err.strerror}") from None
        dirs += [Path(line.strip()) for line in lines if line.strip()]
    return dirs


def _add_run_dirs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR", help="a run directory")
    parser.add_argument(
        "--runs-from", type=Path, metavar="FILE", help="file listing run directories, one a line"
    )


def _aggregate(args):
    from leaderboard.aggregate import aggregate, aggregate_plan

    if args.results_dir is not None:
        if args.run_dirs or args.runs_from:
            raise CoopbenchError("give either --results-dir (the suite's plan) or run directories, not both")
        aggregate_plan(args.suite, args.results_dir, args.out)
    else:
        aggregate(_run_dirs(args), args.out, args.suite)


def _analysis(args):
    from leaderboard.analyses import run_analysis

    run_analysis(args.name, args.out, quick=args.quick)


def _animations(args):
    from leaderboard.animations import make_animations

    make_animations(args.suite, args.results_dir, args.out_dir)


def _claims(args):
    from leaderboard.claims import judge_suite

    judge_suite(args.suite, args.scores, args.runs, args.analyses, args.out_dir, reps=args.reps, seed=args.seed)


def _stats(args):
    from leaderboard.stats import compute_stats

    compute_stats(args.scores, args.out, reps=args.reps, seed=args.seed)


def _figures(args):
    from leaderboard.figures import make_figures

    make_figures(args.stats, args.out_dir)


def _site(args):
    from leaderboard.site import build_site

    build_site(args.stats, args.scores, args.figures, args.out, args.runs, args.claims, args.suite,
               animations_dir=args.animations)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m leaderboard", description=__doc__)
    sub = p.add_subparsers(dest="stage", required=True)

    agg = sub.add_parser("aggregate", help="run dirs -> scores.parquet")
    agg.add_argument("--suite", required=True)
    agg.add_argument("--out", required=True, type=Path, help="scores.parquet to write (runs.json beside it)")
    agg.add_argument("--results-dir", type=Path, help="aggregate the runs the suite plans under this directory")
    _add_run_dirs(agg)
    agg.set_defaults(func=_aggregate)

    st = sub.add_parser("stats", help="scores.parquet -> stats.json (rliable)")
    st.add_argument("--scores", required=True, type=Path)
    st.add_argument("--out", required=True, type=Path, help="stats.json to write")
    st.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    st.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    st.set_defaults(func=_stats)

    fig = sub.add_parser("figures", help="stats.json -> SVG/PNG figures")
    fig.add_argument("--stats", required=True, type=Path)
    fig.add_argument("--out-dir", required=True, type=Path)
    fig.set_defaults(func=_figures)

    ana = sub.add_parser("analysis", help="one registered analysis (coopbench.claims.ANALYSES) -> JSON")
    ana.add_argument("name")
    ana.add_argument("--out", required=True, type=Path)
    ana.add_argument("--quick", action="store_true", help="fewer trials/repeats (tests, demos)")
    ana.set_defaults(func=_analysis)

    an = sub.add_parser("animations", help="a GIF of a trained policy per task that can render -> a folder")
    an.add_argument("--suite", required=True)
    an.add_argument("--results-dir", required=True, type=Path)
    an.add_argument("--out-dir", required=True, type=Path)
    an.set_defaults(func=_animations)

    cl = sub.add_parser("claims", help="scores, runs.json, analyses -> one verdict JSON per paper")
    cl.add_argument("--suite", required=True)
    cl.add_argument("--scores", required=True, type=Path)
    cl.add_argument("--runs", required=True, type=Path, help="runs.json of the aggregate stage")
    cl.add_argument("--analyses", required=True, type=Path, help="directory of analysis JSON files")
    cl.add_argument("--out-dir", required=True, type=Path)
    cl.add_argument("--reps", type=int, default=2000)
    cl.add_argument("--seed", type=int, default=0)
    cl.set_defaults(func=_claims)

    site = sub.add_parser("site", help="stats, scores, figures, runs.json, claims -> static HTML site")
    site.add_argument("--suite", required=True)
    site.add_argument("--stats", required=True, type=Path)
    site.add_argument("--scores", required=True, type=Path)
    site.add_argument("--runs", required=True, type=Path, help="runs.json of the aggregate stage")
    site.add_argument("--claims", required=True, type=Path, help="directory of the claims stage's JSON files")
    site.add_argument("--figures", required=True, type=Path, help="directory the figures stage wrote")
    site.add_argument("--animations", type=Path, help="directory the animations stage wrote (optional)")
    site.add_argument("--out", required=True, type=Path, help="site directory (replaced whole)")
    site.set_defaults(func=_site)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except CoopbenchError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # always one line
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
