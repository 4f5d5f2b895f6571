"""The one error type users see: a message naming the problem and the fix."""


class CoopbenchError(Exception):
    """A user-facing error. The CLI prints `str(err)` on one line and exits with status 2."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem} (fix: {fix})")


class MissingDependencyError(CoopbenchError):
    """A package or binary an environment or algorithm needs is not installed."""

    def __init__(self, what: str, install_hint: str):
        super().__init__(f"missing dependency: {what}", install_hint)
