"""The leaderboard stages on synthetic run directories with known numbers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rliable import library as rly
from rliable import metrics
from scipy import stats as scipy_stats

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_json, read_parquet, write_json, write_parquet
from coopbench.base.normalization import normalized_score, resolve, rule_text
from coopbench.base.schema import MANIFEST_KEYS, METRICS_COLUMNS, SCHEMA_VERSION, SCORES_COLUMNS
from leaderboard.__main__ import main
from leaderboard.aggregate import aggregate
from leaderboard.claims import judge_suite
from leaderboard.figures import make_figures
from leaderboard.site import build_site, fmt_estimate, run_page
from leaderboard.stats import (
    CONFIDENCE,
    _score_distribution,
    aggregate_metrics,
    bootstrap_intervals,
    compute_stats,
    iqm_per_column,
    probability_of_improvement,
    trimmed_mean,
)

REPO = Path(__file__).resolve().parents[1]
MIN_MAX = {
    "method": "min_max",
    "low": -20.0,
    "high": 20.0,
    "rule": "(return + 20) / 40: worst and best payoff",
}
RAW = {"method": "raw", "rule": "raw return"}
REPS = 200  # enough for the assertions, fast enough for the test budget


def make_run(
    root: Path, env: str, algo: str, seed: int, returns, steps=None, norm=MIN_MAX, **overrides
) -> Path:
    """Write one run directory (manifest.json + metrics.parquet) with the given evaluation returns."""
    steps = list(steps or [100 * (i + 1) for i in range(len(returns))])
    run_dir = root / "runs" / env / algo / "abc123" / f"seed-{seed}"
    metrics = pd.DataFrame({column: 0.0 for column in METRICS_COLUMNS}, index=range(len(returns)))
    metrics["iteration"] = range(1, len(returns) + 1)
    metrics["env_steps"] = steps
    metrics["eval_return_mean"] = [float(r) for r in returns]
    metrics["eval_return_std"] = 0.5
    write_parquet(run_dir / "metrics.parquet", metrics)
    manifest = {key: None for key in MANIFEST_KEYS}
    manifest.update(
        schema_version=SCHEMA_VERSION,
        env=env,
        algo=algo,
        seed=seed,
        env_family=env.split("/")[0],
        algo_family="on_policy",
        config={
            "env": {"name": env},
            "algo": {"lr": 0.0005, "note": "<script>alert(1)</script>"},
            "run": {"seed": seed},
        },
        config_hash="abc123",
        normalization=norm,
        status="completed",
        code={"commit": "0123456789abcdef", "dirty": False},
        packages={"torch": "2.13.0", "numpy": "2.3.5"},
        host="testhost",
        device="cpu",
        torch_threads=1,
        container_image="none",
        started_at="2026-11-23T06:00:00+00:00",
        finished_at="2026-11-23T06:01:00+00:00",
        wall_time_s=60.0,
        env_steps=max(steps),
        env_steps_per_s=max(steps) / 60.0,
        resumes=0,
        final={
            "env_steps": max(steps),
            "eval_return_mean": float(returns[-1]),
            "eval_return_std": 0.5,
            "normalized_score": None,
        },
    )
    manifest.update(overrides)
    write_json(run_dir / "manifest.json", manifest)
    return run_dir


def make_suite(root: Path) -> list[Path]:
    """x reaches the best payoff on every run, y the worst; env b uses raw returns."""
    dirs = []
    for seed in range(3):
        dirs.append(make_run(root, "matrix/a", "x", seed, [0.0, 20.0]))
        dirs.append(make_run(root, "matrix/a", "y", seed, [0.0, -20.0]))
        dirs.append(make_run(root, "matrix/b", "x", seed, [0.5, 1.0], norm=RAW))
        dirs.append(make_run(root, "matrix/b", "y", seed, [0.5, 0.0], norm=RAW))
    return dirs


@pytest.fixture
def suite(tmp_path: Path) -> list[Path]:
    """A suite of run dirs that a test may damage."""
    return make_suite(tmp_path)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """All four stages run once on a suite; tests must not modify these files."""
    root = tmp_path_factory.mktemp("pipeline")
    out = root / "results" / "demo"
    paths = {"runs": make_suite(root), "scores": out / "scores.parquet", "stats": out / "stats.json"}
    paths.update(figures=out / "figures", site=root / "site", runs_json=out / "runs.json", claims=out / "claims")
    aggregate(paths["runs"], paths["scores"], "demo")
    compute_stats(paths["scores"], paths["stats"], reps=REPS)
    make_figures(paths["stats"], paths["figures"])
    judge_suite("demo", paths["scores"], paths["runs_json"], root / "analyses", paths["claims"], reps=REPS)
    build_site(paths["stats"], paths["scores"], paths["figures"], paths["site"], paths["runs_json"], paths["claims"],
               "demo")
    return paths


def demo_stats(path: Path) -> dict:
    """The statistics of the synthetic suite's own runs (comparison suite:demo)."""
    return read_json(path)["comparisons"]["suite:demo"]


