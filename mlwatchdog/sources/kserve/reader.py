"""`KServeReader`: one `type: kserve` source, read from the sink's partitions as paired sample
rows; the Observer calls it every evaluation.

Reading costs what is new: per partition file the reader keeps the byte offset it has parsed up
to and the events parsed so far, and parses only the bytes appended since (complete lines only:
a line still being written is read next time). It reads every writer's files (replicas sharing
the store each write their own), from a folder or an object store through fsspec; an object
store's segments never change, so each is parsed once. It keeps each event's rows as column arrays
(`columnar.py`, made as the lines are parsed: `linebatch.py`), not as the parsed JSON: no Python
object per row for the garbage collector to walk, and a ninth of the memory for batches of rows.
Files that left its span are dropped. A line that is not an event (torn by a crash, corrupt,
another format) is set aside and counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from mlwatchdog.core import DataStatus
from mlwatchdog.errors import InputError
from mlwatchdog.rules import FilesSource, KServeSource, Sink
from mlwatchdog.sources.base import Filters, SetAside, SourceRead
from mlwatchdog.sources.files import FilesReader
from mlwatchdog.sources.kserve.columnar import EventColumns
from mlwatchdog.sources.kserve.events import selects
from mlwatchdog.sources.kserve.linebatch import LineBatch
from mlwatchdog.sources.kserve.lines import (
    PARTITIONING,
    TIME_END,
    TIME_PREFIX,
    Event,
    stamp,
    utc_now,
)
from mlwatchdog.sources.kserve.pairing import pair, span_of, with_filters

_BLOCK = 8 * 2**20  # bytes read at a time: a file's new part is not read into memory at once


@dataclass
class _Parsed:
    """What the reader has parsed of one partition file."""

    identity: Any  # inode or ETag: a new file under the same name is read anew
    floor: bytes | None  # lines stamped before this were skipped unparsed (None: none were)
    offset: int = 0  # bytes parsed: up to the end of the last complete line
    events: list[EventColumns] = field(default_factory=list)  # this source's, in file order
    corrupt: int = 0  # complete lines that are not events
    torn: bool = False  # the file ends in part of a line (being written, or torn by a crash)


class KServeReader:
    """Reads one `type: kserve` source: the sink's events of [start, end), paired into rows.

    A request row and its response row make one sample row. A half whose partner has not come is
    left out while younger than `pair_timeout` (it may still come), then used alone: a request
    without response gives NaN predictions, which the detectors drop per column.
    """

    def __init__(
        self, name: str, spec: KServeSource, sink: Sink, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.name = name
        self.spec = spec
        self.sink = sink
        self.clock = clock
        self.files = FilesReader(
            name,
            FilesSource(
                type="files",
                url=sink.path,
                format="jsonl",
                timestamp_column="time",
                partitioning=PARTITIONING,
                late_files=timedelta(0),  # the store files each event under its own time
                storage_options=sink.storage_options,
            ),
        )
        # A folder (local or a shared volume) is read in place; an object store by whole objects.
        self._local = isinstance(self.files.fs, LocalFileSystem)
        self.parsed_lines = 0  # lines parsed so far (a read parses only what was appended)
        self.parsed_bytes = 0
        self._parsed: dict[str, _Parsed] = {}
        self._lock = threading.Lock()  # targets sharing this source read it concurrently

    @property
    def held(self) -> list[str]:
        """The files whose parsed events the reader keeps for its next read."""
        with self._lock:
            return sorted(self._parsed)

    def signature(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> tuple[Any, ...]:
        """The files of [start, end) with the partners' margin; and `now` until halves settle."""
        now = self.clock()
        settled = end is not None and end + self.sink.pair_timeout <= now
        span = span_of(start, end, self.sink.pair_timeout)
        self.files.fs.invalidate_cache()  # other processes write: list what is there now
        return (self.files.signature(*span), None if settled else now)

    def read(
        self,
        columns: Sequence[str],
        start: datetime | None = None,
        end: datetime | None = None,
        filters: Filters | None = None,
    ) -> SourceRead:
        """Rows of [start, end) (every row without a window): `columns`, then the timestamp."""
        windowed = start is not None and end is not None
        where = f" for [{start:%Y-%m-%d %H:%M:%S}, {end:%Y-%m-%d %H:%M:%S})" if windowed else ""
        low, high = span_of(start, end, self.sink.pair_timeout)
        try:
            self.files.fs.invalidate_cache()  # other processes write: list what is there now
            listing = self.files.listing(low, high)
            paths = sorted(listing)
        except (OSError, ValueError) as exc:
            return SourceRead(
                None, DataStatus.ERROR, f"cannot list the sink {self.sink.path}: {exc}"
            )
        if not paths:
            with self._lock:
                self._parsed.clear()  # every file left the span
            return SourceRead(None, DataStatus.NO_DATA, f"no events in {self.sink.path}{where}")
        try:
            events, aside = self._events(listing, low, high)
        except OSError as exc:
            return SourceRead(None, DataStatus.ERROR, f"source {self.name!r}: {exc}", tuple(paths))
        settled_before = self.clock() - self.sink.pair_timeout
        rows, counts, more = pair(events, list(columns), self.spec, settled_before, start, end)
        aside += more
        try:
            # The event's endpoint stays when it names the revision (revision_column).
            revision = [self.spec.revision_column] if self.spec.revision_column else []
            rows = with_filters(rows, [*columns, *revision], filters or {}, self.name)
        except InputError as exc:  # the config's filters, not the data
            return SourceRead(None, DataStatus.ERROR, str(exc), tuple(paths), tuple(aside))
        note = f", {counts['waiting']} waiting for their partner" if counts["waiting"] else ""
        note += "".join(f", {_described(a)}" for a in aside)
        if rows.empty:
            reason = f"no rows{where} in {len(paths)} file(s){note}"
            return SourceRead(None, DataStatus.NO_DATA, reason, tuple(paths), tuple(aside))
        reason = f"{len(rows)} rows ({counts['paired']} paired, {counts['alone']} alone{note})"
        return SourceRead(rows, DataStatus.OK, reason, tuple(paths), tuple(aside))

    def _events(
        self, listing: dict[str, dict[str, Any]], low: datetime | None, high: datetime | None
    ) -> tuple[list[EventColumns], list[SetAside]]:
        """This source's events with a time in [low, high) (all without a window), and the
        lines set aside; parses only what was appended since the last read."""
        first, last = (stamp(low), stamp(high)) if low and high else ("", "~")
        paths = sorted(listing)
        floor = first.encode() if first else None
        with self._lock:
            grown = [p for p in paths if self._grown(p, listing[p], floor)]
            # An object store: the new segments in one concurrent batch of GETs (fsspec's cat),
            # not a HEAD and a GET each, one after the other.
            remote = grown and not self._local
            fetched = self.files.fs.cat(grown, on_error="return") if remote else {}
            for path in grown:
                size = int(listing[path]["size"])
                if self._local:
                    self._update(path, size)
                    continue
                data = fetched.get(path)
                if isinstance(data, FileNotFoundError) or data is None:  # pruned since listed
                    del self._parsed[path]
                elif isinstance(data, BaseException):  # the read is an error, not fewer rows
                    raise OSError(f"cannot read {path}: {data}") from data
                else:
                    self._parse_tail(self._parsed[path], data[:size])
            for gone in set(self._parsed) - set(paths):  # left the span (or was pruned)
                del self._parsed[gone]
            files = [self._parsed[p] for p in paths if p in self._parsed]
            events = [e for f in files for e in f.events if first <= e.time < last]
        aside = []
        corrupt, torn = sum(f.corrupt for f in files), sum(f.torn for f in files)
        if corrupt:
            aside.append(SetAside("row", "corrupt", corrupt, "lines that are not sink events"))
        if torn:
            aside.append(SetAside("row", "torn", torn, "last lines cut short (a crash)"))
        return events, aside

    def _grown(self, path: str, info: dict[str, Any], floor: bytes | None) -> bool:
        """Whether `path` (as listed: `info`) has bytes the reader has not parsed; a new or
        replaced file, or one whose lines this read needs were skipped, starts over."""
        identity = _identity(info)
        listed = int(info["size"])
        known = self._parsed.get(path)
        if (
            known is None
            or known.identity != identity
            or listed < known.offset
            or (known.floor is not None and (floor is None or floor < known.floor))
        ):  # new, replaced, or lines this read needs were skipped: from the start
            known = self._parsed[path] = _Parsed(identity, floor)
        if listed == known.offset:
            known.torn = False
            return False
        return True

    def _parse_tail(self, known: _Parsed, data: bytes) -> None:
        """Parse a whole file's bytes (an object store's segment) from where the last read
        stopped."""
        tail = data[known.offset :]
        complete = self._parse(known, tail)
        known.offset += complete
        known.torn = complete < len(tail)

    def _update(self, path: str, listed: int) -> None:
        """Parse what was appended to the local file `path` since the last read, up to its
        size as listed."""
        known = self._parsed[path]
        try:
            handle = open(path, "rb")  # noqa: SIM115 (the with below closes it)
        except FileNotFoundError:  # pruned since it was listed
            del self._parsed[path]
            return
        with handle:
            handle.seek(known.offset)
            rest = b""
            size = listed - known.offset  # what is there now (more: the next read)
            # Blocks of at most what is there: read(n) allocates n bytes before it reads.
            while size > 0 and (block := handle.read(min(_BLOCK, size))):
                size -= len(block)
                data = rest + block if rest else block
                complete = self._parse(known, data)
                known.offset += complete
                rest = data[complete:]
        known.torn = bool(rest)

    def _parse(self, known: _Parsed, data: bytes) -> int:
        """Parse the complete lines of `data`, one at a time; returns where the last ends."""
        floor, spec = known.floor, self.spec

        def wanted(event: Event) -> bool:
            return selects(spec, event.inference_service, event.namespace, event.component)

        batch = LineBatch(wanted)
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            line, start = data[start:end], end + 1
            if floor and line.startswith(TIME_PREFIX) and line[len(TIME_PREFIX) : TIME_END] < floor:
                continue  # before the span (a later span's is not earlier, else: reparse)
            self.parsed_lines += 1
            self.parsed_bytes += len(line) + 1
            try:
                batch.add(line)
            except ValueError:  # not an event (or row indices no event has)
                known.corrupt += 1
        known.events += batch.done()
        return start


def _identity(info: dict[str, Any]) -> Any:
    """What tells a file from another one under the same name: its inode (a folder), or its
    ETag / generation (an object store)."""
    for key in ("ino", "ETag", "etag", "generation", "md5Hash"):
        if info.get(key):
            return info[key]
    return None


def _described(aside: SetAside) -> str:
    what = aside.what if aside.count == 1 else f"{aside.what}s"
    return f"{aside.count} {what} set aside ({aside.reason}: {aside.detail})"
