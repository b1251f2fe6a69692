"""mlwatchdog: keeps deployed ML models honest (drift and metric checks, safe rollback, replay)."""

from mlwatchdog.errors import InputError, MlwatchdogError

__version__ = "0.1.0"

__all__ = ["InputError", "MlwatchdogError", "__version__"]