def site_of(tmp_path: Path, runs: list[Path], out: Path | None = None) -> Path:
    """Every stage on `runs`; returns the site directory."""
    aggregate(runs, tmp_path / "scores.parquet", "demo")
    compute_stats(tmp_path / "scores.parquet", tmp_path / "stats.json", reps=REPS)
    make_figures(tmp_path / "stats.json", tmp_path / "figures")
    judge_suite("demo", tmp_path / "scores.parquet", tmp_path / "runs.json", tmp_path / "analyses",
                tmp_path / "claims", reps=REPS)
    site = out or tmp_path / "site"
    build_site(tmp_path / "stats.json", tmp_path / "scores.parquet", tmp_path / "figures", site,
               tmp_path / "runs.json", tmp_path / "claims", "demo")
    return site


# ---------------------------------------------------------------- aggregate


def test_aggregate_normalizes_each_eval_point(tmp_path: Path):
    minmax = make_run(tmp_path, "matrix/acpo-3x3", "mappo", 0, [10.0, -20.0, 0.0], steps=[300, 100, 200])
    raw = make_run(tmp_path, "vmas/navigation", "mappo", 1, [3.5, 7.0], norm=RAW)
    out = tmp_path / "scores.parquet"
    aggregate([minmax, raw], out, "demo")

    scores = read_parquet(out)
    assert list(scores.columns) == SCORES_COLUMNS
    assert len(scores) == 5  # one row per run x evaluation point
    a = scores[scores["env"] == "matrix/acpo-3x3"]
    assert a["env_steps"].tolist() == [100, 200, 300]
    assert a["normalized_score"].tolist() == pytest.approx([0.0, 0.5, 0.75])
    assert a["is_final"].tolist() == [False, False, True]  # the max env_steps, not the last row written
    b = scores[scores["env"] == "vmas/navigation"]
    assert b["normalized_score"].tolist() == b["eval_return_mean"].tolist() == [3.5, 7.0]
    assert b["is_final"].tolist() == [False, True]
    assert set(scores["run_dir"]) == {str(minmax), str(raw)}
    assert set(scores["comparison"]) == {"suite:demo"}
    runs = read_json(tmp_path / "runs.json")
    assert [r["status"] for r in runs["runs"]] == ["completed", "completed"] and runs["skipped"] == []


def test_one_normalization_for_the_manifest_the_scores_and_the_site():
    """The run driver's final score (a float) and aggregate's column (a Series) are one formula; env_bounds is
    resolved into numbers before a manifest records it."""
    assert normalized_score(10.0, MIN_MAX) == 0.75
    assert normalized_score(pd.Series([-20.0, 10.0]), MIN_MAX).tolist() == [0.0, 0.75]
    assert normalized_score(3.5, RAW) == 3.5
    with pytest.raises(ValueError, match="env_bounds"):
        normalized_score(1.0, {"method": "env_bounds"})
    resolved = resolve({"method": "env_bounds"}, "matrix/x", (-2, 6))
    assert resolved == {"method": "min_max", "low": -2.0, "high": 6.0} and normalized_score(4.0, resolved) == 0.75
    with pytest.raises(CoopbenchError, match="matrix/x has no known return bounds"):
        resolve({"method": "env_bounds"}, "matrix/x", None)
    assert rule_text({"method": "min_max", "low": -2.0, "high": 6.0}) == "(return - -2.0) / (6.0 - -2.0)"
    assert rule_text(MIN_MAX) == MIN_MAX["rule"] and rule_text({"method": "raw"}) == "raw return (not normalized)"


