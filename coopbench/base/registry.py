"""A name -> "module:Class" registry, shared by environments and algorithms.

Targets are imported on first use, so an entry whose optional library is absent fails only when
it is built, with that library's own clear error.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from coopbench.base.errors import CoopbenchError


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    target: str  # "module:Class"
    summary: str

    def load(self):
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, family: str, target: str, summary: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = Entry(name, family, target, summary)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            from coopbench.base.config_errors import did_you_mean

            raise CoopbenchError(
                f"unknown {self.kind} {name!r}",
                f"{did_you_mean(name, self.names())}choose one of: {', '.join(self.names())} (see `coopbench list`)",
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]
