"""Probe: read every target's sources once, as the daemon would, and say what was found; for
`mlwatchdog check --sources` (the CLI prints the results; nothing is written anywhere).

Each target is observed by one `Observer` over the config, exactly as an evaluation observes it:
its samples window at `at`, its reference, each metric check's instant value. The results are
plain records; every text in them has passed the config's `Redactor` (reasons quote URLs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from mlwatchdog.core import DataStatus, Observation
from mlwatchdog.core.blind import MISSING
from mlwatchdog.rules import Config, DriftCheck, MetricCheck, PerformanceCheck, Target
from mlwatchdog.sources.observe import Observer


@dataclass(frozen=True)
class SamplesFound:
    """The samples window: its rows, their time range, declared columns absent from them. The
    reason is the read's own, which says what it set aside (files, rows, values) and why."""

    source: str
    status: DataStatus
    reason: str
    rows: int = 0
    first: datetime | None = None
    last: datetime | None = None
    columns_missing: tuple[str, ...] = ()
    used: bool = True  # read by a drift check (else missing samples blind nothing)


@dataclass(frozen=True)
class ReferenceFound:
    source: str
    status: DataStatus
    reason: str
    rows: int = 0
    fingerprint: str = ""
    used: bool = True


@dataclass(frozen=True)
class MetricFound:
    check: str
    source: str
    status: DataStatus
    value: float | None
    reason: str


@dataclass(frozen=True)
class LabelsFound:
    """Performance checks' inputs: the delayed window's predictions joined with their labels
    (`status`, `reason`: how many were labelled), and the reference's labels for CBPE."""

    source: str
    status: DataStatus
    reason: str
    rows: int = 0
    reference_status: DataStatus | None = None  # None: no check estimates (CBPE)
    reference_reason: str = ""


@dataclass(frozen=True)
class TargetFound:
    """What one read of a target's sources found, and what is missing (`problems`)."""

    target: str
    at: datetime
    window: timedelta  # the samples window read, [at - window, at)
    samples: SamplesFound
    reference: ReferenceFound
    metrics: tuple[MetricFound, ...]
    labels: LabelsFound | None = None  # None: no performance check

    @property
    def problems(self) -> list[str]:
        """What keeps a check from judging: an input missing or failing, declared columns absent
        from the rows. Too few rows is not one: that is traffic, the checks say 'insufficient'."""
        found = []
        samples, reference = self.samples, self.reference
        if samples.used and samples.status in MISSING:
            found.append(f"samples ({samples.status}): {samples.reason}")
        if samples.used and samples.columns_missing:
            found.append(f"samples: no column(s) {', '.join(samples.columns_missing)} in the rows")
        if reference.used and reference.status in MISSING:
            found.append(f"reference ({reference.status}): {reference.reason}")
        for metric in self.metrics:
            if metric.status in MISSING:
                found.append(f"metric {metric.check} ({metric.status}): {metric.reason}")
        labels = self.labels
        if labels is not None and labels.status in MISSING:
            found.append(f"labels ({labels.status}): {labels.reason}")
        if labels is not None and labels.reference_status in MISSING:
            found.append(f"reference labels ({labels.reference_status}): {labels.reference_reason}")
        return found


def probe(config: Config, at: datetime) -> list[TargetFound]:
    """Every target's sources read once at `at`, in the config's order."""
    observer = Observer(config)
    return [_found(config, t, observer.observe(t, at)) for t in config.targets]


def _found(config: Config, target: Target, seen: Observation) -> TargetFound:
    used = any(isinstance(c, DriftCheck) for c in target.checks)
    source = target.samples.source
    frame = seen.samples
    # The Observer has scrubbed every reason already (with the config's Redactor).
    samples = SamplesFound(source, seen.samples_status, seen.samples_reason, used=used)
    if frame is not None:
        first, last = _time_range(frame, config.sources[source])
        samples = SamplesFound(
            source,
            seen.samples_status,
            seen.samples_reason,
            rows=len(frame),
            first=first,
            last=last,
            columns_missing=tuple(c for c in target.columns.all if c not in frame.columns),
            used=used,
        )
    ref = seen.reference
    reference = ReferenceFound(
        target.reference.source,
        seen.reference_status,
        seen.reference_reason,
        rows=max((c.n + c.n_dropped for c in ref.sample.columns), default=0) if ref else 0,
        fingerprint=ref.fingerprint if ref else "",
        used=used,
    )
    metrics = tuple(
        MetricFound(c.name, c.source, reading.status, reading.value, reading.reason)
        for c in target.checks
        if isinstance(c, MetricCheck)
        for reading in [seen.metrics[c.name]]
    )
    window = target.samples.window
    return TargetFound(
        target.name, seen.at, window, samples, reference, metrics, _labels_found(target, seen)
    )


def _labels_found(target: Target, seen: Observation) -> LabelsFound | None:
    labelled, spec = seen.labels, target.labels
    if labelled is None or spec is None:
        return None
    estimates = any(isinstance(c, PerformanceCheck) and c.estimate for c in target.checks)
    measures = any(isinstance(c, PerformanceCheck) and not c.estimate for c in target.checks)
    return LabelsFound(
        spec.source,
        labelled.status if measures else DataStatus.OK,
        labelled.reason,
        rows=0 if labelled.rows is None else len(labelled.rows),
        reference_status=labelled.reference_status if estimates else None,
        reference_reason=labelled.reference_reason,
    )


def _time_range(frame: pd.DataFrame, spec: Any) -> tuple[datetime | None, datetime | None]:
    """The oldest and newest row time (the KServe sink's rows are stamped `timestamp`)."""
    column = getattr(spec, "timestamp_column", "timestamp")
    if column is None or column not in frame.columns or frame.empty:
        return None, None
    stamps = pd.to_datetime(frame[column], utc=True).dropna()
    if stamps.empty:
        return None, None
    return stamps.min().to_pydatetime(), stamps.max().to_pydatetime()