def _corrupt_metrics(run_dir: Path) -> Path:
    (run_dir / "metrics.parquet").write_bytes(b"PAR1 this is not parquet")
    return run_dir / "metrics.parquet"


def _missing_manifest(run_dir: Path) -> Path:
    (run_dir / "manifest.json").unlink()
    return run_dir / "manifest.json"


def _unknown_status(run_dir: Path) -> Path:
    manifest = read_json(run_dir / "manifest.json")
    write_json(run_dir / "manifest.json", {**manifest, "status": "half-done"})
    return run_dir / "manifest.json"


def _old_schema(run_dir: Path) -> Path:
    manifest = read_json(run_dir / "manifest.json")
    write_json(run_dir / "manifest.json", {**manifest, "schema_version": 0})
    return run_dir / "manifest.json"


@pytest.mark.parametrize("damage", [_corrupt_metrics, _missing_manifest, _unknown_status, _old_schema])
def test_aggregate_rejects_a_bad_run_and_writes_nothing(tmp_path: Path, suite: list[Path], damage):
    bad_file = damage(suite[3])
    out = tmp_path / "scores.parquet"
    with pytest.raises(CoopbenchError, match=re.escape(str(bad_file))):
        aggregate(suite, out, "demo")
    assert not out.exists()
    assert not list(tmp_path.glob(".scores.parquet*"))  # no temporary file left behind


def test_a_run_recorded_as_failed_is_listed_not_scored_and_the_site_still_builds(tmp_path: Path, suite):
    manifest = read_json(suite[3] / "manifest.json")
    failure = {k: manifest[k] for k in ("schema_version", "env", "algo", "seed", "config", "config_hash", "code",
                                        "host", "finished_at")}
    write_json(suite[3] / "manifest.json", {**failure, "status": "failed", "reason": "RuntimeError: boom"})
    write_parquet(suite[3] / "metrics.parquet", pd.DataFrame(columns=METRICS_COLUMNS))
    site = site_of(tmp_path, suite)
    runs = read_json(tmp_path / "runs.json")["runs"]
    assert [r["reason"] for r in runs if r["status"] == "failed"] == ["RuntimeError: boom"]
    scores = read_parquet(tmp_path / "scores.parquet")
    assert len(scores.drop_duplicates(["env", "algo", "seed"])) == len(suite) - 1
    runs_page = (site / "runs.html").read_text()
    assert "RuntimeError: boom" in runs_page and 'id="not-completed"' in runs_page
    assert "1 not completed" in (site / "index.html").read_text()


def test_aggregate_rejects_a_duplicate_run(tmp_path: Path, suite: list[Path]):
    with pytest.raises(CoopbenchError, match="appears twice"):
        aggregate(suite + [suite[0]], tmp_path / "scores.parquet", "demo")


# ---------------------------------------------------------------- stats


def test_stats_known_answers(pipeline: dict):
    stats = demo_stats(pipeline["stats"])
    assert stats["tasks"] == ["matrix/a"]
    assert "raw returns" in stats["dropped_tasks"]["matrix/b"]  # raw scores stay out of cross-task aggregates
    for algo, expected in {"x": 1.0, "y": 0.0}.items():
        for metric in ("iqm", "mean", "median"):
            estimate = stats["aggregate"][algo][metric]
            assert estimate["point"] == expected
            assert estimate["ci_low"] <= expected <= estimate["ci_high"]
        assert stats["aggregate"][algo]["optimality_gap"]["point"] == pytest.approx(1.0 - expected)
    poi = {(p["x"], p["y"]): p for p in stats["probability_of_improvement"]}
    assert poi[("x", "y")]["point"] == 1.0 and poi[("x", "y")]["ci_low"] == 1.0
    assert poi[("y", "x")]["point"] == 0.0

    per_env = {(r["env"], r["algo"]): r for r in stats["per_env"]}
    assert per_env[("matrix/a", "x")]["return_mean"] == {"point": 20.0, "ci_low": 20.0, "ci_high": 20.0}
    assert per_env[("matrix/a", "y")]["normalized_mean"]["point"] == 0.0
    assert per_env[("matrix/b", "x")]["n_seeds"] == 3 and per_env[("matrix/b", "x")]["final_env_steps"] == [
        200
    ]

    curves = stats["sample_efficiency"]
    assert curves["env_steps"] == [100, 200]
    # at step 100: env a 0.5 (return 0 of [-20, 20]) for both algorithms
    assert curves["iqm"]["x"]["point"] == [0.5, 1.0]
    assert curves["iqm"]["y"]["point"] == [0.5, 0.0]
    profile = stats["performance_profile"]
    assert profile["profiles"]["x"]["point"][0] == 1.0 and profile["profiles"]["y"]["point"][-1] == 0.0


