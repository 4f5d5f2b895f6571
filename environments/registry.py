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


ENVIRONMENTS.register("matrix/acpo-3x3", "matrix", "environments.matrix_games:AcpoMatrixGame",
                      "ACPO Table 1: 2 agents, 3 actions, one step, three Nash equilibria")
ENVIRONMENTS.register("matrix/cora-mtg", "matrix", "environments.matrix_games:MatrixTeamGame",
                      "CORA 6.1 Matrix Team Game: random payoffs in [-10, 20], 10 steps")
