"""Observe: gather one target's Observation at `now` from its sources (the shell's step 1).

One Observer serves every target of a config: it owns a reader per source and keeps each built
Reference until its files change, so the reference is sorted once, not every evaluation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlwatchdog.core import DataStatus, MetricReading, Observation
from mlwatchdog.detectors import Reference
from mlwatchdog.errors import InputError
from mlwatchdog.rules import (
    Config,
    FilesSource,
    KServeSource,
    MetricCheck,
    PrometheusSource,
    SqlSource,
    Target,
)
from mlwatchdog.sources.base import MetricReader, SampleReader, SourceRead
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

    def __init__(self, config: Config, previous: Observer | None = None) -> None:
        """`previous` is the Observer of the config before a reload: the readers of sources
        defined exactly as before, and the References built from them, are kept (with their
        caches and connections); sources added or changed get new readers."""
        self.config = config
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
        self._references: dict[tuple[Any, ...], tuple[tuple[Any, ...], Reference]] = {}
        if previous is not None:  # dict() copies at once, while evaluations may add entries
            cached = dict(previous._references)
            self._references = {key: v for key, v in cached.items() if key[0] in kept}
        self.reference_builds = 0  # how many times a Reference was (re)built, for /metrics

    def observe(self, target: Target, now: datetime) -> Observation:
        """The window [now - samples.window, now), the reference and the metric readings."""
        columns = list(target.columns.all)
        read = self._read_samples(target, columns, now)
        reference, ref_status, ref_reason = self.reference(target)
        return Observation(
            target=target.name,
            at=now,
            samples=read.frame,
            samples_status=read.status,
            samples_reason=read.reason,
            reference=reference,
            reference_status=ref_status,
            reference_reason=ref_reason,
            metrics={
                c.name: self.metric(c, target, now)
                for c in target.checks
                if isinstance(c, MetricCheck)
            },
        )

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
        return self.readers[spec.source].read(list(target.columns.all), spec.start, spec.end).frame

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
            return cached[1], DataStatus.OK, ""
        read = reader.read(list(kinds), spec.start, spec.end)
        if read.frame is None:
            return None, read.status, read.reason
        try:
            built = Reference(read.frame, columns=list(kinds), kinds=list(kinds.values()))
        except InputError as exc:
            return None, DataStatus.ERROR, str(exc)
        self._references[key] = (signature, built)
        self.reference_builds += 1
        return built, DataStatus.OK, ""