def test_stats_iqm_matches_hand_computation(tmp_path: Path):
    finals = [0.0, 0.1, 0.2, 0.3, 0.5, 0.9, 1.0, 1.0]
    runs = [
        make_run(tmp_path, "matrix/a", "x", k, [-20.0 + 40.0 * f], norm=MIN_MAX) for k, f in enumerate(finals)
    ]
    aggregate(runs, tmp_path / "scores.parquet", "demo")
    stats = compute_stats(tmp_path / "scores.parquet", tmp_path / "stats.json", reps=REPS)["comparisons"]["suite:demo"]
    iqm = (0.2 + 0.3 + 0.5 + 0.9) / 4  # drop the lowest and highest quarter (2 of 8 each)
    assert iqm == pytest.approx(scipy_stats.trim_mean(finals, 0.25))
    assert stats["aggregate"]["x"]["iqm"]["point"] == pytest.approx(iqm)
    assert stats["aggregate"]["x"]["mean"]["point"] == pytest.approx(np.mean(finals))
    assert stats["per_env"][0]["normalized_iqm"]["point"] == pytest.approx(iqm)
    assert stats["probability_of_improvement"] == []  # one algorithm: no pairs


def test_stats_handles_uneven_coverage_honestly(tmp_path: Path):
    runs = [make_run(tmp_path, "matrix/a", "x", k, [20.0]) for k in range(3)]
    runs += [make_run(tmp_path, "matrix/b", "x", k, [20.0]) for k in range(2)]
    runs += [make_run(tmp_path, "matrix/a", "y", 0, [-20.0])]  # one seed, one task
    runs += [make_run(tmp_path, "matrix/c", "y", 0, [-20.0])]
    aggregate(runs, tmp_path / "scores.parquet", "demo")
    stats = compute_stats(tmp_path / "scores.parquet", tmp_path / "stats.json", reps=REPS)["comparisons"]["suite:demo"]
    assert stats["tasks"] == ["matrix/a"]
    assert set(stats["dropped_tasks"]) == {"matrix/b", "matrix/c"}
    assert "y" in stats["dropped_tasks"]["matrix/b"] and "x" in stats["dropped_tasks"]["matrix/c"]
    assert stats["seeds_per_algorithm"] == {"x": 3, "y": 1}
    y = stats["aggregate"]["y"]["iqm"]
    assert y == {"point": 0.0, "ci_low": 0.0, "ci_high": 0.0}  # one seed: the CI collapses to the point
    assert len(stats["per_env"]) == 4  # the per-env table keeps every env x algo


def test_stats_drops_unequal_seeds_within_an_algorithm(tmp_path: Path):
    runs = [make_run(tmp_path, "matrix/a", "x", k, [20.0]) for k in range(3)]
    runs += [make_run(tmp_path, "matrix/b", "x", k, [20.0]) for k in range(2)]
    aggregate(runs, tmp_path / "scores.parquet", "demo")
    stats = compute_stats(tmp_path / "scores.parquet", tmp_path / "stats.json", reps=REPS)["comparisons"]["suite:demo"]
    assert stats["seeds_per_algorithm"] == {"x": 2}
    assert [(r["env"], r["seed"]) for r in stats["excluded_runs"]] == [("matrix/a", 2)]


def test_stats_is_reproducible(pipeline: dict, tmp_path: Path):
    again = tmp_path / "again.json"
    compute_stats(pipeline["scores"], again, reps=REPS)
    first, second = read_json(pipeline["stats"]), read_json(again)
    assert first == second


def _rliable(score_dict: dict, func, reps: int, seed: int = 0):
    np.random.seed(seed)
    return rly.get_interval_estimates(score_dict, func, reps=reps, confidence_interval_size=CONFIDENCE)


