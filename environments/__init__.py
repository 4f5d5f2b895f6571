"""Batched cooperative multi-agent environments (see base.py for the contract)."""

from environments.base import BatchedEnv, EnvSpec, TimeStep
from environments.registry import make, names

__all__ = ["BatchedEnv", "EnvSpec", "TimeStep", "make", "names"]
