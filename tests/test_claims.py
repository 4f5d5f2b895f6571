"""The claims registry: it covers the papers' tables and figures, validates precisely, and its paper-scoped
settings reach every method of an experiment; the claims stage judges synthetic results correctly."""

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import write_json, write_parquet
from coopbench.base.schema import SCORES_COLUMNS
from coopbench.claims import PAPERS, experiment_settings_layers, load_paper, load_papers
from coopbench.config import plan, resolve
from leaderboard.claims import judge_suite
from tests.conftest import REPO

# INVENTORY.md, "Claims to register": every table and figure that reports a result (hyperparameter tables are
# `settings`, checked below).
RESULT_SOURCES = {
    "cora": ["Fig. 1", "Fig. 2", "Fig. 3", "Fig. 4", "Fig. 5", "Fig. 6", "Fig. 8", "Fig. 9"],
    "as": ["Fig. 2", "Fig. 3", "Fig. 4", "Fig. 5", "Fig. 6", "Fig. 7"],
    "bn": ["Table 1", "Fig. 1", "Fig. 2", "Fig. 3", "Fig. 4", "Fig. 5"],
    "lan": ["Fig. 3", "Fig. 4", "Fig. 5", "Fig. 6", "Fig. 7", "Fig. 8", "Table 1", "Table 3"],
    "acpo": ["Table 1", "Table 2", "Fig. 2", "Fig. 3", "Fig. 4", "Fig. 5", "Fig. 9"],
}
SETTINGS_SOURCES = {"cora": ["Table 1"], "as": ["Table 1", "Table 2"], "bn": ["Table 2", "Table 3"],
                    "lan": ["Appendix B"], "acpo": ["Table 3"]}


def mentions(text: str, ref: str) -> bool:
    kind, number = ref.split(" ", 1)
    pattern = {"Fig.": r"Fig(?:ure|\.)?\s*", "Table": r"Table\s*", "Appendix": r"(?:Appendix|App\.)\s*"}[kind]
    return re.search(pattern + re.escape(number) + r"(?![0-9])", text) is not None


def test_every_paper_has_a_registry():
    papers = load_papers()
    assert sorted(papers) == sorted(PAPERS)
    for paper in papers.values():
        assert paper.claims and paper.experiments


@pytest.mark.parametrize("paper", PAPERS)
def test_registry_covers_every_table_and_figure_of_the_inventory(paper):
    registry = load_paper(paper)
    for ref in RESULT_SOURCES[paper]:
        assert any(mentions(c.source, ref) for c in registry.claims), f"{paper}: no claim from {ref}"
    sources = [r.source for r in registry.settings] + [r.source for e in registry.experiments for r in e.settings]
    for ref in SETTINGS_SOURCES[paper]:
        assert any(mentions(s, ref) for s in sources), f"{paper}: no settings from {ref}"


def test_inventory_lists_no_table_or_figure_the_test_misses():
    inventory = REPO.parent / "shared" / "INVENTORY.md"
    if not inventory.is_file():
        pytest.skip("shared/INVENTORY.md is not beside the repository")
    section = inventory.read_text().split("## Claims to register", 1)[1]
    for line in section.splitlines():
        match = re.match(r"- (\w+): (.*)", line)
        if not match or match.group(1).lower() not in RESULT_SOURCES:
            continue
        paper = match.group(1).lower()
        listed = RESULT_SOURCES[paper] + SETTINGS_SOURCES[paper]
        for kind, numbers in re.findall(r"(Fig\.|Table|Tables)\s*([0-9][0-9, and-]*)", match.group(2)):
            for number in re.findall(r"[0-9]+", numbers):
                ref = f"{'Fig.' if kind == 'Fig.' else 'Table'} {number}"
                assert ref in listed, f"INVENTORY lists {paper} {ref}; add it to RESULT_SOURCES or SETTINGS_SOURCES"