def test_fast_estimators_agree_with_rliable():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (5, 3)).astype(float), rng.integers(0, 4, (7, 3)).astype(float)  # with ties
    assert probability_of_improvement(x[None], y[None])[0] == pytest.approx(metrics.probability_of_improvement(x, y))
    assert probability_of_improvement(x[None], x[None])[0] == pytest.approx(0.5)
    curves = rng.normal(size=(6, 3, 4))
    expected = [metrics.aggregate_iqm(curves[..., t]) for t in range(4)]
    assert iqm_per_column(curves[None])[0] == pytest.approx(expected)
    for m in (1, 3, 8, 13, 50):  # scipy's own arithmetic, to the bit
        v = rng.normal(size=m)
        assert trimmed_mean(v[None])[0] == metrics.aggregate_iqm(v)


@pytest.mark.parametrize("runs", [1, 3, 10, 23])
def test_bootstrap_over_all_replications_is_rliables_to_the_bit(runs: int):
    """bootstrap_intervals evaluates the statistics over every replication at once; rliable loops over them. The
    draws (numpy's global generator, reseeded) and the arithmetic are the same, so every number is equal."""
    rng = np.random.default_rng(runs)
    reps = 300  # more than one resampling chunk when RESAMPLE_CHUNK is small; several draws per chunk either way
    scores = {"a": rng.integers(0, 5, (runs, 4)) / 4.0, "b": rng.normal(0.5, 0.4, (runs, 4))}  # ties and spread

    def per_replication(batched):
        return lambda *arrays: batched(*(a[None] for a in arrays))[0]

    def same(ours, theirs):
        for key in theirs[0]:
            np.testing.assert_array_equal(np.asarray(ours[0][key]), np.asarray(theirs[0][key]))
            np.testing.assert_array_equal(ours[1][key], theirs[1][key])

    def aggregate(s):
        return np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s), metrics.aggregate_median(s),
                         metrics.aggregate_optimality_gap(s)])

    same(bootstrap_intervals(scores, aggregate_metrics, reps, 0), _rliable(scores, aggregate, reps))
    taus = np.linspace(-0.5, 1.5, 11)
    same(bootstrap_intervals(scores, lambda s: _score_distribution(s, taus), reps, 0),
         _rliable(scores, per_replication(lambda s: _score_distribution(s, taus)), reps))
    for other in (runs, runs + 2):  # one bound: one draw per chunk; two bounds: rliable's interleaved draws
        pair = {"pair": [scores["a"], rng.integers(0, 5, (other, 4)) / 4.0]}
        same(bootstrap_intervals(pair, lambda a, b: probability_of_improvement(a, b)[:, None], reps, 0),
             _rliable(pair, lambda a, b: probability_of_improvement(a[None], b[None]), reps))
    for shape in ((runs, 1), (runs, 4), (runs, 3, 6), (runs, 1, 9)):  # one column pools, several do not
        tensor = {"t": rng.normal(size=shape)}
        same(bootstrap_intervals(tensor, iqm_per_column, reps, 0), _rliable(tensor, per_replication(iqm_per_column),
                                                                             reps))
        same(bootstrap_intervals(tensor, lambda s: s.mean(axis=1).reshape(len(s), -1), reps, 0),
             _rliable(tensor, lambda s: s.mean(axis=0).ravel(), reps))


def test_stats_rejects_mixed_configs_within_a_comparison_but_not_across(tmp_path: Path):
    runs = [make_run(tmp_path, "matrix/a", "x", 0, [20.0])]
    other = make_run(tmp_path / "old", "matrix/a", "x", 1, [20.0], config_hash="def456")
    aggregate(runs + [other], tmp_path / "scores.parquet", "demo")
    with pytest.raises(CoopbenchError, match="mixes configs"):
        compute_stats(tmp_path / "scores.parquet", tmp_path / "stats.json", reps=REPS)
    aggregate(runs + [other], tmp_path / "scores.parquet", "demo",
              comparisons={runs[0]: ["acpo/x"], other: ["cora/y"]})
    stats = compute_stats(tmp_path / "scores.parquet", tmp_path / "stats.json", reps=REPS)
    assert sorted(stats["comparisons"]) == ["acpo/x", "cora/y"]


# ---------------------------------------------------------------- figures


def test_figures_are_written_per_comparison_and_deterministic(pipeline: dict, tmp_path: Path):
    names = sorted(str(p.relative_to(pipeline["figures"])) for p in pipeline["figures"].rglob("*.*"))
    assert names == sorted(
        f"suite_demo/{n}.{f}" for n in ("aggregate", "performance_profile", "sample_efficiency", "curve-matrix__a",
                                         "curve-matrix__b") for f in ("png", "svg")
    )
    make_figures(pipeline["stats"], tmp_path / "again")
    for name in names:
        assert (tmp_path / "again" / name).read_bytes() == (pipeline["figures"] / name).read_bytes(), name


