"""Structured JSON logs (one JSON object per line on stdout), configured once by the daemon.

Every line passes through the daemon's `Redactor` last, so a secret quoted by an exception (a URL
with a password, a token in a client's error) is printed as `***`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from mlwatchdog.rules.secret import Redactor


def configure_logging(level: str = "info", redactor: Redactor | None = None) -> Any:
    """Route structlog to stdout as JSON lines at `level`; returns the daemon's logger."""
    scrub = redactor if redactor is not None else Redactor()

    def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        return scrub.data(dict(event)) if scrub else event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(sort_keys=False, default=str),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("mlwatchdog")
