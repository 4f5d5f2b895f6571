"""The workflow: its config checked against its schema (one line for a bad value), command lines that stay short
whatever the suite's size, and end to end, the smoke suite through Snakemake in a temporary directory builds the
site."""

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml

from coopbench.config import plan_suite
from leaderboard.site import run_page
from tests.conftest import REPO


def snakemake(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    return subprocess.run([str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize(("setting", "line"), [
    ("bootstrap_reps=many", "coopbench: error: workflow config bootstrap_reps='many': 'many' is not of type "
                            "'integer' (fix: bootstrap_reps is the number of stratified bootstrap resamples behind "
                            "every confidence interval (stats, claims); set it in config/workflow.yaml or with "
                            "--config)"),
    ("bootstrap_reps=0", "coopbench: error: workflow config bootstrap_reps=0: 0 is less than the minimum of 1 (fix: "),
    ("results_dir=", "coopbench: error: workflow config results_dir=None: None is not of type 'string' (fix: "
                     "results_dir is the folder every run and stage writes under;"),
    ("bootstrap_rep=200", "coopbench: error: workflow config: Additional properties are not allowed ('bootstrap_rep' "
                          "was unexpected) (fix: valid keys: suite, results_dir, site_dir, bootstrap_reps,"),
])
def test_a_bad_workflow_config_value_is_one_line(tmp_path, setting, line):
    proc = snakemake("-n", "--cores", "1", "--config", "suite=smoke", setting, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [e for e in proc.stderr.splitlines() if "error" in e.lower()]
    assert len(errors) == 1 and errors[0].startswith(line), proc.stderr
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []


def test_every_workflow_value_is_in_the_config_file_and_no_rule_has_a_default():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config/workflow.yaml").read_text())
    assert set(config) == set(schema["required"]) == set(schema["properties"])
    assert set(config["run_resources"]) == set(schema["properties"]["run_resources"]["required"])
    for source in [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]:
        assert not re.search(r"config\.get\(", source.read_text()), f"{source.name} reads config with a default"


@pytest.mark.slow
def test_command_lines_stay_short_whatever_the_suite_size(tmp_path):
    """No rule passes a list of runs on its command line: the `papers` suite (hundreds of runs) gives commands as
    short as the smoke suite's (a run list there once made aggregate's command 55 KB, near the 128 KiB limit of one
    argument)."""
    longest, longest_stage = {}, {}
    for suite in ("smoke", "papers"):
        proc = snakemake("-n", "-p", "--cores", "1", "--config", f"suite={suite}", cwd=tmp_path, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        commands = [line.split("Shell command: ", 1)[1] for line in proc.stdout.splitlines()
                    if line.startswith("Shell command: ")]
        assert commands
        longest[suite] = max(len(c.encode()) for c in commands)
        # A run command carries that one run's settings (a paper's hyperparameters as --set): bounded by the
        # number of hyperparameters, not the suite. Every other stage's must not grow with the suite at all.
        longest_stage[suite] = max(len(c.encode()) for c in commands if not c.startswith("coopbench run "))
    assert longest["papers"] < 2000, longest
    assert longest_stage["papers"] < 2 * longest_stage["smoke"], longest_stage


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
    assert scores[scores.is_final].drop_duplicates(["env", "algo", "config_hash", "seed"]).shape[0] == len(planned)

    index = (site / "index.html").read_text()
    tables = Tables()
    tables.feed(index)
    tables.feed((site / "runs.html").read_text())
    runs_table = tables.tables["all-runs"][1:]  # minus the header row
    assert len(runs_table) == len(planned)
    for run in planned:
        run_dir = run.config.run_dir(tmp_path / "results", run.seed)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        [row] = [r for r in runs_table if r[:4] == [run.config.env, run.config.algo, run.config.hash, str(run.seed)]]
        assert float(row[6]) == pytest.approx(manifest["final"]["eval_return_mean"], rel=1e-3, abs=1e-3)
        page = site / run_page(run.config.env, run.config.algo, run.config.hash, run.seed)
        assert run.config.hash in page.read_text()
    for figure in ("aggregate", "performance_profile", "sample_efficiency"):
        assert (site / "figures" / "suite_smoke" / f"{figure}.svg").stat().st_size > 1000

    # The site's verdicts are those of the claims stage, which are those of the rules on the results.
    counts = tables.tables["verdict-counts"]
    header = counts[0]
    for paper in ("acpo", "as", "bn", "cora", "lan"):
        judged = json.loads((tmp_path / "results/smoke/claims" / f"{paper}.json").read_text())
        [row] = [r for r in counts if r[0] == paper.upper()]
        assert {header[i]: int(row[i]) for i in range(1, 5)} == judged["counts"]
        assert int(row[5]) == len(judged["claims"])
    acpo = {c["id"]: c for c in json.loads((tmp_path / "results/smoke/claims/acpo.json").read_text())["claims"]}
    assert acpo["table1-haspi-alpha5-return"]["verdict"] == "not reproduced"  # exact, at full size
    assert acpo["table1-simultaneous-return"]["verdict"] == "reproduced"
    acpi = acpo["table1-acpi-converges-to-cc"]  # ACPI's runs at 2% of the paper's budget
    assert acpi["verdict"] == "inconclusive" and acpi["details"]["verdict_at_this_scale"] == "reproduced"
    assert f'id="claim-acpo-{acpi["id"]}" data-verdict="inconclusive"' in index
    assert f'id="claim-acpo-{acpi["id"]}" data-verdict="inconclusive"' in (site / "papers" / "acpo.html").read_text()


@pytest.mark.slow
def test_a_failing_run_leaves_the_rest_judged_and_published(tmp_path):
    """One run of the suite fails at run time (ACPI on the 3x3 game with max_model_size between its 9 joint
    actions, which the plan checks, and its 2 x 9 (state, joint action) pairs, which only its model built in the
    run tells): it is recorded `failed` with its reason, and every other run is still aggregated, judged and shown.
    (An ACPI on a continuous game no longer gets this far: the plan refuses it, tests/test_capabilities.py.)"""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    shutil.copytree(REPO / "claims", tmp_path / "claims")
    (config / "suites" / "broken.yaml").write_text(
        "description: one bad pairing\nenvironments: [matrix/acpo-3x3, differential/cora-2agent]\n"
        "algorithms: [mappo, {name: acpi, envs: [matrix/acpo-3x3]}]\nseeds: [0]\n"
        "run: {total_env_steps: 256, eval_interval: 128, eval_episodes: 2}\n"
        "overrides: [{set: {algo.rollout_length: 16, algo.ppo_epochs: 1}, algos: [mappo]},\n"
        "            {set: {algo.max_model_size: 10}, algos: [acpi]}]\n")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "COOPBENCH_CONFIG_DIR": str(config)}
    proc = subprocess.run(
        [str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "2",
         "--config", "suite=broken", "site_dir=site", "bootstrap_reps=50"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((tmp_path / "results/broken/runs.json").read_text())["runs"]
    failed = [r for r in runs if r["status"] != "completed"]
    assert [(r["env"], r["algo"]) for r in failed] == [("matrix/acpo-3x3", "acpi")]
    assert "acpi" in failed[0]["reason"] and "max_model_size=10" in failed[0]["reason"]
    scores = pd.read_parquet(tmp_path / "results/broken/scores.parquet")
    assert set(zip(scores["env"], scores["algo"], strict=True)) == {("matrix/acpo-3x3", "mappo"),
                                                                    ("differential/cora-2agent", "mappo")}
    runs_page = (tmp_path / "site" / "runs.html").read_text()
    assert failed[0]["reason"].split(" (fix")[0] in runs_page.replace("&#39;", "'")