# ---------------------------------------------------------------- site


class _Tables(HTMLParser):
    """Collects the per-env results tables: {env: {algo: [cell texts]}}."""

    def __init__(self):
        super().__init__()
        self.tables, self._env, self._row, self._cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "env-table" in attrs.get("class", ""):
            self._env = attrs["data-env"]
            self.tables[self._env] = {}
        elif tag == "tr" and self._env and "data-algo" in attrs:
            self._row = self.tables[self._env].setdefault(attrs["data-algo"], [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._env = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_site_has_one_table_per_env_with_the_right_numbers(pipeline: dict):
    index = (pipeline["site"] / "index.html").read_text()
    comparison = (pipeline["site"] / "comparisons" / "suite-demo.html").read_text()
    parser = _Tables()
    parser.feed(comparison)
    assert set(parser.tables) == {"matrix/a", "matrix/b"}
    stats = demo_stats(pipeline["stats"])
    for row in stats["per_env"]:
        cells = parser.tables[row["env"]][row["algo"]]
        assert cells[:7] == [
            row["algo"],
            "abc123",
            "3",
            fmt_estimate(row["return_mean"]),
            fmt_estimate(row["normalized_mean"]),
            fmt_estimate(row["normalized_iqm"]),
            "200",
        ]
    assert parser.tables["matrix/a"]["x"][3] == "20 [20, 20]"
    assert all(len(algos) == 2 for algos in parser.tables.values())
    assert "(return + 20) / 40: worst and best payoff" in comparison  # the env's normalization rule
    assert 'src="../figures/suite_demo/aggregate.svg"' in comparison
    assert 'src="../figures/suite_demo/curve-matrix__a.svg"' in comparison  # each task's learning curves
    assert "http" not in index and "http" not in comparison  # offline, relative links
    assert 'id="verdict-counts"' in index and index.index('id="claims"') < index.index('id="comparisons"')

    for run_dir in pipeline["runs"]:
        manifest = read_json(run_dir / "manifest.json")
        page = pipeline["site"] / run_page(
            manifest["env"], manifest["algo"], manifest["config_hash"], manifest["seed"]
        )
        assert page.is_file()
        runs_page = (pipeline["site"] / "runs.html").read_text()
        assert f'href="{run_page(manifest["env"], manifest["algo"], "abc123", manifest["seed"])}"' in runs_page
    html = page.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html  # config values are escaped
    assert 'href="../../../../assets/style.css"' in html and "testhost" in html
    assert (pipeline["site"] / "assets" / "style.css").is_file()


def test_site_rebuild_replaces_it_and_a_failed_build_keeps_it(pipeline: dict, tmp_path: Path):
    site = tmp_path / "site"
    args = (pipeline["stats"], pipeline["scores"])
    rest = (pipeline["runs_json"], pipeline["claims"], "demo")
    build_site(*args, pipeline["figures"], site, *rest)
    (site / "stale.html").write_text("from an older build")
    build_site(*args, pipeline["figures"], site, *rest)
    assert not (site / "stale.html").exists()  # the site is replaced whole

    before = (site / "index.html").read_text()
    incomplete = tmp_path / "figures"
    shutil.copytree(pipeline["figures"], incomplete)
    (incomplete / "suite_demo" / "aggregate.png").unlink()
    with pytest.raises(CoopbenchError, match="aggregate.png"):
        build_site(*args, incomplete, site, *rest)
    assert (site / "index.html").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".site")] == []  # no staging left


def test_site_refuses_to_replace_a_foreign_directory(pipeline: dict, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CoopbenchError, match="not a coopbench site"):
        build_site(pipeline["stats"], pipeline["scores"], pipeline["figures"], tmp_path, pipeline["runs_json"],
                   pipeline["claims"], "demo")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_site_rejects_a_runs_json_that_does_not_match_scores(pipeline: dict, tmp_path: Path):
    runs = read_json(pipeline["runs_json"])
    write_json(tmp_path / "runs.json", {**runs, "runs": runs["runs"][1:]})
    with pytest.raises(CoopbenchError, match="differ"):
        build_site(pipeline["stats"], pipeline["scores"], pipeline["figures"], tmp_path / "s", tmp_path / "runs.json",
                   pipeline["claims"], "demo")


