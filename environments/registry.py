"""Every environment coopbench can run, by name, and `make` to build one."""

from __future__ import annotations

from pydantic import ValidationError

from coopbench.config_errors import params_error
from coopbench.registry import Registry

ENVIRONMENTS = Registry("environment")


def validate_params(name: str, params: dict) -> dict:
    """Validated, defaults-filled task parameters; an error names the offending key."""
    cls = ENVIRONMENTS.get(name).load()
    try:
        return cls.Params(**params).model_dump()
    except ValidationError as err:
        raise params_error(err, prefix="env", model=cls.Params, what=f"environment {name!r}") from None


def make(name: str, n_envs: int, seed: int, device: str = "cpu", **params):
    cls = ENVIRONMENTS.get(name).load()
    return cls(n_envs=n_envs, seed=seed, device=device, **validate_params(name, params))


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
for n in (8, 20, 30):
    ENVIRONMENTS.register(f"gridworld/as-coop-predation-{n}", "gridworld",
                          "environments.cooperative_predation:CooperativePredation",
                          f"AS 5.1 Cooperative Predation, {n} agents, private rewards")
ENVIRONMENTS.register("gridworld/lan-checkers", "gridworld", "environments.checkers:Checkers",
                      "LAN 5.3 Checkers: apples and lemons, 3x3 view plus position, 100 steps")
