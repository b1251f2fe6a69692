"""The daemon's logs on stdout: JSON lines (one object per line) for machines, or aligned
`key=value` lines for people (`--log-format console`), configured once by the daemon.

Every line passes through the daemon's `Redactor` last, so a secret quoted by an exception (a URL
with a password, a token in a client's error) is printed as `***`, in either format.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from enum import StrEnum
from typing import Any, TextIO

import structlog

from mlwatchdog.rules.secret import Redactor


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def default_log_format(stream: TextIO | None = None) -> LogFormat:
    """Console for a person at a terminal, JSON lines anywhere else (a container, a pipe)."""
    out = sys.stdout if stream is None else stream
    return LogFormat.CONSOLE if out.isatty() else LogFormat.JSON


def configure_logging(
    level: str = "info",
    redactor: Redactor | None = None,
    log_format: LogFormat | None = None,
) -> Any:
    """Route structlog to stdout at `level`, as JSON lines or for a console (default: console on
    a terminal, else JSON); returns the daemon's logger."""
    scrub = redactor if redactor is not None else Redactor()
    chosen = default_log_format() if log_format is None else log_format

    def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        return scrub.data(dict(event)) if scrub else event

    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty(), sort_keys=False)
        if chosen is LogFormat.CONSOLE
        else structlog.processors.JSONRenderer(sort_keys=False, default=str)
    )
    stamped: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Exceptions become text before redaction, in both formats: a traceback can quote
        # a secret too.
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *stamped, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamped],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact, renderer],
    )
    _route_libraries(formatter, max(logging.WARNING, getattr(logging, level.upper())))
    return structlog.get_logger("mlwatchdog")


class _LibraryHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root logger's handler that configure_logging installs (one, replaced on a new call)."""


def _route_libraries(formatter: logging.Formatter, level: int) -> None:
    """Libraries log through the standard library (APScheduler, uvicorn, the kubernetes client,
    urllib3, botocore): their records go the daemon's way too (one format, redacted, stdout),
    at warning and above, instead of through Python's last-resort handler, which printed them
    on stderr as raw text, a URL's password and all."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LibraryHandler)]:
        root.removeHandler(old)
    handler = _LibraryHandler(sys.stdout)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
