"""The one exception tree of mlwatchdog; every message says what, where, and what to do."""

from collections.abc import Sequence
from typing import Any


class MlwatchdogError(Exception):
    """Root of every error mlwatchdog raises on purpose."""


class InputError(MlwatchdogError, ValueError):
    """Data handed to a detector or command is unusable (wrong columns, dtypes, shapes)."""


class ConfigError(MlwatchdogError):
    """A rules file that cannot be used; `issues` lists every problem with file and line."""

    def __init__(self, message: str, issues: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.issues = list(issues)


class ActionError(MlwatchdogError):
    """A Kubernetes action that could not be carried out; `kind` says whether to try again.

    temporary: the API was unreachable, timed out or answered 5xx/429; another attempt may work.
    conflict: the object changed since it was read (409); re-read, re-plan, try again.
    permanent: 4xx such as 403 (RBAC) or 404 (no such object); trying again cannot help.
    """

    def __init__(self, message: str, kind: str = "permanent", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class StartupError(MlwatchdogError):
    """The daemon cannot start serving (its HTTP port is taken or not allowed); `mlwatchdog run`
    exits with its own status for it."""
