"""Adapters over maintained environment libraries (VMAS, MPE2, RWARE, MaMuJoCo, ...).

Each adapter imports its library inside its constructor, so importing this package never needs
them; a missing library fails at construction with `MissingDependencyError` naming the package and
the `pip install -e '.[<extra>]'` that brings it. Libraries that simulate one environment per
object are batched by `process_pool` (copies in worker processes, shared-memory buffers).
"""


def install_hint(*requirements: str) -> str:
    """The fix for a missing library that is one of coopbench's own dependencies (pyproject.toml)."""
    quoted = " ".join(f"'{r}'" for r in requirements)
    return f"make venv (installs requirements.lock), or: pip install {quoted}"
