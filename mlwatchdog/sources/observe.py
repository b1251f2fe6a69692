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
from mlwatchdog.rules import Config, FilesSource, MetricCheck, Target
from mlwatchdog.sources.files import FilesReader


class Observer:
    """Builds Observations for the targets of one config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.readers = {
            name: FilesReader(name, spec)
            for name, spec in config.sources.items()
            if isinstance(spec, FilesSource)
        }
        self._references: dict[tuple[Any, ...], tuple[tuple[Any, ...], Reference]] = {}
        self.reference_builds = 0  # how many times a Reference was (re)built, for /metrics

    def observe(self, target: Target, now: datetime) -> Observation:
        """The window [now - samples.window, now), the reference and the metric readings."""
        columns = list(target.columns.all)
        read = self.readers[target.samples.source].read(
            columns, now - target.samples.window, now, target.samples.filters
        )
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
                c.name: MetricReading(
                    DataStatus.ERROR,
                    reason="reading Prometheus sources is not supported by this version",
                )
                for c in target.checks
                if isinstance(c, MetricCheck)
            },
        )

    def reference(self, target: Target) -> tuple[Reference | None, DataStatus, str]:
        """The target's Reference, rebuilt only when the files behind it changed."""
        spec = target.reference
        reader = self.readers[spec.source]
        kinds = target.columns.all
        key = (spec.source, spec.start, spec.end, tuple(kinds.items()))
        try:
            signature = reader.signature(spec.start, spec.end)
        except (OSError, ValueError) as exc:
            return None, DataStatus.ERROR, f"cannot list {reader.spec.url}: {exc}"
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
