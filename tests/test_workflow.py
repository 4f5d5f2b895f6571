"""End to end: the smoke suite through Snakemake in a temporary directory builds the site."""

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from coopbench.config import plan_suite
from leaderboard.site import run_page
from tests.conftest import REPO


class Tables(HTMLParser):
    """Rows of every <table>, keyed by its id or data-env attribute."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._current = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._current = self.tables.setdefault(attrs.get("data-env") or attrs.get("id") or "?", [])
        elif tag == "tr" and self._current is not None:
            self._current.append([])
        elif tag in ("td", "th") and self._current is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._current = None
        elif tag in ("td", "th") and self._cell is not None:
            self._current[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.mark.slow
def test_smoke_suite_through_snakemake(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    site = tmp_path / "site"
    proc = subprocess.run(
        [str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "2",
         "--config", "suite=smoke", f"site_dir={site}", "bootstrap_reps=200"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    planned = plan_suite("smoke")
    scores = pd.read_parquet(tmp_path / "results/smoke/scores.parquet")
    assert scores[scores.is_final].shape[0] == len(planned)

    tables = Tables()
    tables.feed((site / "index.html").read_text())
    runs_table = tables.tables["all-runs"][1:]  # minus the header row
    assert len(runs_table) == len(planned)
    for env_name in {r.config.env for r in planned}:
        rows = tables.tables[env_name][1:]
        assert sorted(row[0] for row in rows) == sorted({r.config.algo for r in planned})
    for run in planned:
        run_dir = run.config.run_dir(tmp_path / "results", run.seed)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        [row] = [r for r in runs_table if r[:4] == [run.config.env, run.config.algo, run.config.hash, str(run.seed)]]
        assert float(row[6]) == pytest.approx(manifest["final"]["eval_return_mean"], rel=1e-3, abs=1e-3)
        page = site / run_page(run.config.env, run.config.algo, run.config.hash, run.seed)
        assert run.config.hash in page.read_text()
    for figure in ("aggregate", "performance_profile", "sample_efficiency"):
        assert (site / "figures" / f"{figure}.svg").stat().st_size > 1000
