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
