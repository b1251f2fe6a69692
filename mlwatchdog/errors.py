"""The one exception tree of mlwatchdog; every message says what, where, and what to do."""


class MlwatchdogError(Exception):
    """Root of every error mlwatchdog raises on purpose."""


class InputError(MlwatchdogError, ValueError):
    """Data handed to a detector or command is unusable (wrong columns, dtypes, shapes)."""
