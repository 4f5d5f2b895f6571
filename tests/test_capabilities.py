"""Capabilities checked before anything runs (issue 21): every algorithm declares what it can run on
(algorithms/registry.py), and the plan and `coopbench run` refuse an incompatible pair in one line naming both."""

import shutil
from pathlib import Path

import pytest

from algorithms.capabilities import incompatibility
from algorithms.registry import ALGORITHMS, capabilities
from coopbench.base.errors import CoopbenchError
from coopbench.cli import main
from coopbench.config import plan
from environments.base import BatchedEnv
from environments.registry import ENVIRONMENTS, env_traits, make

REPO = Path(__file__).resolve().parent.parent
NATIVE = [e.name for e in ENVIRONMENTS.entries() if not e.target.startswith("environments.adapters.")]
CONTINUOUS = {"differential/cora-2agent", "differential/cora-5agent", "particle/bn-predator-prey-15",
              "vmas/navigation", "vmas/give_way", "vmas/multi_give_way", "mamujoco/ant-4x2",
              "mamujoco/halfcheetah-2x3", "mamujoco/halfcheetah-6x1", "mamujoco/walker2d-2x3", "mamujoco/hopper-3x1"}


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A copy of config/ and claims/ to write suites (and claims) into."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "claims", tmp_path / "claims")
    monkeypatch.setenv("COOPBENCH_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


def _suite(config_dir: Path, text: str, name: str = "pair") -> str:
    (config_dir / "suites" / f"{name}.yaml").write_text(f"description: one pairing\n{text}")
    return name


def test_every_algorithm_on_every_environment_is_planned_or_refused_in_one_line(config_dir, monkeypatch):
    built = []
    original = BatchedEnv.__init__

    def record(self, *args, **kwargs):
        built.append(type(self).__module__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(BatchedEnv, "__init__", record)
    refused = {}
    for algo in ALGORITHMS.names():
        for env in ENVIRONMENTS.names():
            name = _suite(config_dir, f"environments: [{env}]\nalgorithms: [{algo}]\nseeds: [0]\n")
            try:
                result = plan(name)
            except CoopbenchError as err:  # any other exception fails the test
                message = str(err)
                assert "\n" not in message
                assert message.startswith(f"suite 'pair' (its own runs): {algo} cannot run on {env}"), message
                refused[algo, env] = message
                continue
            assert [(r.config.algo, r.config.env) for r in result.runs] + \
                   [(s.algo, s.env) for s in result.skipped] == [(algo, env)]
    assert not [m for m in built if m.startswith("environments.adapters")]  # no library task was built
    # the known refusals
    for env in ENVIRONMENTS.names():
        model = env.startswith(("matrix/", "coordination/"))
        assert ((("acpi", env) in refused) != model), env
        assert (("centralized_ppo", env) in refused) == (env in CONTINUOUS or env in (
            "gridworld/as-coop-predation-20", "gridworld/as-coop-predation-30")), env  # 2^20, 2^30 > 4096
        assert (("ippo_private", env) in refused) == (env_traits(env).reward_mode == "team"), env
    assert "needs discrete actions" in refused["acpi", "differential/cora-2agent"]
    assert "exact model" in refused["acpi", "gridworld/as-exchange"]
    assert "needs discrete actions" in refused["centralized_ppo", "mamujoco/hopper-3x1"]
    assert "2^20" in refused["centralized_ppo", "gridworld/as-coop-predation-20"]
    assert "max_joint_actions=4096" in refused["centralized_ppo", "gridworld/as-coop-predation-20"]
    # the rest of the on-policy family runs everywhere; CORA's full coalition set up to 10 agents (cora_m* sample)
    value_based = {a for a in ALGORITHMS.names() if ALGORITHMS.get(a).family == "value_based"}
    for algo in value_based - {"vast_heuristic"}:  # discrete actions only (issue 14)
        assert {e for a, e in refused if a == algo} == set(CONTINUOUS), algo
    # BN's heuristic subteams need the agents' positions (issue 17): per step (bn_mappo_heuristic) or in the stored
    # views (vast_heuristic, which is value-based: discrete actions only)
    positions = {e: env_traits(e).positions for e in ENVIRONMENTS.names()}
    assert {e for a, e in refused if a == "bn_mappo_heuristic"} == {e for e, where in positions.items() if not where}
    assert {e for a, e in refused if a == "vast_heuristic"} == {
        e for e, where in positions.items() if where != "views" or e in CONTINUOUS}
    off_policy = {a for a in ALGORITHMS.names() if ALGORITHMS.get(a).family == "off_policy"}
    for algo in off_policy - {"bn_maddpg_heuristic"}:  # continuous actions only (issue 15)
        assert {e for a, e in refused if a == algo} == set(ENVIRONMENTS.names()) - CONTINUOUS, algo
    assert {e for a, e in refused if a == "bn_maddpg_heuristic"} == {
        e for e, where in positions.items() if where != "views" or e not in CONTINUOUS}
    bn_tabular = {a for a in ALGORITHMS.names() if a.startswith("bn_tabular_")}
    for algo in bn_tabular:  # exact models only, like acpi (issue 17), and subteam sizes that sum to N
        extra = {e for a, e in refused if a == algo} - {e for a, e in refused if a == "acpi"}
        assert {e for a, e in refused if a == "acpi"} <= {e for a, e in refused if a == algo}, algo
        assert all("subteam sizes" in refused[algo, e] for e in extra), algo
        assert bool(extra) == algo.startswith("bn_tabular_subteam"), algo
    as_family = {"as", "as_one_neighbour", "as_every_k", "as_rho0", "vs", "vps", "ps"}
    for algo in as_family:  # private rewards and discrete actions only (issue 16)
        assert {e for a, e in refused if a == algo} == {
            e for e in ENVIRONMENTS.names() if e in CONTINUOUS or env_traits(e).reward_mode == "team"}, algo
    assert {a for a, _ in refused} == {"acpi", "centralized_ppo", "ippo_private", "cora", "cora_no_std", "cora_qc",
                                       *value_based, *bn_tabular, *as_family, *off_policy, "bn_mappo_heuristic"}
    assert {e for a, e in refused if a == "cora"} == {"particle/bn-predator-prey-15", "gridworld/as-coop-predation-20",
                                                     "gridworld/as-coop-predation-30"}


def test_errors_that_appeared_at_job_start_appear_at_plan_time(config_dir):
    for text, words in [
        ("environments: [differential/cora-2agent]\nalgorithms: [acpi]", "acpi needs discrete actions"),
        ("environments: [aloha/bn-aloha-10]\nalgorithms: [acpi]", "has none"),
        ("environments: [differential/cora-5agent]\nalgorithms: [centralized_ppo]",
         "centralized_ppo needs discrete actions"),
        # a suite override that lowers a limit below the task: 3^2 = 9 joint actions
        ("environments: [matrix/acpo-3x3]\nalgorithms: [centralized_ppo]\n"
         "overrides: [{set: {algo.max_joint_actions: 8}}]", "above centralized_ppo's max_joint_actions=8"),
        ("environments: [matrix/acpo-3x3]\nalgorithms: [acpi]\noverrides: [{set: {algo.max_model_size: 8}}]",
         "above acpi's max_model_size=8"),
        ("environments: [differential/cora-5agent]\nalgorithms: [cora]\n"
         "overrides: [{set: {algo.max_coalitions: 16}}]", "2^5 - 2 = 30 coalitions"),
        ("environments: [gridworld/as-exchange]\nalgorithms: [cora]\n"
         "overrides: [{set: {algo.learning_reward: own}}]", "learning_reward=own"),
    ]:
        name = _suite(config_dir, f"{text}\nseeds: [0]\n")
        with pytest.raises(CoopbenchError) as err:
            plan(name)
        assert words in str(err.value) and "\n" not in str(err.value)
    # and a sampled coalition set passes
    assert plan(_suite(config_dir, "environments: [differential/cora-5agent]\nalgorithms: [cora]\nseeds: [0]\n"
                       "overrides: [{set: {algo.max_coalitions: 16, algo.coalition_samples: 8}}]\n")).runs


def test_an_incompatible_pair_of_a_papers_experiment_is_a_registry_error(config_dir):
    claims = config_dir.parent / "claims" / "acpo.yaml"
    text = claims.read_text()
    old = "    envs: [matrix/acpo-3x3]\n    algos: [acpi]\n"
    assert old in text
    new = "    envs: [matrix/acpo-3x3, differential/cora-2agent]\n    algos: [acpi]\n"
    claims.write_text(text.replace(old, new, 1))
    with pytest.raises(CoopbenchError) as err:
        plan(_suite(config_dir, "experiments: [acpo/table1-matrix]\n"))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("claims/acpo.yaml experiment 'table1-matrix' (a registry error): acpi cannot run on "
                              "differential/cora-2agent")


def test_the_papers_experiments_are_compatible():
    for suite in ("papers", "extras", "default", "smoke"):
        plan(suite)  # raises on an incompatible pair


def test_coopbench_run_refuses_before_building_anything(tmp_path, capsys):
    results = tmp_path / "results"
    code = main(["run", "acpi", "differential/cora-2agent", "--seed", "0", "--results-dir", str(results)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "acpi cannot run on differential/cora-2agent" in err
    assert not (results / "runs").exists()


@pytest.mark.parametrize("env", NATIVE)
def test_traits_by_name_are_those_of_the_built_task(env):
    built = make(env, 1, 0)
    traits = env_traits(env)
    assert (traits.discrete, traits.reward_mode, traits.n_agents, traits.n_actions) == \
           (built.spec.discrete, built.spec.reward_mode, built.spec.n_agents, built.spec.n_actions)
    for algo in ALGORITHMS.names():  # a built task's spec gives the same answer as its name
        assert incompatibility(algo, built.spec) == incompatibility(algo, env)


def test_capabilities_are_declared_for_every_algorithm():
    for algo in ALGORITHMS.names():
        caps = capabilities(algo)
        assert caps.discrete or caps.continuous
        for limit in (caps.joint_action_limit, caps.coalition_limit):
            assert limit is None or limit in ALGORITHMS.get(algo).load().Config.model_fields
    with pytest.raises(CoopbenchError, match="unknown algorithm"):
        capabilities("nope")
