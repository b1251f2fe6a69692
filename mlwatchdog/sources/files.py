"""The files source: sample windows from parquet, csv or jsonl files, local or on any fsspec URL.

A window [start, end) reads only the partitions it overlaps when the source declares its layout
(`partitioning: "dt=%Y-%m-%d/hour=%H"`), keeps the rows whose timestamp falls inside, and applies
equality filters. Failures come back as a status with the reason, never as an exception.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec
import pandas as pd

from mlwatchdog.core import DataStatus
from mlwatchdog.errors import InputError
from mlwatchdog.rules import FilesSource
from mlwatchdog.sources.base import Filters, SourceRead
from mlwatchdog.sources.tables import read_table


class FilesReader:
    """Reads one `type: files` source; one instance per source, shared by the targets using it."""

    cache_bytes = 256 * 2**20  # parsed files kept for the next windows (least recently used go)

    def __init__(self, name: str, spec: FilesSource) -> None:
        self.name = name
        self.spec = spec
        self.fs, self.root = fsspec.core.url_to_fs(spec.url, **spec.storage_options)
        # Files already read, by (path, columns, timestamp column), least recently used first.
        self._cache: OrderedDict[tuple[Any, ...], tuple[str, pd.DataFrame, int]] = OrderedDict()
        self._cache_bytes = 0

    def files(self, start: datetime | None = None, end: datetime | None = None) -> list[str]:
        """The data files that can hold rows of [start, end) (all of them without a window)."""
        return sorted(self._listing(start, end))

    def _listing(self, start: datetime | None, end: datetime | None) -> dict[str, dict[str, Any]]:
        """The data files of [start, end) with their details, from the listing itself (no extra
        request per file, which matters on object stores)."""
        root = self.root.rstrip("/")
        if self.spec.partitioning and start is not None and end is not None:
            found: dict[str, dict[str, Any]] = {}
            late = end + self.spec.late_files  # a batch written at 09:00 holds 08:59's rows
            for directory in partition_dirs(self.spec.partitioning, start, late):
                path = f"{root}/{directory}"
                if self.fs.isdir(path):
                    found.update(self.fs.find(path, detail=True))
            return {p: info for p, info in found.items() if _is_data_file(p, root)}
        if any(ch in self.root for ch in "*?["):
            globbed = self.fs.glob(self.root, detail=True)
            return {p: info for p, info in globbed.items() if _is_data_file(p)}
        if self.fs.isfile(self.root):
            return {self.root: self.fs.info(self.root)}
        found = self.fs.find(self.root, detail=True)
        return {p: info for p, info in found.items() if _is_data_file(p, root)}

    def signature(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> tuple[Any, ...]:
        """What identifies the content of [start, end): each file's path and properties."""
        return tuple(
            (path, _fingerprint(info)) for path, info in sorted(self._listing(start, end).items())
        )

    def read(
        self,
        columns: Sequence[str],
        start: datetime | None = None,
        end: datetime | None = None,
        filters: Filters | None = None,
    ) -> SourceRead:
        """Rows of [start, end) (every row without a window) with `columns`, filtered."""
        ts = self.spec.timestamp_column
        windowed = start is not None and end is not None
        if windowed and ts is None:
            return SourceRead(
                None, DataStatus.ERROR, f"source {self.name!r} has no timestamp_column"
            )
        try:
            listing = self._listing(start, end)
        except (OSError, ValueError) as exc:
            return SourceRead(None, DataStatus.ERROR, f"cannot list {self.spec.url}: {exc}")
        paths = sorted(listing)
        if not paths:
            return SourceRead(None, DataStatus.NO_DATA, f"no files under {self.spec.url}" + (
                f" for [{start:%Y-%m-%d %H:%M:%S}, {end:%Y-%m-%d %H:%M:%S})" if windowed else ""
            ))  # fmt: skip
        wanted = list(dict.fromkeys([*columns, *(filters or {}), *([ts] if windowed else [])]))
        frames = []
        try:
            for path in paths:
                frame = self._cached_read(path, listing[path], wanted, ts if windowed else None)
                if windowed:
                    assert ts is not None
                    stamps = frame[ts]
                    frame = frame[(stamps >= start) & (stamps < end)]
                frames.append(frame)
        except InputError as exc:
            return SourceRead(None, DataStatus.ERROR, str(exc), tuple(paths))
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=wanted)
        rows = apply_filters(rows, filters or {})
        if rows.empty:
            where = f" in [{start:%H:%M:%S}, {end:%H:%M:%S})" if windowed else ""
            reason = f"no rows{where} in {len(paths)} file(s)"
            return SourceRead(None, DataStatus.NO_DATA, reason, tuple(paths))
        return SourceRead(rows, DataStatus.OK, f"{len(rows)} rows", tuple(paths))

    def _cached_read(
        self, path: str, info: dict[str, Any], wanted: list[str], ts: str | None
    ) -> pd.DataFrame:
        """A file's `wanted` columns (timestamps as UTC), read once while the file is unchanged:
        a window that moves by one interval reuses every file but the newest."""
        key = (path, tuple(wanted), ts)
        fingerprint = _fingerprint(info)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == fingerprint:
            self._cache.move_to_end(key)
            return cached[1]
        frame = read_table(path, wanted, fs=self.fs, format=self.spec.format)
        if ts is not None:
            frame = frame.assign(**{ts: to_utc(frame[ts], path, ts)})
        if cached is not None:
            self._cache_bytes -= cached[2]
        size = int(frame.memory_usage(deep=True).sum())
        self._cache[key] = (fingerprint, frame, size)
        self._cache_bytes += size
        while self._cache_bytes > self.cache_bytes and len(self._cache) > 1:
            _, (_, _, evicted) = self._cache.popitem(last=False)
            self._cache_bytes -= evicted
        return frame


