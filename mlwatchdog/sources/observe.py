"""Observe: gather one target's Observation at `now` from its sources (the shell's step 1).

One Observer serves every target of a config: it owns a reader per source and keeps each built
Reference until its files change, so the reference is sorted once, not every evaluation. Every
sample read (files, SQL, the KServe sink; window and reference) passes `as_declared` here: a
value that is not a number in a `numeric` column is set aside, not a reason to refuse the window.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from mlwatchdog.core import DataStatus, LabelledRows, MetricReading, Observation, RevisionWindows
from mlwatchdog.core.labels import match_ids, match_nearest
from mlwatchdog.detectors import Reference
from mlwatchdog.errors import InputError
from mlwatchdog.rules import (
    Config,
    FilesSource,
    KServeSource,
    MetricCheck,
    PerformanceCheck,
    PrometheusSource,
    SqlSource,
    Target,
)
from mlwatchdog.rules.schema import Revisions
from mlwatchdog.rules.secret import Redactor, secret_values
from mlwatchdog.sources.base import (
    MetricReader,
    SampleReader,
    SetAside,
    SourceRead,
    describe_set_aside,
)
from mlwatchdog.sources.files import FilesReader


def sample_reader(name: str, spec: FilesSource | SqlSource | KServeSource, config: Config) -> Any:
    """The reader for one sample source (imported on use: SQL drivers are only needed for SQL)."""
    if isinstance(spec, SqlSource):
        from mlwatchdog.sources.sql import SqlReader

        return SqlReader(name, spec)
    if isinstance(spec, KServeSource):
        from mlwatchdog.sources.kserve import KServeReader

        return KServeReader(name, spec, config.daemon.sink)
    return FilesReader(name, spec)


def metric_reader(name: str, spec: PrometheusSource) -> Any:
    from mlwatchdog.sources.prometheus import PrometheusReader

    return PrometheusReader(name, spec)


def same_source(old: Config, new: Config, name: str) -> bool:
    """Source `name` reads the same data under both configs (so its reader can be kept)."""
    spec = new.sources.get(name)
    if spec is None or old.sources.get(name) != spec:
        return False
    return not isinstance(spec, KServeSource) or old.daemon.sink == new.daemon.sink


class Observer:
    """Builds Observations for the targets of one config."""

    def __init__(
        self,
        config: Config,
        previous: Observer | None = None,
        *,
        on_set_aside: Callable[[str, SetAside], None] | None = None,
    ) -> None:
        """`previous` is the Observer of the config before a reload: the readers of sources
        defined exactly as before, and the References built from them, are kept (with their
        caches and connections); sources added or changed get new readers. `on_set_aside` is
        called with the source's name for every item a read set aside (window and reference
        reads; the daemon counts them in a metric)."""
        self.config = config
        # Reasons quote what the sources said (a URL, a driver's error): never their secrets.
        self.redactor = Redactor(secret_values(config))
        self.on_set_aside = on_set_aside
        self.readers: dict[str, SampleReader] = {}
        self.metric_readers: dict[str, MetricReader] = {}
        kept = {n for n in config.sources if previous and same_source(previous.config, config, n)}
        for name, spec in config.sources.items():
            if isinstance(spec, PrometheusSource):
                if previous is not None and name in kept:
                    self.metric_readers[name] = previous.metric_readers[name]
                else:
                    self.metric_readers[name] = metric_reader(name, spec)
            elif previous is not None and name in kept:
                self.readers[name] = previous.readers[name]
            else:
                self.readers[name] = sample_reader(name, spec, config)
        # By (source, start, end, kinds): the files' signature, the Reference, what was set aside.
        self._references: dict[tuple[Any, ...], tuple[tuple[Any, ...], Reference, str]] = {}
        if previous is not None:  # dict() copies at once, while evaluations may add entries
            cached = dict(previous._references)
            self._references = {key: v for key, v in cached.items() if key[0] in kept}
        # CBPE's reference rows with labels, by (source, start, end, columns): (signature, rows).
        self._labelled_references: dict[tuple[Any, ...], tuple[Any, pd.DataFrame, str]] = {}
        self.reference_builds = 0  # how many times a Reference was (re)built, for /metrics

    def observe(
        self,
        target: Target,
        now: datetime,
        serving: Callable[[], Revisions | None] | None = None,
    ) -> Observation:
        """The window [now - samples.window, now), the reference and the metric readings.
        During a canary (`samples.revisions`, else `serving()`: the revisions the workload
        serves now, asked only when the source has a `revision_column`), the window's rows
        split by revision."""
        column = revision_column(self.config, target)
        revisions = target.samples.revisions
        if column and revisions is None and serving is not None:
            revisions = serving()
        # The KServe sink's rows always carry their event's endpoint; other sources read it.
        sink = isinstance(self.config.sources.get(target.samples.source), KServeSource)
        columns = list(target.columns.all) + ([column] if column and not sink else [])
        read = self._read_samples(target, columns, now)
        read = self._as_declared(target.samples.source, read, target.columns.all)
        time_column = self._time_column(target.samples.source, read.frame)
        frame = read.frame
        if frame is not None and time_column and not frame[time_column].is_monotonic_increasing:
            # Oldest first, so the most recent rows are the last ones (drift sub-windows).
            ordered = frame.sort_values(time_column, kind="stable", ignore_index=True)
            read = replace(read, frame=ordered)
        reference, ref_status, ref_reason = self.reference(target)
        scrub = self.redactor.text
        metrics = {
            c.name: self.metric(c, target, now) for c in target.checks if isinstance(c, MetricCheck)
        }
        return Observation(
            target=target.name,
            at=now,
            samples=read.frame,
            samples_status=read.status,
            samples_reason=scrub(read.reason),
            reference=reference,
            reference_status=ref_status,
            reference_reason=scrub(ref_reason),
            metrics={n: replace(m, reason=scrub(m.reason)) for n, m in metrics.items()},
            time_column=time_column,
            labels=self.labelled(target, now),
            revisions=by_revision(read.frame, column, revisions),
        )

    def _time_column(self, source: str, frame: Any) -> str | None:
        """The window's timestamp column, if its rows carry one (KServe's sink: `timestamp`)."""
        column = getattr(self.config.sources[source], "timestamp_column", "timestamp")
        if frame is None or not isinstance(column, str) or column not in frame.columns:
            return None
        return str(column)

    def labelled(self, target: Target, now: datetime) -> LabelledRows | None:
        """For performance checks: the predictions of [now - window - delay, now - delay)
        joined with the labels that have arrived by `now`, and (for CBPE) the reference rows
        with their labels. None when the target has no performance check."""
        checks = [c for c in target.checks if isinstance(c, PerformanceCheck)]
        spec = target.labels
        if not checks or spec is None:
            return None
        scrub = self.redactor.text
        rows, status, reason = None, DataStatus.NO_DATA, "no check needs labels"
        if any(c.estimate is None for c in checks):
            rows, status, reason = self._joined(target, now)
        reference, ref_status, ref_reason = None, DataStatus.NO_DATA, "no check estimates"
        if any(c.estimate == "cbpe" for c in checks):
            reference, ref_status, ref_reason = self._reference_labels(target, checks)
        return LabelledRows(rows, status, scrub(reason), reference, ref_status, scrub(ref_reason))

    def _joined(self, target: Target, now: datetime) -> tuple[Any, DataStatus, str]:
        spec = target.labels
        assert spec is not None
        join = spec.join
        keys = [k for k in (join.on, join.on_time, join.key) if k is not None]
        end = now - spec.delay
        start = end - target.samples.window
        source = target.samples.source
        try:
            read = self.readers[source].read(
                [*target.columns.all, *keys], start, end, target.samples.filters
            )
        except Exception as exc:  # readers report failures; this catches their bugs
            read = SourceRead(None, DataStatus.ERROR, f"source {source!r}: {exc}")
        read = self._as_declared(source, read, target.columns.all)
        window = f"[{start:%Y-%m-%d %H:%M:%S}, {end:%Y-%m-%d %H:%M:%S})"
        if read.frame is None:
            return None, read.status, f"predictions of {window}: {read.reason}"
        label_start = start - (join.tolerance if join.on_time else timedelta(0))
        # A labels source without a timestamp_column is a fixed table: all of it is read.
        stamped = getattr(self.config.sources[spec.source], "timestamp_column", "") is not None
        since, until = (label_start, now) if stamped else (None, None)
        try:
            labels = self.readers[spec.source].read([spec.column, *keys], since, until)
        except Exception as exc:
            labels = SourceRead(None, DataStatus.ERROR, f"{type(exc).__name__}: {exc}")
        if labels.frame is None:
            if labels.status is DataStatus.NO_DATA:  # none arrived yet: nothing labelled
                return read.frame.iloc[:0], DataStatus.OK, f"no labels yet: {labels.reason}"
            return None, labels.status, f"labels source {spec.source!r}: {labels.reason}"
        predictions, outcomes = read.frame, labels.frame
        sides = ((predictions, "predictions", keys), (outcomes, "labels", [*keys, spec.column]))
        for frame, what, needed in sides:
            missing = [k for k in needed if k not in frame]
            if missing:
                return None, DataStatus.ERROR, f"the {what} have no column {missing[0]!r}"
        if join.on is not None:
            found = match_ids(predictions[join.on].to_numpy(), outcomes[join.on].to_numpy())
        else:
            assert join.on_time is not None
            p_times, p_ok = _nanoseconds(predictions[join.on_time])
            l_times, l_ok = _nanoseconds(outcomes[join.on_time])
            predictions, outcomes = predictions[p_ok], outcomes[l_ok]
            found = match_nearest(
                p_times[p_ok],
                l_times[l_ok],
                int(join.tolerance.total_seconds() * 1e9),
                None if join.key is None else predictions[join.key].to_numpy(),
                None if join.key is None else outcomes[join.key].to_numpy(),
            )
        matched = found >= 0
        joined = predictions[matched].copy()
        joined[spec.column] = outcomes[spec.column].to_numpy()[found[matched]]
        reason = f"{int(matched.sum()):,} of {len(predictions):,} predictions of {window} labelled"
        return joined.reset_index(drop=True), DataStatus.OK, reason

    def _reference_labels(
        self, target: Target, checks: list[PerformanceCheck]
    ) -> tuple[Any, DataStatus, str]:
        """The reference rows' scores and labels, for CBPE's calibration (cached as the
        Reference is: read again only when the source's files change)."""
        assert target.labels is not None
        spec = target.reference
        scores = sorted({c.score for c in checks if c.score is not None})
        columns = [*scores, target.labels.column]
        key = (spec.source, spec.start, spec.end, tuple(columns))
        reader = self.readers[spec.source]
        try:
            signature = reader.signature(spec.start, spec.end)
            cached = self._labelled_references.get(key)
            if cached is not None and cached[0] == signature:
                return cached[1], DataStatus.OK, cached[2]
            read = reader.read(columns, spec.start, spec.end)
        except Exception as exc:  # any failure of the source is "no reference", never a crash
            return None, DataStatus.ERROR, f"cannot read source {spec.source!r}: {exc}"
        if read.frame is None:
            why = f"{read.reason} (CBPE calibrates on its label column {target.labels.column!r})"
            return None, read.status, f"source {spec.source!r}: {why}"
        if target.labels.column not in read.frame:
            return (
                None,
                DataStatus.ERROR,
                (
                    f"reference source {spec.source!r} has no label column "
                    f"{target.labels.column!r}: CBPE calibrates scores on the reference's labels"
                ),
            )
        note = f"{len(read.frame):,} reference rows"
        self._labelled_references[key] = (signature, read.frame, note)
        return read.frame, DataStatus.OK, note

    def _read_samples(self, target: Target, columns: list[str], now: datetime) -> SourceRead:
        source = target.samples.source
        try:
            return self.readers[source].read(
                columns, now - target.samples.window, now, target.samples.filters
            )
        except Exception as exc:  # readers report failures; this catches their bugs
            return SourceRead(None, DataStatus.ERROR, f"source {source!r}: {exc}")

    def metric(self, check: MetricCheck, target: Target, now: datetime) -> MetricReading:
        """One metric check's reading; a reader that raises gives an error reading, not a crash."""
        try:
            return self.metric_readers[check.source].instant(check, target, now)
        except Exception as exc:  # a bug in a reader must not stop the other checks
            return MetricReading(DataStatus.ERROR, reason=f"{type(exc).__name__}: {exc}")

    def reference_frame(self, target: Target) -> Any:
        """The reference rows themselves (a DataFrame, or None), read again: for reports only,
        the cached Reference keeps sorted columns, not rows."""
        spec = target.reference
        kinds = target.columns.all
        frame = self.readers[spec.source].read(list(kinds), spec.start, spec.end).frame
        # As the Reference was built from (bundles check its fingerprint); counted then, not now.
        return None if frame is None else as_declared(frame, kinds)[0]

    def reference(self, target: Target) -> tuple[Reference | None, DataStatus, str]:
        """The target's Reference, rebuilt only when the files behind it changed."""
        spec = target.reference
        reader = self.readers[spec.source]
        kinds = target.columns.all
        key = (spec.source, spec.start, spec.end, tuple(kinds.items()))
        try:
            signature = reader.signature(spec.start, spec.end)
        except Exception as exc:  # any failure of the source is "no reference", never a crash
            return None, DataStatus.ERROR, f"cannot read source {spec.source!r}: {exc}"
        cached = self._references.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1], DataStatus.OK, cached[2]
        read = self._as_declared(spec.source, reader.read(list(kinds), spec.start, spec.end), kinds)
        if read.frame is None:
            return None, read.status, read.reason
        try:
            built = Reference(read.frame, columns=list(kinds), kinds=list(kinds.values()))
        except InputError as exc:
            return None, DataStatus.ERROR, str(exc)
        note = describe_set_aside(read.set_aside)  # "" when nothing was
        self._references[key] = (signature, built, note)
        self.reference_builds += 1
        return built, DataStatus.OK, note

    def _as_declared(self, source: str, read: SourceRead, kinds: Mapping[str, str]) -> SourceRead:
        """`read` with its values as `kinds` declares them (`as_declared`), what that set aside
        added to the reader's own, and every item reported to `on_set_aside`."""
        values: list[SetAside] = []
        frame = read.frame
        if frame is not None:
            frame, values = as_declared(frame, kinds)
        aside = (*read.set_aside, *values)
        if self.on_set_aside is not None:
            for item in aside:
                self.on_set_aside(source, item)
        if not values:
            return read
        reason = f"{read.reason}; {describe_set_aside(values)}"
        return replace(read, frame=frame, reason=reason, set_aside=aside)