# ---------------------------------------------------------------- CLI


def test_cli_runs_every_stage(tmp_path: Path, suite: list[Path]):
    out = tmp_path / "results"
    (tmp_path / "runs.txt").write_text("\n".join(map(str, suite[1:])) + "\n")
    argv = [
        [
            "aggregate",
            "--suite",
            "demo",
            "--out",
            f"{out}/scores.parquet",
            str(suite[0]),
            "--runs-from",
            f"{tmp_path}/runs.txt",
        ],
        ["stats", "--scores", f"{out}/scores.parquet", "--out", f"{out}/stats.json", "--reps", "50"],
        ["figures", "--stats", f"{out}/stats.json", "--out-dir", f"{out}/figures"],
        ["claims", "--suite", "demo", "--scores", f"{out}/scores.parquet", "--runs", f"{out}/runs.json",
         "--analyses", f"{out}/analyses", "--out-dir", f"{out}/claims", "--reps", "50"],
        ["site", "--suite", "demo", "--stats", f"{out}/stats.json", "--scores", f"{out}/scores.parquet",
         "--runs", f"{out}/runs.json", "--claims", f"{out}/claims", "--figures", f"{out}/figures",
         "--out", f"{tmp_path}/site"],
    ]
    for args in argv:
        assert main(args) == 0, args
    assert (tmp_path / "site" / "index.html").is_file()


def test_cli_missing_input_exits_2_with_one_line(tmp_path: Path):
    missing = tmp_path / "nope" / "scores.parquet"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "leaderboard",
            "stats",
            "--scores",
            str(missing),
            "--out",
            str(tmp_path / "s.json"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert not (tmp_path / "s.json").exists()


def test_no_shared_task_gives_no_placeholder_figure_and_says_why(tmp_path: Path):
    runs = [make_run(tmp_path, "matrix/a", "x", 0, [20.0]), make_run(tmp_path, "matrix/b", "y", 0, [-20.0])]
    site = site_of(tmp_path, runs)
    stats = demo_stats(tmp_path / "stats.json")
    assert stats["tasks"] == [] and stats["aggregate"] == {} and stats["sample_efficiency"]["iqm"] == {}
    assert len(stats["per_env"]) == 2
    drawn = {p.stem for p in (tmp_path / "figures").rglob("*.svg")}
    assert drawn == {"curve-matrix__a", "curve-matrix__b"}  # learning curves per task, no aggregate placeholder
    page = (site / "comparisons" / "suite-demo.html").read_text()
    assert "no runs of y" in page and "aggregate.svg" not in page


def test_what_each_agent_sent_reaches_runs_json_and_the_comparison_page(tmp_path: Path):
    """AS and its baselines record their messages (optional metrics columns): aggregate keeps the final totals per
    run, the comparison page lists them per task and method; a method that records none is not listed."""
    runs = []
    for seed, (floats, sent) in enumerate([(1200.0, 4800.0), (1800.0, 7200.0)]):
        run_dir = make_run(tmp_path, "matrix/a", "talker", seed, [0.0, 20.0])
        metrics = pd.read_parquet(run_dir / "metrics.parquet")
        metrics["comm_floats_per_agent"] = [floats / 2, floats]
        metrics["comm_bytes_per_agent"] = [sent / 2, sent]
        metrics["anticipation_mse"] = float("nan")
        write_parquet(run_dir / "metrics.parquet", metrics)
        runs += [run_dir, make_run(tmp_path, "matrix/a", "silent", seed, [0.0, -20.0])]
    site = site_of(tmp_path, runs)
    recorded = {(r["algo"], r["seed"]): r.get("communication") for r in read_json(tmp_path / "runs.json")["runs"]}
    assert recorded[("talker", 0)] == {"floats_per_agent": 1200.0, "bytes_per_agent": 4800.0, "env_steps": 200}
    assert recorded[("silent", 0)] is None
    page = (site / "comparisons" / "suite-demo.html").read_text()
    table = page[page.index('class="results sortable communication-table"'):]
    table = table[:table.index("</table>")]
    assert "talker" in table and "silent" not in table
    assert "1,500" in table and "6,000" in table  # the means over the two seeds
