"""The files source: sample windows from parquet, csv or jsonl files, local or on any fsspec URL.

A window [start, end) reads only the partitions it overlaps when the source declares its layout
(`partitioning: "dt=%Y-%m-%d/hour=%H"`), keeps the rows whose timestamp falls inside, and applies
equality filters. Failures come back as a status with the reason, never as an exception; a file
that cannot be used is set aside (named in the reason and `SourceRead.set_aside`) and the others
are read.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from mlwatchdog.core import DataStatus
from mlwatchdog.rules import FilesSource
from mlwatchdog.sources.base import Filters, SetAside, SourceRead, describe_set_aside
from mlwatchdog.sources.tables import TableError, first_line, parse_table, table_format


class FilesReader:
    """Reads one `type: files` source; one instance per source, shared by the targets using it."""

    cache_bytes = 256 * 2**20  # parsed files kept for the next windows (least recently used go)

    def __init__(self, name: str, spec: FilesSource) -> None:
        self.name = name
        self.spec = spec
        self.fs, self.root = fsspec.core.url_to_fs(spec.url.reveal(), **spec.storage_options)
        # Files already read, by (path, columns, timestamp column), least recently used first.
        self._cache: OrderedDict[tuple[Any, ...], _Parsed] = OrderedDict()
        self._cache_bytes = 0  # the sum of their sizes
        self._lock = threading.Lock()  # the scheduler's threads share this reader
        # How far back of the newest window end the windowed reads reach (UTC nanoseconds):
        # a cached file whose rows all lie further back is dropped, whatever the byte budget.
        self._newest_end = _NEVER
        self._reach = 0

    def files(self, start: datetime | None = None, end: datetime | None = None) -> list[str]:
        """The data files that can hold rows of [start, end) (all of them without a window)."""
        return sorted(self.listing(start, end))

    def listing(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, dict[str, Any]]:
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
            (path, _fingerprint(info)) for path, info in sorted(self.listing(start, end).items())
        )

    def read(
        self,
        columns: Sequence[str],
        start: datetime | None = None,
        end: datetime | None = None,
        filters: Filters | None = None,
    ) -> SourceRead:
        """Rows of [start, end) (every row without a window) with `columns`, filtered. A file
        that cannot be used (corrupt, cut short, a column missing, a copy of another) is set
        aside and named, and the other files are read; only when every file is set aside is
        the read an error."""
        ts = self.spec.timestamp_column
        windowed = start is not None and end is not None
        if windowed and ts is None:
            return SourceRead(
                None, DataStatus.ERROR, f"source {self.name!r} has no timestamp_column"
            )
        try:
            listing = self.listing(start, end)
        except (OSError, ValueError) as exc:
            return SourceRead(None, DataStatus.ERROR, f"cannot list {self.spec.url}: {exc}")
        paths = sorted(listing)
        if not paths:
            return SourceRead(None, DataStatus.NO_DATA, f"no files under {self.spec.url}" + (
                f" for [{start:%Y-%m-%d %H:%M:%S}, {end:%Y-%m-%d %H:%M:%S})" if windowed else ""
            ))  # fmt: skip
        stamp = [ts] if windowed and ts is not None else []
        wanted = list(dict.fromkeys([*columns, *(filters or {}), *stamp]))
        pieces: list[_Piece] = []
        aside: list[SetAside] = []
        first_with: dict[str | None, str] = {}  # content digest -> the first file with it
        lo = _nanoseconds_of(start) if start is not None else 0
        hi = _nanoseconds_of(end) if end is not None else 0
        usable = False  # a file was read, whether or not it has rows in the window
        for path in paths:
            parsed = self._parsed(path, listing[path], wanted, ts if windowed else None, lo, hi)
            if parsed.problem is not None:
                aside.append(parsed.problem)
                continue
            first = first_with.setdefault(parsed.digest, path)
            if first != path and parsed.rows:  # a retried upload, a file copied twice
                aside.append(SetAside("file", "duplicate", 1, f"{path}: same bytes as {first}"))
                continue
            if parsed.bad_rows:
                aside.append(SetAside("row", "bad_timestamp", parsed.bad_rows, path))
            usable = True
            if windowed and not parsed.needed(lo, hi):  # most of an hourly folder
                continue
            piece = parsed.within(lo, hi) if windowed else parsed.piece(slice(None))
            if piece.rows:
                pieces.append(piece)
        if windowed:
            self._forget_behind(lo, hi, listing)
        note = f"; {describe_set_aside(aside)}" if aside else ""
        if not usable:
            reason = f"no file under {self.spec.url} could be used{note}"
            return SourceRead(None, DataStatus.ERROR, reason, tuple(paths), tuple(aside))
        rows = apply_filters(_stacked(pieces), filters or {}) if pieces else None
        if rows is None or rows.empty:
            where = f" in [{start:%H:%M:%S}, {end:%H:%M:%S})" if windowed else ""
            reason = f"no rows{where} in {len(paths)} file(s){note}"
            return SourceRead(None, DataStatus.NO_DATA, reason, tuple(paths), tuple(aside))
        reason = f"{len(rows)} rows{note}"
        return SourceRead(rows, DataStatus.OK, reason, tuple(paths), tuple(aside))

    def _parsed(
        self,
        path: str,
        info: dict[str, Any],
        wanted: list[str],
        ts: str | None,
        lo: int = 0,
        hi: int = 0,
    ) -> _Parsed:
        """A file's `wanted` columns (timestamps as UTC), or why it was set aside; read once
        while the file is unchanged: a window that moves by one interval reuses every file but
        the newest, and one whose rows were dropped (`_forget_behind`) is read again only if
        the window [lo, hi) reaches back to it. Targets share this reader from several
        threads: the lock guards the cache, never a read from disk (two threads missing one
        file may both read it)."""
        key = (path, tuple(wanted), ts)
        fingerprint = _fingerprint(info)
        with self._lock:
            cached = self._cache.get(key)
            if (
                cached is not None
                and cached.fingerprint == fingerprint
                and not (cached.behind and cached.needed(lo, hi))
            ):
                self._cache.move_to_end(key)
                return cached
        parsed = self._parse(path, fingerprint, wanted, ts)
        if parsed.problem is not None and parsed.problem.reason == "unreadable":
            return parsed  # may pass (a network error): tried again next read
        with self._lock:
            replaced = self._cache.pop(key, None)
            if replaced is not None:
                self._cache_bytes -= replaced.size
            self._cache[key] = parsed
            self._cache_bytes += parsed.size
            while self._cache_bytes > self.cache_bytes and len(self._cache) > 1:
                _, evicted = self._cache.popitem(last=False)
                self._cache_bytes -= evicted.size
        return parsed

    def _parse(self, path: str, fingerprint: str, wanted: list[str], ts: str | None) -> _Parsed:
        """Read and parse one file (its bytes hashed on the way, for duplicates)."""
        try:
            kind = table_format(path, self.spec.format)
            with self.fs.open(path, "rb") as handle:
                content = handle.read()
        except TableError as exc:
            return _Parsed.set_aside(fingerprint, None, path, exc.reason, exc.why)
        except OSError as exc:  # vanished since the listing, no permission, a network error
            return _Parsed.set_aside(fingerprint, None, path, "unreadable", first_line(exc))
        digest = hashlib.sha256(content).hexdigest()
        try:
            frame = parse_table(content, path, wanted, kind)
            bad_rows = 0
            if ts is not None:
                frame = frame.assign(**{ts: to_utc(frame[ts], path, ts)})
                placed = frame[ts].notna()
                bad_rows = int(len(frame) - placed.sum())
                if bad_rows:  # rows that cannot be put in any window
                    frame = frame[placed]
        except TableError as exc:
            return _Parsed.set_aside(fingerprint, digest, path, exc.reason, exc.why)
        stamps = _nanoseconds(frame[ts]) if ts is not None else None
        return _Parsed.read(fingerprint, digest, frame, bad_rows, stamps)

    def _forget_behind(self, lo: int, hi: int, listing: dict[str, Any]) -> None:
        """Drop the rows of cached files that lie wholly before every window this reader is
        asked for (a sliding window's files, once it has passed them), keeping their bounds
        while a listing still names them (an hourly folder, read every minute): what the
        daemon holds grows with its windows' rows, not with how long it has run. The reach is
        the furthest any windowed read went back of the newest end seen (a labels delay
        included); a read further back than ever reads its files again, once."""
        with self._lock:
            self._newest_end = max(self._newest_end, hi)
            self._reach = max(self._reach, self._newest_end - lo)
            horizon = self._newest_end - self._reach
            for key, parsed in list(self._cache.items()):
                if parsed.behind and key[0] not in listing:
                    del self._cache[key]
                elif not parsed.behind and parsed.rows and parsed.last < horizon:
                    self._cache[key] = parsed.dropped()
                else:
                    continue
                self._cache_bytes -= parsed.size - (_BEHIND if key in self._cache else 0)


Column = np.ndarray[Any, Any] | ExtensionArray  # a column's values, as pandas holds them


@dataclass(frozen=True, eq=False)
class _Piece:
    """Some rows of one file: its column names and their values (views of what the cache
    holds), made into a frame only with the window's other pieces (`_stacked`)."""

    names: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: int

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(dict(zip(self.names, self.columns, strict=True)), copy=False)


@dataclass(frozen=True, eq=False)
class _Parsed:
    """One file version as the reader keeps it: its columns' values (numpy arrays or pandas'
    extension arrays, no DataFrame: a frame, its index and metadata cost more than a small
    file's rows), or why it was set aside; once a sliding window has passed it, only its
    bounds (`behind`), so a listing that still names it costs nothing."""

    fingerprint: str  # the listing's details of the version read
    digest: str | None  # sha256 of its bytes (None: they could not be read)
    problem: SetAside | None  # why it was set aside (no columns then)
    bad_rows: int  # rows dropped: their timestamp is missing or not a timestamp
    size: int  # bytes it holds in the cache
    names: tuple[str, ...] = ()  # its columns, in the order parsed
    columns: tuple[Column, ...] = ()  # their values (none once behind)
    # Read for a window: the timestamp column as UTC nanoseconds, its bounds, and whether it
    # is oldest first (a window is then a slice).
    stamps: np.ndarray[Any, np.dtype[np.int64]] | None = None
    first: int = 0
    last: int = 0
    ordered: bool = False
    rows: int = 0
    behind: bool = False  # its rows were dropped: a window over [first, last] reads it again

    @classmethod
    def read(
        cls,
        fingerprint: str,
        digest: str,
        frame: pd.DataFrame,
        bad_rows: int,
        stamps: np.ndarray[Any, np.dtype[np.int64]] | None,
    ) -> _Parsed:
        size = _bytes_held(frame)
        names = tuple(str(name) for name in frame.columns)
        columns = tuple(_values(frame.iloc[:, i]) for i in range(len(names)))
        if stamps is None or not stamps.size:
            return cls(fingerprint, digest, None, bad_rows, size, names, columns, stamps,
                       rows=len(frame))  # fmt: skip
        first, last = int(stamps.min()), int(stamps.max())
        ordered = bool((stamps[1:] >= stamps[:-1]).all())
        size += stamps.nbytes
        return cls(fingerprint, digest, None, bad_rows, size, names, columns, stamps,
                   first, last, ordered, len(frame))  # fmt: skip

    @classmethod
    def set_aside(
        cls, fingerprint: str, digest: str | None, path: str, reason: str, why: str
    ) -> _Parsed:
        problem = SetAside("file", reason, 1, f"{path}: {why}")
        return cls(fingerprint, digest, problem, 0, len(problem.detail) + 200)

    def dropped(self) -> _Parsed:
        """This file without its rows, for a window that has passed it."""
        return replace(self, names=(), columns=(), stamps=None, size=_BEHIND, behind=True)

    def needed(self, lo: int, hi: int) -> bool:
        """Whether a window [lo, hi) holds rows of this file (never, for one without rows)."""
        return self.rows > 0 and self.first < hi and self.last >= lo

    def piece(self, rows: slice | np.ndarray[Any, np.dtype[np.bool_]]) -> _Piece:
        """The rows selected by `rows` (a slice, or a mask over the file's rows)."""
        columns = tuple(column[rows] for column in self.columns)
        return _Piece(self.names, columns, len(columns[0]) if columns else 0)

    def within(self, lo: int, hi: int) -> _Piece:
        """The rows stamped in [lo, hi) (UTC nanoseconds). A file wholly inside or outside the
        window is decided by its bounds, a time-ordered one by two binary searches: only a
        file out of order across an edge of the window is compared row by row."""
        if not self.needed(lo, hi):
            return _Piece(self.names, (), 0)
        assert not self.behind, "a file needed by the window is read again first"
        stamps = self.stamps
        assert stamps is not None
        if self.first >= lo and self.last < hi:
            return self.piece(slice(None))
        if self.ordered:
            i, j = np.searchsorted(stamps, [lo, hi], side="left").tolist()
            return self.piece(slice(i, j))
        return self.piece((stamps >= lo) & (stamps < hi))


_BEHIND = 500  # bytes a file passed by the window holds in the cache (its name, its bounds)


def _fingerprint(info: dict[str, Any]) -> str:
    # All of the details: the modification time is `mtime`, `LastModified`, `last_modified`,
    # `updated` or `created` depending on the filesystem, or only an ETag.
    return repr(sorted(info.items()))


_NEVER = -(2**63)


def _bytes_held(frame: pd.DataFrame) -> int:
    """About what `frame` holds in memory, as `memory_usage(deep=True)` counts it, without
    making a Series of every column (a tenth of a file's parsing): only text and extension
    columns are measured one by one."""
    total = 8 * len(frame)  # the index
    for i, dtype in enumerate(frame.dtypes.tolist()):
        if isinstance(dtype, np.dtype) and dtype.kind != "O":
            total += dtype.itemsize * len(frame)
        else:
            total += int(frame.iloc[:, i].memory_usage(index=False, deep=True))
    return total


def _nanoseconds(stamps: pd.Series) -> np.ndarray[Any, np.dtype[np.int64]]:
    """A UTC timestamp column (no NaT: `_parse` dropped those rows) as int64 nanoseconds: a
    view of the column's own values when they are nanoseconds already (kept once, not twice)."""
    values = stamps.array
    assert isinstance(values, pd.arrays.DatetimeArray)
    if values.unit != "ns":
        values = values.as_unit("ns")
    return np.asarray(values.view("i8"), dtype=np.int64)


def _nanoseconds_of(moment: datetime) -> int:
    """An instant as UTC nanoseconds (a naive one taken as UTC, as `to_utc` takes values)."""
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return int(stamp.as_unit("ns").value)


def _values(column: pd.Series) -> Column:
    """A column's values as pandas holds them: a numpy array, or an extension array (text,
    timestamps with a time zone, nullable and categorical types), without the Series."""
    return column.to_numpy() if isinstance(column.dtype, np.dtype) else column.array


def _stacked(pieces: list[_Piece]) -> pd.DataFrame:
    """The files' rows of the window, one after the other, in a fresh frame: what pd.concat
    of the files' frames gives. When the pieces have the same columns of the same types, numpy
    or timestamps with a time zone (the usual case), each column is joined on its own (no frame
    per file); otherwise pandas' concat of the files' frames decides the types (an integer
    column that is float in another file)."""
    names = pieces[0].names
    if all(p.names == names for p in pieces):
        columns: list[Column] = []
        for i, first in enumerate(pieces[0].columns):
            parts = [p.columns[i] for p in pieces]
            if any(part.dtype != first.dtype for part in parts):
                break
            if isinstance(first, np.ndarray):
                columns.append(np.concatenate(parts))  # type: ignore[arg-type]
            elif isinstance(first.dtype, pd.DatetimeTZDtype):
                columns.append(pd.concat([pd.Series(part, copy=False) for part in parts]).array)
            else:  # text, nullable, categorical: pandas' rules
                break
        else:
            return pd.DataFrame(dict(zip(names, columns, strict=True)), copy=False)
    return pd.concat([p.frame() for p in pieces], ignore_index=True)


def to_utc(values: pd.Series, path: str, column: str) -> pd.Series:
    """Timestamps as tz-aware UTC; naive ones are taken as UTC, numbers as Unix seconds. A value
    that is not a timestamp becomes NaT (its row cannot be placed in a window); a column where
    no value is one raises TableError (reason bad_timestamp)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):  # parquet's own: no parsing to do
        stamps: pd.Series = values.dt.tz_convert(UTC)
    elif isinstance(values.dtype, np.dtype) and values.dtype.kind == "M":
        stamps = values.dt.tz_localize(UTC)
    elif pd.api.types.is_bool_dtype(values):
        stamps = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    elif pd.api.types.is_numeric_dtype(values):
        # Beyond pandas' years 1677-2262 is no timestamp (and would raise, not give NaT).
        seconds = values.where(values.abs() < _LIMIT_SECONDS)
        stamps = pd.to_datetime(seconds, unit="s", utc=True)
    else:
        stamps = _parsed_stamps(values)
    if stamps.isna().all() and values.notna().any():
        shown = values[values.notna()].iloc[0]
        why = f"column {column!r} is not a timestamp (e.g. {str(shown)[:40]!r})"
        raise TableError(path, "bad_timestamp", why)
    return stamps


_LIMIT_SECONDS = 9.2e9  # pd.Timestamp.max is 9.22e9 s after 1970


def _parsed_stamps(values: pd.Series) -> pd.Series:
    try:
        return pd.to_datetime(values, utc=True)
    except (ValueError, TypeError, OverflowError):
        pass
    try:
        # pandas infers one format from the first value, but Python's isoformat() leaves out
        # the fraction when it is 0: parse each value on its own (slower, only then).
        return pd.to_datetime(values, utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError):
        # Some value is no timestamp at all: it alone becomes NaT.
        return pd.to_datetime(values, utc=True, format="mixed", errors="coerce")


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