def test_validation_names_the_file_the_claim_and_the_field(tmp_path, monkeypatch):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    shutil.copytree(REPO / "claims", tmp_path / "claims")
    monkeypatch.setenv("COOPBENCH_CONFIG_DIR", str(config))
    path = tmp_path / "claims" / "acpo.yaml"
    text = path.read_text()
    first_claim = re.search(r"^  - id: (\S+)", text.split("\nclaims:", 1)[1], re.M).group(1)
    broken = text.replace(f"- id: {first_claim}\n", f"- id: {first_claim}\n    colour: red\n", 1)
    path.write_text(broken)
    with pytest.raises(CoopbenchError, match=rf"acpo.yaml: claims\[0\] \(id {re.escape(first_claim)}\)\.colour"):
        load_paper("acpo")
    path.write_text(text.replace("experiments:", "experiments:\n  - id: Bad Id\n", 1))
    with pytest.raises(CoopbenchError, match=r"acpo.yaml: experiments\[0\]"):
        load_paper("acpo")
    path.write_text(text.replace("methods: [acpi]", "methods: [acpii]", 1))
    with pytest.raises(CoopbenchError, match="unknown method 'acpii'"):
        load_paper("acpo")


def merged_settings(paper, experiment, env: str, algo: str) -> tuple[dict, dict]:
    """The paper's and then the experiment's settings matching (env, algo), merged: (hparams, env params)."""
    hparams, env_params = {}, {}
    for _, rule_hparams, rule_env in experiment_settings_layers(paper, experiment, env, algo):
        hparams.update(rule_hparams)
        env_params.update(rule_env)
    return hparams, env_params


def test_paper_settings_reach_every_method_of_an_experiment():
    """Each registered method of each experiment resolves with its paper's (and experiment's) settings."""
    for name, paper in load_papers().items():
        pl = plan(f"paper-{name}")
        by_pair = {(r.config.env, r.config.algo, c): r for r in pl.runs for c in r.comparisons}
        for exp in paper.experiments:
            for env in exp.envs:
                for algo in exp.algos:
                    run = by_pair.get((env, algo, f"{name}/{exp.id}"))
                    if run is None:
                        assert any(s.env == env and s.algo == algo for s in pl.skipped), (name, exp.id, env, algo)
                        continue
                    hparams, env_params = merged_settings(paper, exp, env, algo)
                    for key, value in hparams.items():
                        assert run.config.algo_hparams[key] == value, (name, exp.id, env, algo, key)
                    for key, value in env_params.items():
                        assert run.config.env_params[key] == value, (name, exp.id, env, algo, key)
                    assert run.config.run["total_env_steps"] == exp.run.total_env_steps
                    assert sorted({r.seed for r in pl.runs if r.config.hash == run.config.hash}) == list(
                        range(exp.seeds))


def test_two_papers_settings_for_one_task_and_method_are_two_configs():
    acpo = {(r.config.env, r.config.algo): r.config for r in plan("paper-acpo").runs}
    cora = {(r.config.env, r.config.algo): r.config for r in plan("paper-cora").runs}
    shared = sorted(set(acpo) & set(cora) & {(e, a) for e, a in acpo if e.startswith("mamujoco/")})
    assert shared, "ACPO and CORA both run MAPPO-family baselines on MaMuJoCo"
    for pair in shared:
        assert acpo[pair].hash != cora[pair].hash
        assert acpo[pair].algo_hparams["hidden_sizes"] == [128, 128, 128]  # ACPO Table 3, every method
        assert cora[pair].algo_hparams["hidden_sizes"] == [64, 64]  # CORA A.9
    assert resolve("mappo", "mamujoco/hopper-3x1").algo_hparams["hidden_sizes"] == [64, 64]


def test_unimplemented_methods_and_missing_binaries_are_left_out_with_reasons():
    from coopbench.claims import PLANNED_ALGORITHMS

    unimplemented = {s.algo for name in ("paper-as", "paper-acpo", "paper-bn") for s in plan(name).skipped
                     if "not implemented yet" in s.reason}
    assert unimplemented <= set(PLANNED_ALGORITHMS)  # each left out with its issue (none left today)
    sc2 = [s for s in plan("paper-acpo").skipped if s.env.startswith("smacv2/")]
    assert sc2 and all("StarCraft II" in s.reason or "not implemented" in s.reason for s in sc2)


# --- the claims stage on synthetic results --------------------------------------------------------------------
def _scores(rows: list[tuple]) -> pd.DataFrame:
    """rows of (comparison, env, algo, seed, env_steps, return)."""
    frame = pd.DataFrame(rows, columns=["comparison", "env", "algo", "seed", "env_steps", "eval_return_mean"])
    frame["config_hash"] = "0" * 12
    frame["iteration"] = frame["env_steps"] // 100
    frame["eval_return_std"] = 0.0
    frame["eval_win_rate"] = float("nan")
    frame["normalized_score"] = frame["eval_return_mean"]
    frame["normalization"] = "raw"
    frame["is_final"] = frame.groupby(["comparison", "env", "algo", "seed"])["env_steps"].transform("max") == \
        frame["env_steps"]
    frame["run_dir"] = "x"
    return frame[SCORES_COLUMNS]


