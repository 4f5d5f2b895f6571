"""Score normalization, written once: the run driver's final score in manifest.json, the aggregate stage's
`normalized_score` column of scores.parquet and the rule the site prints all come from here.

A task's config names its rule (`normalization:` in config/environments/<family>/<name>.yaml): `min_max` with
its `low` and `high`, `env_bounds` (the environment's exact return bounds, resolved into `min_max` when the run
starts, so a manifest always records numbers) or `raw` (not comparable across tasks: left out of cross-task
aggregates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from coopbench.base.errors import CoopbenchError

RECORDED_METHODS = ("min_max", "raw")  # what a manifest may say; env_bounds is resolved before it is written

Score = TypeVar("Score")  # a float, a numpy array or a pandas Series: the formula is elementwise


def resolve(norm: Mapping[str, Any], env: str, return_bounds: Sequence[float] | None) -> dict:
    """The rule as a manifest records it: `env_bounds` becomes `min_max` with the environment's bounds."""
    norm = dict(norm)
    if norm["method"] == "env_bounds":
        if return_bounds is None:
            raise CoopbenchError(f"{env} has no known return bounds for env_bounds normalization",
                                 "give min_max with low/high in its config file")
        norm.update(method="min_max", low=float(return_bounds[0]), high=float(return_bounds[1]))
    return norm


def normalized_score(value: Score, norm: Mapping[str, Any]) -> Score:
    """(return - low) / (high - low) under `min_max`; the return itself under `raw`."""
    if norm["method"] == "min_max":
        return (value - norm["low"]) / (norm["high"] - norm["low"])
    if norm["method"] == "raw":
        return value
    raise ValueError(f"normalization method must be one of {RECORDED_METHODS}, got {norm['method']!r}")


def rule_text(norm: Mapping[str, Any]) -> str:
    """The rule in words, as the site shows it: the config's own `rule` text where it gives one."""
    if norm.get("rule"):
        return str(norm["rule"])
    if norm.get("method") == "min_max":
        return f"(return - {norm.get('low')}) / ({norm.get('high')} - {norm.get('low')})"
    return "raw return (not normalized)"
