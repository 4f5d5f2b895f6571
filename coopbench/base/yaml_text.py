"""YAML text parsed with libyaml's C parser where PyYAML has it (about twice as fast as the pure-Python one: every
process that plans a suite or loads the papers parses some hundred files), the same safe subset either way."""

from __future__ import annotations

from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    """`yaml.safe_load(text)`, faster; raises yaml.YAMLError on bad syntax."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
