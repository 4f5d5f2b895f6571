"""Every environment coopbench can run, by name, and `make` to build one."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from coopbench.base.config_errors import params_error
from coopbench.base.errors import CoopbenchError
from coopbench.base.registry import Registry

ENVIRONMENTS = Registry("environment")


def validate_params(name: str, params: dict) -> dict:
    """Validated, defaults-filled task parameters; an error names the offending key."""
    cls = ENVIRONMENTS.get(name).load()
    try:
        return cls.Params(**params).model_dump()
    except ValidationError as err:
        raise params_error(err, prefix="env", model=cls.Params, what=f"environment {name!r}") from None


def task_params(name: str) -> dict:
    """The parameters that make task `name` what it is: `params:` of config/environments/<name>.yaml (the
    file the driver resolves a run's config from; `$COOPBENCH_CONFIG_DIR` moves it), {} without one."""
    import os

    import yaml

    from coopbench.base.paths import REPO_ROOT

    path = Path(os.environ.get("COOPBENCH_CONFIG_DIR", REPO_ROOT / "config")) / "environments" / f"{name}.yaml"
    if not path.is_file():
        return {}
    return dict((yaml.safe_load(path.read_text()) or {}).get("params") or {})


def make(name: str, n_envs: int, seed: int, device: str = "cpu", **params):
    """Task `name` with its config file's parameters, updated by `params`; its `spec.name` is `name`.

    The name is the task's identity, never derived from parameters: `make("coordination/bn-cg-2",
    n_agents=3)` is still `coordination/bn-cg-2` (a run with `--set env.n_agents=3` gets another config hash)."""
    cls = ENVIRONMENTS.get(name).load()
    params = validate_params(name, {**task_params(name), **params})
    env = cls(n_envs=n_envs, seed=seed, device=device, name=name, **params)
    env.made_with = params  # what a seed batch needs to build the same task with more copies (seed_batch.merge)
    return env


def names() -> list[str]:
    return ENVIRONMENTS.names()


# Issue-3 tasks are registered with their module/class names; a name whose module is not written yet
# fails at `make` with an import error and is in no suite.
ENVIRONMENTS.register("matrix/acpo-3x3", "matrix", "environments.matrix_games:AcpoMatrixGame",
                      "ACPO Table 1: 2 agents, 3 actions, one step, three Nash equilibria")
ENVIRONMENTS.register("matrix/cora-mtg", "matrix", "environments.matrix_games:MatrixTeamGame",
                      "CORA 6.1 Matrix Team Game: random payoffs in [-10, 20], 10 steps")
for peaks in (5, 10, 15):
    ENVIRONMENTS.register(f"matrix/cora-multipeak-{peaks}", "matrix", "environments.matrix_games:MultiPeakMatrixGame",
                          f"CORA 6.1 Multi-Peak Matrix Team Game, {peaks} peaks over noise in [-10, 0]")
for n in (2, 5):
    ENVIRONMENTS.register(f"differential/cora-{n}agent", "differential",
                          "environments.differential_games:DifferentialGame",
                          f"CORA 6.2 differential game, {n} agents, sum of Gaussian fields, actions in [-5, 5]")
for n in (2, 3, 5):
    ENVIRONMENTS.register(f"coordination/bn-cg-{n}", "coordination", "environments.coordination_game:CoordinationGame",
                          f"BN 6.1 Coordination Game (Alg. 2), N = {n}")
ENVIRONMENTS.register("aloha/bn-aloha-10", "aloha", "environments.aloha:Aloha",
                      "BN 6.2.1 Aloha: 10 agents on a 2x5 grid, 25 steps")
ENVIRONMENTS.register("particle/bn-predator-prey-15", "particle", "environments.predator_prey:PredatorPrey",
                      "BN 6.2.1 continuous Predator-Prey with 15 predators")
ENVIRONMENTS.register("social_dilemma/as-cleanup", "social_dilemma", "environments.social_dilemmas:Cleanup",
                      "AS 5.1 Cleanup 11x18, private rewards, 100 steps")
ENVIRONMENTS.register("social_dilemma/as-harvest", "social_dilemma", "environments.social_dilemmas:Harvest",
                      "AS 5.1 Harvest 7x38, private rewards, 100 steps")
ENVIRONMENTS.register("gridworld/as-coop-navigation", "gridworld",
                      "environments.cooperative_navigation:CooperativeNavigation",
                      "AS 5.1 Cooperative Navigation, 5x5 grid, 3 agents, private rewards")
ENVIRONMENTS.register("gridworld/as-exchange", "gridworld", "environments.exchange:Exchange",
                      "AS 5.1 Exchange, 3 agents, 300 steps, private rewards")
for n in (2, 8, 20, 30):  # 2: AS Fig. 6-7
    ENVIRONMENTS.register(f"gridworld/as-coop-predation-{n}", "gridworld",
                          "environments.cooperative_predation:CooperativePredation",
                          f"AS 5.1 Cooperative Predation, {n} agents, private rewards")
ENVIRONMENTS.register("gridworld/lan-checkers", "gridworld", "environments.checkers:Checkers",
                      "LAN 5.3 Checkers: apples and lemons, 3x3 view plus position, 100 steps")

# Adapters over maintained libraries (environments/adapters/). The library is imported when the task is
# built, so a missing one fails there with its MissingDependencyError.
_ADAPTERS = "environments.adapters."
for task, cls in (("navigation", "VmasNavigation"), ("give_way", "VmasGiveWay"),
                  ("multi_give_way", "VmasMultiGiveWay")):
    ENVIRONMENTS.register(f"vmas/{task}", "vmas", f"{_ADAPTERS}vmas_adapter:{cls}",
                          f"CORA 6.3 VMAS {task}, natively batched (continuous or discrete actions)")
for n in (3, 6, 9):
    ENVIRONMENTS.register(f"mpe/simple-spread-{n}", "mpe", f"{_ADAPTERS}mpe_adapter:SimpleSpread{n}",
                          f"LAN 5.4 MPE2 simple spread, {n} agents, partial observability of LAN's Appendix G")
for size in ("tiny", "small"):
    for n in (2, 4, 8, 12):
        ENVIRONMENTS.register(f"rware/{size}-{n}ag-hard", "rware", f"{_ADAPTERS}rware_adapter:Rware{size.title()}{n}",
                              f"ACPO 7 RWARE rware-{size}-{n}ag-hard-v2")
ENVIRONMENTS.register("rware/warehouse-16ag", "rware", f"{_ADAPTERS}rware_adapter:RwareWarehouse16",
                      "BN 6.3 (VAST) 16-robot RWARE warehouse")
for task, cls in (("ant-4x2", "Ant4x2"), ("halfcheetah-2x3", "HalfCheetah2x3"), ("halfcheetah-6x1", "HalfCheetah6x1"),
                  ("walker2d-2x3", "Walker2d2x3"), ("hopper-3x1", "Hopper3x1")):
    ENVIRONMENTS.register(f"mamujoco/{task}", "mamujoco", f"{_ADAPTERS}mamujoco_adapter:{cls}",
                          f"CORA 6.4 / ACPO 7 Multi-Agent MuJoCo v5 {task}, with the global state")
ENVIRONMENTS.register("magent2/battle-40v40", "magent2", f"{_ADAPTERS}magent2_adapter:Battle40v40",
                      "BN 6.3 (VAST) MAgent2 battle, 40 learners against 40 of a fixed, documented policy")
for task, cls in (("3m", "Smax3m"), ("8m", "Smax8m"), ("2s3z", "Smax2s3z"), ("3s_vs_5z", "Smax3sVs5z"),
                  ("2s_vs_1sc", "Smax2sVs1sc"), ("smacv2_5_units", "SmaxV2FiveUnits"),
                  ("smacv2_10_units", "SmaxV2TenUnits")):
    ENVIRONMENTS.register(f"smax/{task}", "smax", f"{_ADAPTERS}smax_adapter:{cls}",
                          f"SMAX {task} (JaxMARL's JAX re-implementation; not StarCraft II, never mixed with SMAC)")


def _register_starcraft() -> None:
    from environments.adapters.smac_adapter import SMAC_CLASSES, SMACV2_CLASSES  # no library import at load time

    for kind, classes in (("smac", SMAC_CLASSES), ("smacv2", SMACV2_CLASSES)):
        for cls in classes.values():
            ENVIRONMENTS.register(cls.task_name(), kind, f"{_ADAPTERS}smac_adapter:{cls.__name__}",
                                  f"{'SMAC' if kind == 'smac' else 'SMACv2'} {cls.task_name().split('/')[1]} "
                                  "on StarCraft II (needs the binary: SC2PATH)")


_register_starcraft()
for task, cls in (("academy_3_vs_1_with_keeper", "Academy3v1Keeper"),
                  ("academy_counterattack_easy", "AcademyCounterattackEasy"),
                  ("academy_counterattack_hard", "AcademyCounterattackHard")):
    ENVIRONMENTS.register(f"gfootball/{task}", "gfootball", f"{_ADAPTERS}gfootball_adapter:{cls}",
                          f"CORA 6.6 Google Research Football {task}, one controlled player per agent "
                          "(built by `make gfootball`)")


def missing_requirement(name: str) -> str | None:
    """What task `name` needs that this machine lacks (StarCraft II, gfootball), in one line; None if nothing.

    The planner leaves such runs out and the claims stage reports them `not run` with this reason, so a
    suite without StarCraft II still judges and publishes everything else.
    """
    family = ENVIRONMENTS.get(name).family
    if family in ("smac", "smacv2"):
        from environments.adapters.smac_adapter import missing_requirements

        map_file = "32x32_flat" if family == "smacv2" else name.split("/", 1)[1]  # as the adapter checks

        error = missing_requirements(map_file)
        return None if error is None else str(error)
    if family == "gfootball":
        from environments.adapters.gfootball_adapter import import_gfootball

        try:
            import_gfootball()
        except CoopbenchError as error:
            return str(error)
    return None


# --- what a task offers an algorithm, known before anything runs (algorithms/capabilities.py checks it) --------
@dataclass(frozen=True)
class EnvTraits:
    """What the plan checks an algorithm against: the parts of a task's spec known without running it.

    `n_agents`/`n_actions` are None where only the library could tell (the adapters' tasks)."""

    name: str
    discrete: bool
    reward_mode: str  # "team" or "private"
    has_model: bool  # the exact model, env.model() (matrix and coordination games)
    n_agents: int | None = None
    n_actions: int | None = None  # discrete actions per agent; 0 for continuous
    # Where the agents' positions are (BN's dependency scores): "views" (the class's static positions_from_views(obs,
    # state), so also on stored steps), "step" (the task's extras["positions"] at every step), "" nowhere.
    positions: str = ""

    @property
    def actions(self) -> str:
        return "discrete" if self.discrete else "continuous"


# The library adapters' action type and reward mode, as their specs state them once built (building one needs the
# library and, for StarCraft II or MuJoCo, a simulator). VMAS's depends on its `continuous_actions` parameter.
_LIBRARY_DISCRETE = {"mamujoco": False, "mpe": True, "rware": True, "magent2": True, "smax": True, "smac": True,
                     "smacv2": True, "gfootball": True}


def traits_of_spec(spec, env_class=None) -> EnvTraits:
    """The traits of a built task's `spec`; the model is the class's (`env_class`, else the registered one)."""
    if env_class is None and spec.name in ENVIRONMENTS.names():
        env_class = ENVIRONMENTS.get(spec.name).load()
    return EnvTraits(spec.name, spec.discrete, spec.reward_mode, callable(getattr(env_class, "model", None)),
                     spec.n_agents, spec.n_actions, positions_of(env_class))


def positions_of(env_class) -> str:
    """`EnvTraits.positions` of a task class."""
    if callable(getattr(env_class, "positions_from_views", None)):
        return "views"
    return "step" if getattr(env_class, "POSITIONS_IN_EXTRAS", False) else ""


def env_traits(name: str, params: dict | None = None) -> EnvTraits:
    """The traits of task `name` with (validated) `params`, cheaply: a native task is built with one copy
    (milliseconds); a library task is described by its family without importing the library."""
    import json

    params = validate_params(name, {**task_params(name), **(params or {})})
    return _env_traits(name, json.dumps(params, sort_keys=True, default=str))


@functools.lru_cache(maxsize=512)
def _env_traits(name: str, params_json: str) -> EnvTraits:
    import json

    entry = ENVIRONMENTS.get(name)
    params = json.loads(params_json)
    if entry.target.startswith(_ADAPTERS):
        if entry.family == "vmas":
            discrete = not params.get("continuous_actions", True)
        else:
            discrete = _LIBRARY_DISCRETE[entry.family]
        return EnvTraits(name, discrete, "team", False, positions=positions_of(entry.load()))
    cls = entry.load()
    env = cls(n_envs=1, seed=0, device="cpu", name=name, **params)
    try:
        return traits_of_spec(env.spec, cls)
    finally:
        env.close()
