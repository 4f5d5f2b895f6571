"""Stage `figures`: stats.json -> aggregate, performance-profile and sample-efficiency figures per comparison.

`<out_dir>/<comparison slug>/<figure>.{svg,png}`, drawn only where the comparison has the data (tasks that
every one of its methods ran); where it has not, no figure is written and the site says why in words.
A method has the same colour in every figure (colour-blind palette over every method of the suite).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coopbench.base.io import atomic_path

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

FORMATS = ("svg", "png")
FIGURES = ("aggregate", "performance_profile", "sample_efficiency")
METRIC_NAMES = {"iqm": "IQM", "mean": "Mean", "median": "Median", "optimality_gap": "Optimality Gap"}
# A fixed hash salt and no date make the SVG bytes a function of the data alone (with seaborn's "white" style).
RC = {"svg.hashsalt": "coopbench", "figure.dpi": 100}
SAVE_METADATA = {"svg": {"Date": None}, "png": {}}


def _pyplot():
    """matplotlib.pyplot on the Agg backend (files only, never a display), imported where a figure is drawn:
    the site imports this module for its names alone, and matplotlib with seaborn take ~2 s to import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def comparison_dir(comparison: str) -> str:
    """The folder of a comparison's figures ("acpo/table1" -> "acpo__table1", "suite:default" -> "suite_default")."""
    return comparison.replace("/", "__").replace(":", "_")


def has_data(cstats: dict, name: str) -> bool:
    return bool({"aggregate": cstats["aggregate"], "performance_profile": cstats["performance_profile"]["profiles"],
                 "sample_efficiency": cstats["sample_efficiency"]["iqm"]}[name])


def make_figures(stats_json: Path, out_dir: Path) -> list[Path]:
    """Write <comparison>/<name>.svg and .png for every figure a comparison has data for; return the paths."""
    from leaderboard.stats import read_stats

    plt = _pyplot()
    import seaborn as sns

    stats = read_stats(stats_json)  # its shape checked: a foreign file is one clear error, not a KeyError
    comparisons = stats["comparisons"]
    algos = sorted({a for c in comparisons.values() for a in c["algorithms"]})
    palette = sns.color_palette("colorblind", n_colors=max(len(algos), 1))
    colors = {a: palette[i % len(palette)] for i, a in enumerate(algos)}  # one colour per method everywhere
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    with plt.rc_context({**sns.axes_style("white"), **RC}):
        for comparison, cstats in comparisons.items():
            cstats = {**cstats, "settings": stats["settings"]}
            for name in FIGURES:
                if not has_data(cstats, name):
                    continue
                fig = _PLOTS[name](cstats, colors)
                try:
                    written += _save(fig, Path(out_dir) / comparison_dir(comparison) / name)
                finally:
                    plt.close(fig)
            published = _published_returns(comparison)
            for env, curves in cstats.get("env_curves", {}).items():
                fig = _env_curve(env, curves, colors, published.get(env, []))
                try:
                    written += _save(fig, Path(out_dir) / comparison_dir(comparison) / curve_name(env))
                finally:
                    plt.close(fig)
    return written


def curve_name(env: str) -> str:
    """The file stem of a task's learning-curve figure within its comparison's folder."""
    return "curve-" + env.replace("/", "__")


def _published_returns(comparison: str) -> dict[str, list[tuple[str, float]]]:
    """The numbers a paper prints for this experiment's tasks (return claims): drawn over our curves."""
    from coopbench.claims import PAPERS, load_paper

    paper, _, experiment = comparison.partition("/")
    if paper not in PAPERS or not experiment:
        return {}
    out: dict[str, list[tuple[str, float]]] = {}
    for claim in load_paper(paper).claims:
        if (claim.experiment == experiment and claim.metric == "return" and claim.published.kind == "number"
                and claim.tasks):
            out.setdefault(claim.tasks[0], []).append((claim.methods[0], claim.published.value))
    return out


