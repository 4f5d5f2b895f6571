import shutil
from pathlib import Path

import pytest

from coopbench.base.errors import CoopbenchError
from coopbench.config import RunConfig, parse_set, plan, plan_suite, resolve

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"


def test_resolve_applies_paper_overrides_and_set():
    config = resolve("mappo", "matrix/acpo-3x3", parse_set(["algo.lr_actor=0.001", "run.total_env_steps=100"]))
    assert config.algo_hparams["clip_eps"] == 0.3  # CORA Table 1, Matrix Games
    assert config.algo_hparams["lr_critic"] == 5e-3
    assert config.algo_hparams["lr_actor"] == 0.001
    assert config.run["total_env_steps"] == 100
    assert config.run["eval_episodes"] == RunConfig().eval_episodes


def test_hash_changes_with_any_value_and_is_stable():
    a = resolve("mappo", "matrix/acpo-3x3")
    assert a.hash == resolve("mappo", "matrix/acpo-3x3").hash
    assert a.hash != resolve("mappo", "matrix/acpo-3x3", parse_set(["algo.gamma=0.98"])).hash
    assert a.hash != resolve("ippo", "matrix/acpo-3x3").hash
    assert len(a.hash) == 12


@pytest.mark.parametrize(
    "item, words",
    [
        ("algo.lr_actor=-1", ["algo.lr_actor", "greater than 0"]),
        ("algo.gamma=1.5", ["algo.gamma", "less than or equal to 1"]),
        ("algo.ppo_epochs=many", ["algo.ppo_epochs", "integer"]),
        ("algo.not_a_key=1", ["unknown key algo.not_a_key", "valid keys"]),
        ("run.total_env_steps=0", ["run.total_env_steps"]),
        ("run.device=tpu", ["run.device"]),
        ("env.n_agents=1", ["unknown key env.n_agents"]),  # the 3x3 game has no parameters
    ],
)
def test_bad_values_name_the_key(item, words):
    with pytest.raises(CoopbenchError) as err:
        resolve("mappo", "matrix/acpo-3x3", parse_set([item]))
    for word in words:
        assert word in str(err.value)


def test_env_params_are_validated():
    with pytest.raises(CoopbenchError, match="env.n_agents"):
        resolve("mappo", "matrix/cora-mtg", parse_set(["env.n_agents=1"]))
    config = resolve("mappo", "matrix/cora-mtg", parse_set(["env.n_agents=2"]))
    assert config.env_params["n_agents"] == 2


@pytest.mark.parametrize("item", ["lr=1", "algo=1", "model.lr=1", "algo.lr_actor"])
def test_malformed_set_is_rejected(item):
    with pytest.raises(CoopbenchError, match="--set"):
        parse_set([item])


def test_unknown_names():
    with pytest.raises(CoopbenchError, match="unknown algorithm 'nope'"):
        resolve("nope", "matrix/acpo-3x3")
    with pytest.raises(CoopbenchError, match="unknown environment 'nope/x'"):
        resolve("mappo", "nope/x")
    with pytest.raises(CoopbenchError, match="unknown suite"):
        plan_suite("nope")


def test_suites_plan_every_combination():
    from environments.registry import ENVIRONMENTS

    native = {e.name for e in ENVIRONMENTS.entries() if not e.target.startswith("environments.adapters.")}
    runs = plan_suite("default")
    assert len({r.key for r in runs}) == len(runs)
    assert {r.config.env for r in runs if "suite:default" in r.comparisons} >= native  # the tour
    by_pair: dict = {}
    for r in runs:
        for comparison in r.comparisons:
            by_pair.setdefault((comparison, r.config.env, r.config.algo), []).append(r)
    table1 = by_pair[("acpo/table1-matrix", "matrix/acpo-3x3", "acpi")]
    assert [r.seed for r in table1] == [0, 1, 2, 3, 4]  # ACPO Table 1 at the paper's seeds and budget
    assert all(r.config.run["total_env_steps"] == 50_000 for r in table1)
    fig1 = by_pair[("cora/fig1-matrix", "matrix/cora-mtg", "cora")]
    assert [r.seed for r in fig1] == [0, 1]  # an override's `seeds` replaces the experiment's
    assert all(r.config.run["total_env_steps"] == 10_000 for r in fig1)  # an override for one comparison
    tour = by_pair[("suite:default", "matrix/cora-mtg", "mappo")]
    assert [r.config.run["total_env_steps"] for r in tour] == [8000]
    smoke = [r for r in plan_suite("smoke") if "suite:smoke" in r.comparisons]
    assert smoke and all(r.config.algo_hparams["rollout_length"] == 16 for r in smoke)
    papers = plan("papers")
    every_paper_task = {r.config.env for r in papers.runs} | {s.env for s in papers.skipped}
    extras = {r.config.env for r in plan_suite("extras")}
    assert every_paper_task | extras == set(ENVIRONMENTS.names())  # each registered task is in a suite
    assert every_paper_task >= {e for e in ENVIRONMENTS.names() if e.split("/")[0] in ("smac", "smacv2")}
    assert not any(r.config.env.startswith("smax/") for r in papers.runs)  # stand-ins judge no claim