def _write(tmp_path: Path, scores: pd.DataFrame, runs: list[dict], skipped=()) -> tuple[Path, Path]:
    write_parquet(tmp_path / "scores.parquet", scores)
    write_json(tmp_path / "runs.json", {"schema_version": 2, "suite": "t", "runs": runs, "skipped": list(skipped)})
    return tmp_path / "scores.parquet", tmp_path / "runs.json"


def _acpi_table1(paper):
    claim = next(c for c in paper.claims if c.methods == ["acpi"] and c.experiment and c.published.kind == "outcome")
    return claim, paper.experiment(claim.experiment)


def test_claims_stage_judges_known_answers(tmp_path):
    acpo = load_paper("acpo")
    claim, exp = _acpi_table1(acpo)
    comparison = f"acpo/{exp.id}"
    env, budget = claim.tasks[0], exp.run.total_env_steps
    seeds = range(exp.seeds)
    good = _scores([(comparison, env, "acpi", k, s, 20.0) for k in seeds for s in (0, budget)])
    runs = [{"env": env, "algo": "acpi", "config_hash": "0" * 12, "seed": k, "comparisons": [comparison],
             "status": "completed", "reason": "", "run_dir": "x"} for k in seeds]
    out = judge_suite("t", *_write(tmp_path, good, runs), tmp_path / "analyses", tmp_path / "claims", reps=200)
    [judged] = [c for c in out["acpo"]["claims"] if c["id"] == claim.id]
    assert judged["verdict"] == "reproduced", judged
    assert judged["seeds_used"] == exp.seeds and judged["budget_used"] == budget

    bad = _scores([(comparison, env, "acpi", k, s, 5.0) for k in seeds for s in (0, budget)])
    out = judge_suite("t", *_write(tmp_path, bad, runs), tmp_path / "analyses", tmp_path / "claims", reps=200)
    assert next(c for c in out["acpo"]["claims"] if c["id"] == claim.id)["verdict"] == "not reproduced"

    # A run's last iteration overshoots the budget (ACPI: 256 steps an iteration): its evaluation there counts.
    overshoot = _scores([(comparison, env, "acpi", k, s, 20.0) for k in seeds for s in (0, budget - 848, budget + 176)])
    out = judge_suite("t", *_write(tmp_path, overshoot, runs), tmp_path / "analyses", tmp_path / "claims", reps=200)
    judged = next(c for c in out["acpo"]["claims"] if c["id"] == claim.id)
    assert judged["verdict"] == "reproduced" and judged["budget_used"] == budget + 176

    small = _scores([(comparison, env, "acpi", k, s, 20.0) for k in seeds for s in (0, budget // 10)])
    out = judge_suite("t", *_write(tmp_path, small, runs), tmp_path / "analyses", tmp_path / "claims", reps=200)
    judged = next(c for c in out["acpo"]["claims"] if c["id"] == claim.id)
    assert judged["verdict"] == "inconclusive" and "10% of the paper's budget" in judged["note"]

    failed = [{**r, "status": "failed", "reason": "RuntimeError: boom"} if r["seed"] == 0 else r for r in runs]
    rest = good[good["seed"] != 0]
    out = judge_suite("t", *_write(tmp_path, rest, failed), tmp_path / "analyses", tmp_path / "claims", reps=200)
    judged = next(c for c in out["acpo"]["claims"] if c["id"] == claim.id)
    assert judged["verdict"] == "not run" and "boom" in judged["reason"]
    counts = out["acpo"]["counts"]
    assert sum(counts.values()) == len(acpo.claims)


def test_claims_not_in_the_suite_are_not_run_with_the_command(tmp_path):
    out = judge_suite("t", *_write(tmp_path, _scores([]), []), tmp_path / "analyses", tmp_path / "claims", reps=50)
    for paper in out.values():
        assert paper["counts"]["not run"] == len(paper["claims"])
        for claim in paper["claims"]:
            if "not implemented" not in claim["reason"] and "needs the" not in claim["reason"]:
                assert f"snakemake paper_{paper['paper']}" in claim["reason"], claim