def _env_curve(env: str, curves: dict, colors: dict, published: list[tuple[str, float]]) -> plt.Figure:
    """Mean greedy return against env steps per method, with its 95% bootstrap band; dashed: published."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.0))
    for algo, curve in curves.items():
        steps = _array(curve["env_steps"])
        ax.plot(steps, _array(curve["point"]), color=colors[algo], label=algo, linewidth=1.8)
        ax.fill_between(steps, _array(curve["ci_low"]), _array(curve["ci_high"]), color=colors[algo], alpha=0.2)
    for algo, value in published:
        ax.axhline(value, color=colors.get(algo, "black"), linestyle="--", linewidth=1.2,
                   label=f"{algo}, published")
    ax.set_xlabel("Environment steps")
    ax.set_ylabel("Mean evaluation return (greedy)")
    ax.set_title(env)
    ax.legend(fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    return fig


def _save(fig: plt.Figure, stem: Path) -> list[Path]:
    # The tight bounding box once for both formats: `bbox_inches="tight"` lays the figure out again (a dry draw)
    # in every savefig, a quarter of this stage's time.
    fig.draw_without_rendering()
    bbox = fig.get_tightbbox().padded(_pyplot().rcParams["savefig.pad_inches"])
    paths = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches=bbox, metadata=SAVE_METADATA[fmt])
        paths.append(path)
    return paths


def _array(values) -> np.ndarray:
    """stats.json writes NaN as null; plot it as NaN (a gap)."""
    return np.array([np.nan if v is None else v for v in np.atleast_1d(values)], dtype=float)


def _aggregate(stats: dict, colors: dict) -> plt.Figure:
    from rliable import plot_utils

    plt = _pyplot()
    agg = stats["aggregate"]
    algos = list(agg)[::-1]  # rliable draws the first algorithm at the bottom; list them top-down
    points = {a: _array([agg[a][m]["point"] for m in METRIC_NAMES]) for a in algos}
    intervals = {
        a: np.stack([_array([agg[a][m][k] for m in METRIC_NAMES]) for k in ("ci_low", "ci_high")])
        for a in algos
    }
    fig, axes = plot_utils.plot_interval_estimates(
        points,
        intervals,
        metric_names=list(METRIC_NAMES.values()),
        algorithms=algos,
        colors=colors,
        xlabel=f"Normalized score (final, {stats['settings']['confidence']:.0%} stratified-bootstrap CI)",
        row_height=max(0.6, 1.8 / len(algos)),  # rliable's default is too flat for few algorithms
    )
    for ax in np.atleast_1d(axes):  # rliable's default ticks overlap on narrow panels
        ax.xaxis.set_major_locator(plt.MaxNLocator(3))
    return fig


def _performance_profile(stats: dict, colors: dict) -> plt.Figure:
    from rliable import plot_utils

    prof = stats["performance_profile"]
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        {a: _array(p["point"]) for a, p in prof["profiles"].items()},
        _array(prof["tau"]),
        performance_profile_cis={
            a: (_array(p["ci_low"]), _array(p["ci_high"])) for a, p in prof["profiles"].items()
        },
        ax=ax,
        colors=colors,
        xlabel=r"Normalized score ($\tau$)",
        ylabel=r"Fraction of runs with score $> \tau$",
        legend=True,
        labelsize="large",
        ticklabelsize="medium",
        legendsize="medium",
    )
    return fig


def _sample_efficiency(stats: dict, colors: dict) -> plt.Figure:
    from rliable import plot_utils

    curves = stats["sample_efficiency"]
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    plot_utils.plot_sample_efficiency_curve(
        _array(curves["env_steps"]),
        {a: _array(c["point"]) for a, c in curves["iqm"].items()},
        {a: np.stack([_array(c["ci_low"]), _array(c["ci_high"])]) for a, c in curves["iqm"].items()},
        algorithms=list(curves["iqm"]),
        colors=colors,
        ax=ax,
        xlabel="Environment steps",
        ylabel="IQM normalized score",
        labelsize="large",
        ticklabelsize="medium",
        legend=True,
        legendsize="medium",
    )
    return fig


_PLOTS = {
    "aggregate": _aggregate,
    "performance_profile": _performance_profile,
    "sample_efficiency": _sample_efficiency,
}