def test_broken_config_files_are_reported(tmp_path, monkeypatch):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "bad.yaml").write_text("description: [unclosed\n")
    (tmp_path / "suites" / "extra.yaml").write_text(
        "description: x\nenvironments: [matrix/acpo-3x3]\nalgorithms: [mappo]\nseeds: [0]\nbudget: 3\n")
    monkeypatch.setenv("COOPBENCH_CONFIG_DIR", str(tmp_path))
    with pytest.raises(CoopbenchError, match="not valid YAML"):
        plan_suite("bad")
    with pytest.raises(CoopbenchError, match="unknown key extra.yaml.budget"):
        plan_suite("extra")


def test_algorithm_files_inherit_values_and_overrides(tmp_path, monkeypatch):
    happo = resolve("happo", "mamujoco/hopper-3x1").algo_hparams
    mappo = resolve("mappo", "mamujoco/hopper-3x1").algo_hparams
    assert happo["lr_critic"] == mappo["lr_critic"] == 5e-3  # mappo.yaml's CORA Table 1 override, inherited
    assert mappo["share_parameters"] and not happo["share_parameters"]  # happo.yaml's own value wins
    assert resolve("hatrpo", "rware/tiny-2ag-hard").algo_hparams["hidden_sizes"] == [128, 256]  # two levels up
    assert resolve("ippo", "vmas/navigation").algo_hparams == resolve("mappo", "vmas/navigation").algo_hparams
    shutil.copytree(REPO_CONFIG, tmp_path / "config")
    (tmp_path / "config" / "algorithms" / "mappo.yaml").write_text("inherits: hatrpo\n")
    monkeypatch.setenv("COOPBENCH_CONFIG_DIR", str(tmp_path / "config"))
    with pytest.raises(CoopbenchError, match="cycle: hatrpo -> happo -> mappo -> hatrpo"):
        resolve("hatrpo", "matrix/acpo-3x3")


def test_suites_pair_algorithms_with_their_papers_tasks():
    pairs = {(r.config.algo, r.config.env) for r in plan_suite("papers")}
    extras = {(r.config.algo, r.config.env) for r in plan_suite("extras")}
    assert ("hatrpo", "mamujoco/ant-4x2") in pairs and ("hatrpo", "smax/3m") not in pairs  # ACPO footnote 1
    assert ("optimistic_mappo", "differential/cora-2agent") in pairs
    assert {e for a, e in pairs if a in ("centralized_ppo", "ippo_private")} == {"gridworld/as-coop-predation-2"}
    assert {a for a, e in extras if e == "smax/3m"} == {"mappo", "ippo", "happo", "cora"}  # CORA Fig. 5 stand-in
    assert {a for a, e in pairs if e == "differential/cora-5agent"} >= {"cora", "cora_no_std", "cora_m10", "cora_m25"}
    assert {e for a, e in pairs if a == "acpo_no_chain"} <= {e for a, e in pairs if a == "acpo"}  # ACPO Fig. 4
    assert ("acpi", "matrix/acpo-3x3") in pairs and not any(a == "acpi" and e.startswith("rware") for a, e in pairs)


# --- `coopbench config`: the resolved config with the origin of every value (issue 21) ------------------------------
def _planned(suite: str, comparison: str, env: str, algo: str):
    return next(r for r in plan_suite(suite)
                if comparison in r.comparisons and (r.config.env, r.config.algo) == (env, algo))