def revision_column(config: Config, target: Target) -> str | None:
    """The column of the target's samples that names the revision serving each row, if any."""
    spec = config.sources.get(target.samples.source)
    return (
        spec.revision_column if isinstance(spec, FilesSource | SqlSource | KServeSource) else None
    )


def by_revision(
    frame: pd.DataFrame | None, column: str | None, revisions: Revisions | None
) -> RevisionWindows | None:
    """The window's rows of the canary and of the stable revision (values compared as text,
    so a hash read as a number still matches); None when no canary runs or rows cannot say."""
    if frame is None or column is None or revisions is None or column not in frame.columns:
        return None
    served = frame[column].astype("string")
    canary = frame[(served == revisions.canary).fillna(False).to_numpy(dtype=bool)]
    stable = frame[(served == revisions.stable).fillna(False).to_numpy(dtype=bool)]
    return RevisionWindows(revisions.canary, revisions.stable, canary, stable)


def as_declared(
    frame: pd.DataFrame, kinds: Mapping[str, str]
) -> tuple[pd.DataFrame, list[SetAside]]:
    """`frame` with every `numeric` column as float64 numbers, and what that set aside: a value
    that is not a number (text that does not read as one, a boolean, a list, an object, an
    integer beyond float's range) becomes missing (NaN, which the detectors drop per column) and
    is counted, so one bad value never makes the drift tests refuse the window. Numbers are
    converted as they are (never through text); text that reads as a number is that number
    (a csv column holds text when one of its values is not a number). Columns already of a
    number dtype are left as they are (integers stay integers)."""
    converted: dict[str, Any] = {}
    aside: list[SetAside] = []
    for column, kind in kinds.items():
        if kind != "numeric" or column not in frame.columns:
            continue
        values = frame[column]
        if _number_dtype(values.dtype):
            continue
        floats = np.empty(len(values), dtype=np.float64)
        lost = 0
        for i, value in enumerate(values.to_numpy(dtype=object)):
            number = _number(value)
            floats[i] = math.nan if number is None else number
            lost += number is None
        converted[column] = pd.Series(floats, index=values.index, name=column)
        if lost:
            aside.append(SetAside("value", "not_numeric", lost, column))
    return (frame.assign(**converted) if converted else frame), aside


def _nanoseconds(values: pd.Series) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Timestamps as UTC nanoseconds, and which rows have one."""
    stamps = pd.to_datetime(values, utc=True, errors="coerce")
    ok = stamps.notna().to_numpy()
    nanos = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return nanos, ok


def _number_dtype(dtype: Any) -> bool:
    """Integers or floats, as numpy or as a pandas extension dtype (Int64, Float64)."""
    numpy = dtype if isinstance(dtype, np.dtype) else getattr(dtype, "numpy_dtype", None)
    return isinstance(numpy, np.dtype) and numpy.kind in "iuf"


def _number(value: Any) -> float | None:
    """`value` as a float (NaN when it is missing), or None when it is not a number. Booleans
    are not numbers (JSON's true is a category; the KServe sink refuses it too)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return math.nan
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Real | Decimal):
        try:
            return float(value)
        except (OverflowError, ValueError):  # an integer no float holds; Decimal("sNaN")
            return None
    if isinstance(value, str) and "_" not in value:  # float() would take "1_000"
        try:
            return float(value)  # correctly rounded, as the csv reader's round_trip
        except ValueError:
            return None
    return None
