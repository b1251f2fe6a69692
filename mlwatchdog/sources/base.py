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


@dataclass(frozen=True)
class SetAside:
    """Input a read left out so the rest could be tested: a corrupt, half-written or duplicate
    file, or rows and values that were not what the columns declare. `reason` is a short token
    for the metric label (corrupt, duplicate, bad_timestamp, not_numeric, ...); `detail` names
    the file or column for the reason text."""

    what: str  # "file", "row" or "value"
    reason: str
    count: int
    detail: str = ""


def describe_set_aside(items: Sequence[SetAside], shown: int = 5) -> str:
    """What was set aside, for a reason text: "1 file set aside (corrupt: <path>: <why>); 3 rows
    set aside (bad_timestamp: <path>)". The first `shown` items, then how many more (a
    thousand broken files must not make a reason of a megabyte)."""
    described = []
    for item in items[:shown]:
        noun = item.what if item.count == 1 else f"{item.what}s"
        detail = f": {item.detail}" if item.detail else ""
        described.append(f"{item.count} {noun} set aside ({item.reason}{detail})")
    if len(items) > shown:
        described.append(f"{len(items) - shown} more set aside")
    return "; ".join(described)


@dataclass(frozen=True, eq=False)
class SourceRead:
    """A read from a source: the rows (or None), their status and why, and what was read."""

    frame: pd.DataFrame | None
    status: DataStatus
    reason: str = ""
    files: tuple[str, ...] = ()
    set_aside: tuple[SetAside, ...] = ()


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
