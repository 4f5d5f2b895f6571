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


class StorageError(CoopbenchError):
    """A result file could not be written (a full disk, a read-only or missing folder); the previous file is intact.

    Not final for the workflow: a retry after space is freed may succeed."""


class NonFiniteError(CoopbenchError):
    """Training produced a NaN or infinite loss or return; the run stops and its last good checkpoint is kept."""


class RunLockedError(CoopbenchError):
    """Another process holds the run directory's lock."""
