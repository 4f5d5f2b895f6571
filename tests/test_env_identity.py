"""A task's identity is defined once: its registry key names its config file and its spec (issue 21, item 2)."""

import pytest

from coopbench.config import config_dir, parse_set, resolve
from environments import make
from environments.registry import ENVIRONMENTS, task_params

NATIVE = [e.name for e in ENVIRONMENTS.entries() if not e.target.startswith("environments.adapters.")]


def test_every_registered_task_has_a_config_file_and_every_config_file_a_task():
    files = {p.relative_to(config_dir() / "environments").with_suffix("").as_posix()
             for p in (config_dir() / "environments").rglob("*.yaml")}
    assert files == set(ENVIRONMENTS.names())


@pytest.mark.parametrize("name", NATIVE)
def test_spec_name_is_the_registry_key_and_make_uses_the_config_file(name):
    env = make(name, n_envs=1, seed=0)
    assert env.spec.name == name
    built = env.params.model_dump()
    for key, value in task_params(name).items():  # the task is what its file says, not the class defaults
        assert built[key] == value, key


def test_the_registry_key_defines_the_task_not_the_class_defaults():
    assert make("coordination/bn-cg-5", n_envs=1, seed=0).spec.n_agents == 5
    assert make("gridworld/as-coop-predation-20", n_envs=1, seed=0).spec.n_agents == 20
    assert make("matrix/cora-multipeak-15", n_envs=1, seed=0).params.n_peaks == 15


def test_a_parameter_override_keeps_the_name_and_changes_the_hash():
    """`--set env.n_agents=3` on bn-cg-2 is a variant of bn-cg-2: same name and results folder, another hash
    (like any other override), never a spec that claims to be bn-cg-3."""
    env = make("coordination/bn-cg-2", n_envs=1, seed=0, n_agents=3)
    assert env.spec.name == "coordination/bn-cg-2" and env.spec.n_agents == 3
    plain = resolve("mappo", "coordination/bn-cg-2")
    changed = resolve("mappo", "coordination/bn-cg-2", parse_set(["env.n_agents=3"]))
    assert changed.env == "coordination/bn-cg-2" and changed.env_params["n_agents"] == 3
    assert changed.hash != plain.hash
    assert changed.origins["env.n_agents"] == "command line (--set)"
    assert changed.hash != resolve("mappo", "coordination/bn-cg-3").hash  # not silently the other task


def test_a_class_serving_several_tasks_needs_its_name():
    from environments.coordination_game import CoordinationGame

    with pytest.raises(ValueError, match="several tasks"):
        CoordinationGame(n_envs=1, seed=0, n_agents=3)
    assert CoordinationGame(n_envs=1, seed=0, name="coordination/bn-cg-3", n_agents=3).spec.name == \
        "coordination/bn-cg-3"