def test_config_explains_a_suite_run_with_the_planned_hash_and_origins():
    from coopbench.config import COMMAND_LINE, explain

    config, which = explain("mappo", "matrix/acpo-3x3", suite="smoke")
    planned = _planned("smoke", "suite:smoke", "matrix/acpo-3x3", "mappo")
    assert config.hash == planned.config.hash and "suite:smoke" in which
    assert config.origins == planned.config.origins  # one code path: the plan's run carries the same origins
    origins = config.origins
    assert origins["algo.rollout_length"].startswith("config/suites/smoke.yaml overrides[0] (envs ['*']")
    assert origins["run.total_env_steps"] == "config/suites/smoke.yaml run"
    assert origins["algo.clip_eps"].startswith("config/algorithms/mappo.yaml override envs ['matrix/*'] (CORA Table 1")
    assert origins["algo.entropy_coef"] == "config/algorithms/mappo.yaml"
    assert origins["algo.value_clip_eps"].startswith("class default (")
    assert origins["run.device"] == "class default (coopbench.config.RunConfig)"
    assert set(origins) == {f"{s}.{k}" for s, values in (("env", config.env_params), ("algo", config.algo_hparams),
                                                           ("run", config.run)) for k in values}
    # the experiment the smoke suite runs, with the suite's override of its budget
    acpi, _ = explain("acpi", "matrix/acpo-3x3", suite="smoke", experiment="acpo/table1-matrix")
    assert acpi.hash == _planned("smoke", "acpo/table1-matrix", "matrix/acpo-3x3", "acpi").config.hash
    assert acpi.origins["run.total_env_steps"].startswith("config/suites/smoke.yaml overrides[1]")
    assert acpi.origins["run.eval_episodes"].startswith("claims/acpo.yaml experiment table1-matrix budget (")
    assert acpi.origins["algo.first_action_prob"].startswith("config/algorithms/acpi.yaml override envs "
                                                             "['matrix/acpo-3x3'] (ACPO Table 1")
    # the command line comes last and changes the hash
    changed, _ = explain("mappo", "matrix/acpo-3x3", suite="smoke", set_items=["algo.gamma=0.9"])
    assert changed.origins["algo.gamma"] == COMMAND_LINE and changed.algo_hparams["gamma"] == 0.9
    assert changed.hash != config.hash
    bare, _ = explain("mappo", "matrix/acpo-3x3", set_items=["algo.gamma=0.9"])
    assert bare.hash == resolve("mappo", "matrix/acpo-3x3", parse_set(["algo.gamma=0.9"])).hash  # as `coopbench run`


def test_config_explains_an_experiment_run_with_the_planned_hash_and_origins():
    from coopbench.config import explain

    env = "mamujoco/hopper-3x1"
    mappo, _ = explain("mappo", env, experiment="acpo/fig3-mamujoco")
    assert mappo.hash == _planned("papers", "acpo/fig3-mamujoco", env, "mappo").config.hash
    assert mappo.hash == explain("mappo", env, suite="paper-acpo")[0].hash
    assert mappo.algo_hparams["hidden_sizes"] == [128, 128, 128]
    assert mappo.origins["algo.hidden_sizes"].startswith("claims/acpo.yaml settings[")
    assert "Table 3" in mappo.origins["algo.hidden_sizes"]
    assert mappo.origins["algo.lr_critic"].startswith("config/algorithms/mappo.yaml override envs ['mamujoco/*'] "
                                                      "(CORA Table 1, row Multi-Agent MuJoCo")
    assert mappo.origins["run.total_env_steps"].startswith("claims/acpo.yaml experiment fig3-mamujoco budget (")
    assert mappo.origins["env.agent_obsk"] == f"config/environments/{env}.yaml"
    happo, _ = explain("happo", env, experiment="acpo/fig3-mamujoco")
    assert happo.hash == _planned("papers", "acpo/fig3-mamujoco", env, "happo").config.hash
    assert happo.origins["algo.share_parameters"] == "config/algorithms/happo.yaml"
    assert happo.origins["algo.lr_critic"].startswith(
        "config/algorithms/mappo.yaml (inherits: happo.yaml -> mappo.yaml) override envs ['mamujoco/*']")
    assert happo.origins["algo.entropy_coef"] == "config/algorithms/mappo.yaml (inherits: happo.yaml -> mappo.yaml)"
    # the same task and method in CORA's experiment: another config, another hash; the papers suite asks which
    cora = explain("mappo", env, suite="papers", experiment="cora/fig4-mamujoco")[0]
    assert cora.hash == _planned("papers", "cora/fig4-mamujoco", env, "mappo").config.hash != mappo.hash
    with pytest.raises(CoopbenchError, match="2 configs: acpo/fig3-mamujoco"):
        explain("mappo", env, suite="papers")
    with pytest.raises(CoopbenchError, match="does not run"):
        explain("mappo", "matrix/acpo-3x3", experiment="acpo/fig3-mamujoco")
    with pytest.raises(CoopbenchError, match="unknown experiment"):
        explain("mappo", env, experiment="acpo/nope")


def test_coopbench_config_prints_every_value_its_origin_and_the_hash(capsys):
    import json

    from coopbench.cli import main

    assert main(["config", "happo", "mamujoco/hopper-3x1", "--experiment", "acpo/fig3-mamujoco"]) == 0
    out = capsys.readouterr().out
    planned = _planned("papers", "acpo/fig3-mamujoco", "mamujoco/hopper-3x1", "happo").config
    assert f"hash: {planned.hash}" in out
    assert "  share_parameters: false" in out and "# config/algorithms/happo.yaml" in out
    assert main(["config", "mappo", "matrix/acpo-3x3", "--suite", "smoke", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["hash"] == _planned("smoke", "suite:smoke", "matrix/acpo-3x3", "mappo").config.hash
    assert report["origins"]["run.total_env_steps"] == "config/suites/smoke.yaml run"
    assert main(["config", "acpi", "differential/cora-2agent"]) == 2
    assert "acpi cannot run on differential/cora-2agent" in capsys.readouterr().err