def _fingerprint(info: dict[str, Any]) -> str:
    # All of the details: the modification time is `mtime`, `LastModified`, `last_modified`,
    # `updated` or `created` depending on the filesystem, or only an ETag.
    return repr(sorted(info.items()))


def to_utc(values: pd.Series, path: str, column: str) -> pd.Series:
    """Timestamps as tz-aware UTC; naive ones are taken as UTC, numbers as Unix seconds."""
    try:
        if pd.api.types.is_numeric_dtype(values):
            return pd.to_datetime(values, unit="s", utc=True)
        try:
            return pd.to_datetime(values, utc=True)
        except ValueError:
            # pandas infers one format from the first value, but Python's isoformat() leaves out
            # the fraction when it is 0: parse each value on its own (slower, only then).
            return pd.to_datetime(values, utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: column {column!r} is not a timestamp: {exc}") from exc


def apply_filters(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """Rows whose column equals the value (or is one of the listed values) for every filter."""
    for column, value in filters.items():
        allowed = value if isinstance(value, list) else [value]
        frame = frame[frame[column].isin(allowed)]
    return frame


_STEPS = [("%M", timedelta(minutes=1)), ("%H", timedelta(hours=1)), ("%d", timedelta(days=1))]


def partition_dirs(template: str, start: datetime, end: datetime) -> list[str]:
    """The partition directories of `template` that overlap [start, end), in time order."""
    step = next((size for field, size in _STEPS if field in template), None)
    return list(dict.fromkeys(t.strftime(template) for t in _instants(start, end, step)))


def _instants(start: datetime, end: datetime, step: timedelta | None) -> Iterator[datetime]:
    """One instant inside every partition between start and end (months/years by calendar)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if step is None:  # monthly or yearly layout: one instant per month is enough
        current = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        while current < end:
            yield max(current, start)
            current = (current + timedelta(days=32)).replace(day=1)
        return
    current = _floor(start, step)
    while current < end:
        yield current
        current += step


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step


def _is_data_file(path: str, root: str = "") -> bool:
    """Data files only: not `_SUCCESS`, `.tmp` files being written, directories' markers, nor
    files in hidden folders under `root` (Spark's `_temporary/`, `.ipynb_checkpoints/`)."""
    if path.endswith("/"):
        return False
    inside = path[len(root) :] if root and path.startswith(root + "/") else path.rsplit("/", 1)[-1]
    return not any(part[:1] in ("_", ".") for part in inside.split("/"))
