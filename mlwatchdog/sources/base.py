"""What every source returns, and the two kinds of reader the Observer talks to.

A sample reader (files, SQL, the KServe sink) returns a window of rows; a metric reader
(Prometheus) returns one value per metric check. Neither raises for a failing source: the failure
comes back as a status with its reason, so it becomes "no data" for the target, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from mlwatchdog.core import DataStatus, MetricReading
from mlwatchdog.rules import MetricCheck, Target

Filters = Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class SourceRead:
    """A read from a source: the rows (or None), their status and why, and what was read."""

    frame: pd.DataFrame | None
    status: DataStatus
    reason: str = ""
    files: tuple[str, ...] = ()


class SampleReader(Protocol):
    """Reads rows of one sample source (`type: files`, `sql` or `kserve`)."""

    name: str

    def signature(self, start: datetime | None = None, end: datetime | None = None) -> Any:
        """A cheap value that changes when the rows of [start, end) change (reference caching)."""
        ...

    def read(
        self,
        columns: Sequence[str],
        start: datetime | None = None,
        end: datetime | None = None,
        filters: Filters | None = None,
    ) -> SourceRead:
        """Rows of [start, end) (every row without a window) with `columns` and the timestamp."""
        ...


class MetricReader(Protocol):
    """Reads metric checks' values from one metric source (`type: prometheus`)."""

    name: str

    def instant(self, check: MetricCheck, target: Target, at: datetime) -> MetricReading:
        """The check's value at `at` (an instant query), or why there is none."""
        ...
