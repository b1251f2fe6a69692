"""Writes that fail (a state file, the audit trail, the journal, a bundle, the KServe sink's
store): never silent.

Each fault is counted in /metrics, logged at error when it starts and at warning when it ends,
and shown by /readyz (503) until the write succeeds again. The writers keep what they could not
write and try again (the sink refuses its events instead, and probes its store); this module
only keeps the books.
"""

from __future__ import annotations

import threading
from typing import Any

from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.rules.secret import Redactor

# What becomes of what could not be written, as the log says it.
_MEANWHILE = {"sink": "events refused (503 not_stored) until the store takes a write again"}


class Faults:
    """The failing writes of one daemon, by what failed ("state", "audit", ...) and where."""

    def __init__(self, metrics: DaemonMetrics, log: Any, redactor: Redactor | None = None) -> None:
        self.metrics = metrics
        self.log = log
        # /readyz answers anyone: an error's text (a URL, a store's message) is scrubbed first.
        self.redactor = redactor if redactor is not None else Redactor()
        self._current: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def report(self, what: str, where: str, error: str | None) -> None:
        """A write of `what` at `where` failed with `error`, or succeeded (None)."""
        where = self.redactor.text(where)
        error = None if error is None else self.redactor.text(error)
        key = (what, where)
        with self._lock:
            before = self._current.get(key)
            if error is None:
                self._current.pop(key, None)
            else:
                self._current[key] = error
            failing = sum(1 for w, _ in self._current if w == what)
        if error is not None:
            self.metrics.write_failures.labels(what).inc()
        self.metrics.writes_failing.labels(what).set(failing)
        if error is not None and before is None:
            meanwhile = _MEANWHILE.get(what, "kept and retried")
            self.log.error(f"{what} write failing; {meanwhile}", where=where, error=error)
        elif error is None and before is not None:
            self.log.warning(f"{what} written again", where=where)

    def reporter(self, what: str, where: str) -> Any:
        """`report` for one writer: a callable of the error (None once it writes again)."""
        return lambda error: self.report(what, where, error)

    def current(self) -> dict[str, str]:
        """'what at where' -> the error, for every write failing now."""
        with self._lock:
            return {f"{what} at {where}": e for (what, where), e in self._current.items()}
