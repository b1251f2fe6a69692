"""The KServe sink's storage: logger events written durably, and read back as paired sample rows.

KServe's payload logger sends one CloudEvent for each inference request and one for its response,
with the same ce-id (`daemon/sink.py` receives them). `event_records` turns an event's v1 body
(`instances` / `predictions`) or v2 body (open inference protocol `inputs` / `outputs`) into one
record per instance row; `SinkStore` appends the records as JSON lines to hourly partitions
(`dt=%Y-%m-%d/hour=%H/<writer>.jsonl`) and fsyncs them before the event is acknowledged;
`KServeReader` lists a window's partitions with the files machinery and joins each request row
with its response row (ce-id and row index) into one sample row, timestamped by the request.

Column names: named values (v1 dict instances, v2 tensors of one value per row) are matched to the
requested columns by name. Positional values (v1 lists, v2 2-D tensors, or named values none of
whose names was requested) are named by `output_names` / `input_names`; by default the outputs
fill the last requested columns (a target asks for its features, then its predictions) and the
inputs the columns left, in order.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import shutil
import socket
import threading
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from cloudevents.core.base import BaseCloudEvent

from mlwatchdog.core import DataStatus
from mlwatchdog.errors import InputError
from mlwatchdog.rules import FilesSource, KServeSource, Sink
from mlwatchdog.sources.base import Filters, SourceRead
from mlwatchdog.sources.files import FilesReader, apply_filters, to_utc

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
PARTITIONING = "dt=%Y-%m-%d/hour=%H"
PARTITION_SPAN = timedelta(hours=1)

_KINDS = {REQUEST: "request", RESPONSE: "response"}
_V1 = {"request": "instances", "response": "predictions"}
_V2 = {"request": "inputs", "response": "outputs"}
# Record field <- the CloudEvent extension KServe sets (pkg/logger/worker.go).
_EXTENSIONS = {
    "inference_service": "inferenceservicename",
    "namespace": "namespace",
    "component": "component",
    "endpoint": "endpoint",
}
_PAIR_KEY = ["inference_service", "namespace", "component", "id", "row"]
_TEXT_FIELDS = ["inference_service", "namespace", "component", "id", "endpoint"]
_VALUE = "value:"  # prefix of the value columns while pairing: a feature may be called "id"
# Fixed width, and first in every line: a reader skips lines outside its span by comparing bytes.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TIME_PREFIX = b'{"time":"'
_TIME_END = len(_TIME_PREFIX) + len("2000-01-01T00:00:00.000000Z")
_MAX_BATCH = 4096  # appends per commit: bounds the latency of the first one
_OPEN_FILES = 4  # partitions kept open (late events may still reach the previous hour)

Values = list[Any] | dict[str, Any]
Layout = tuple[str, ...] | int  # a dict row's keys, or a list row's width


class InvalidEvent(ValueError):
    """An event the sink cannot store; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class SinkClosed(RuntimeError):
    """The store is closed (the daemon is stopping): nothing more is written."""


def utc_now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------ events -> records


def event_records(event: BaseCloudEvent, received: datetime) -> list[dict[str, Any]]:
    """One record per instance row of a KServe logger event; raises InvalidEvent."""
    kind = _KINDS.get(event.get_type())
    if kind is None:
        raise InvalidEvent(
            f"unknown ce-type {event.get_type()!r}; the sink takes {REQUEST} and {RESPONSE}"
        )
    rows = _payload_rows(_json_body(event.get_data()), kind)
    head = {"time": _stamp(event.get_time() or received), "kind": kind, "id": event.get_id()}
    meta = {field: str(event.get_extension(name) or "") for field, name in _EXTENSIONS.items()}
    return [{**head, "row": i, **meta, "values": values} for i, values in enumerate(rows)]


def _stamp(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not 1000 <= moment.year <= 9999:  # keeps the stamp's width fixed
        raise InvalidEvent(f"ce-time {moment.isoformat()} is out of range")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _json_body(data: Any) -> dict[str, Any]:
    # The SDK parses JSON only under a JSON Content-Type; KServe copies the client's, which curl
    # sets to application/x-www-form-urlencoded, so any text is tried as JSON.
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise InvalidEvent(f"the body is not JSON: {exc}", 400) from None
    if data is None:
        raise InvalidEvent("the event has no body", 400)
    if not isinstance(data, dict):
        raise InvalidEvent(
            f"the body is a JSON {type(data).__name__}, not an object with instances or inputs"
        )
    return data


def _payload_rows(body: dict[str, Any], kind: str) -> list[Values]:
    v1, v2 = _V1[kind], _V2[kind]
    if isinstance(body.get(v1), list):
        return [item if isinstance(item, list | dict) else [item] for item in body[v1]]
    if isinstance(body.get(v2), list):
        return _v2_rows(body[v2], v2)
    raise InvalidEvent(
        f"a {kind} body needs a list `{v1}` (v1) or `{v2}` (v2, open inference protocol); "
        f"it has {sorted(body)[:10]}"
    )


def _v2_rows(tensors: list[Any], field: str) -> list[Values]:
    """Rows of v2 tensors: by tensor name when each holds one value per row, else positional."""
    if not tensors:
        raise InvalidEvent(f"`{field}` has no tensors")
    columns: list[tuple[str, int, list[Any]]] = []
    batch: int | None = None
    for i, tensor in enumerate(tensors):
        name, shape, data = _tensor(tensor, f"{field}[{i}]")
        rows, width = (shape[0] if shape else 1), math.prod(shape[1:])
        if len(data) != rows * width:
            raise InvalidEvent(
                f"{field}[{i}] ({name!r}): shape {shape} holds {rows * width} values, "
                f"but its data has {len(data)}"
            )
        if batch is not None and rows != batch:
            raise InvalidEvent(
                f"{field}[{i}] ({name!r}) has {rows} rows but {field}[0] has {batch}: "
                "tensors share the batch dimension"
            )
        batch = rows
        columns.append((name, width, data))
    names = [name for name, _, _ in columns]
    if all(width == 1 for _, width, _ in columns) and len(set(names)) == len(names):
        by_row = zip(*(data for _, _, data in columns), strict=True)
        return [dict(zip(names, values, strict=True)) for values in by_row]
    return [
        [v for _, w, data in columns for v in data[r * w : (r + 1) * w]] for r in range(batch or 0)
    ]


def _tensor(tensor: Any, where: str) -> tuple[str, list[int], list[Any]]:
    if not isinstance(tensor, dict):
        raise InvalidEvent(f"{where} is not a tensor (an object with name, shape and data)")
    name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
    if not isinstance(name, str):
        raise InvalidEvent(f"{where} has no `name`")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise InvalidEvent(f"{where} ({name!r}): `shape` must list non-negative integers")
    if not isinstance(data, list):
        raise InvalidEvent(f"{where} ({name!r}): `data` must be a list")
    return name, shape, _flatten(data)


def _flatten(data: list[Any]) -> list[Any]:
    """Row-major values of `data`, which the protocol allows flat or nested."""
    if not any(isinstance(v, list) for v in data):
        return data
    return [x for v in data for x in (_flatten(v) if isinstance(v, list) else [v])]


# ---------------------------------------------------------------------------------------- store


@dataclass(eq=False)
class _Append:
    chunks: dict[str, bytes]  # partition -> JSON lines
    done: Future[None]


class SinkStore:
    """Appends records to hourly JSON-lines partitions, durably, and deletes expired partitions.

    A writer thread does group commit: it takes every append queued while the previous fsync
    ran, writes them in one go per file and fsyncs once, then completes their futures; so many
    concurrent events cost one fsync. Each process writes its own file per partition, so a line
    torn by a crash is always the last of its file.
    """

    def __init__(self, settings: Sink) -> None:
        self.settings = settings
        self.root = Path(settings.path)
        self.commits = 0  # fsync rounds so far (appends / commits is the group-commit gain)
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._state = threading.Lock()  # guards starting and closing
        self._disk = threading.Lock()  # a commit and a prune never overlap
        self._files: OrderedDict[str, BinaryIO] = OrderedDict()
        self._writer_id = _writer_id()
        self._thread: threading.Thread | None = None
        self._closed = False

    def append(self, event: BaseCloudEvent) -> None:
        """Store one logger event; returns once its records are on disk."""
        self.write(event_records(event, utc_now())).result()

    def write(self, records: Sequence[dict[str, Any]]) -> Future[None]:
        """Queue records for the next commit; the future completes once they are on disk."""
        done: Future[None] = Future()
        done.set_running_or_notify_cancel()  # not cancellable: the writer always completes it
        chunks: dict[str, list[bytes]] = defaultdict(list)
        for record in records:
            line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
            chunks[_partition(record["time"])].append(line)
        if not chunks:
            done.set_result(None)
            return done
        with self._state:
            if self._closed:
                raise SinkClosed("the sink is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sink-writer", daemon=True)
                self._thread.start()
            self._queue.put(_Append({p: b"".join(lines) for p, lines in chunks.items()}, done))
        return done

    def close(self) -> None:
        """Commit what is queued and stop the writer; later writes raise SinkClosed."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)  # after every append: nothing is queued once closed
        if thread is not None:
            thread.join()

    def prune(self, now: datetime | None = None) -> list[str]:
        """Delete the partitions that ended `retention` ago or earlier; returns them."""
        cutoff = (now or utc_now()) - self.settings.retention
        removed: list[str] = []
        with self._disk:
            for directory in sorted(self.root.glob("dt=*/hour=*")):
                partition = directory.relative_to(self.root).as_posix()
                try:
                    begins = datetime.strptime(partition, PARTITIONING).replace(tzinfo=UTC)
                except ValueError:
                    continue  # not a partition of this store
                if begins + PARTITION_SPAN > cutoff:
                    continue
                handle = self._files.pop(partition, None)
                if handle is not None:
                    handle.close()
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(partition)
            for day in self.root.glob("dt=*"):
                if day.is_dir() and not any(day.iterdir()):
                    day.rmdir()
        return removed

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]  # blocks until there is work
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            appends = [a for a in batch if a is not None]
            if appends:
                self._commit(appends)
        with self._disk:
            self._close_files()

    def _commit(self, appends: list[_Append]) -> None:
        chunks: dict[str, list[bytes]] = defaultdict(list)
        for append in appends:
            for partition, data in append.chunks.items():
                chunks[partition].append(data)
        try:
            with self._disk:
                new_dirs: set[Path] = set()
                handles = []
                for partition, lines in chunks.items():
                    handle = self._file(partition, new_dirs)
                    handle.write(b"".join(lines))
                    handle.flush()
                    handles.append(handle)
                for handle in handles:
                    os.fsync(handle.fileno())
                for directory in new_dirs:  # a new file's entry must survive a crash too
                    _fsync_dir(directory)
                while len(self._files) > _OPEN_FILES:
                    self._files.popitem(last=False)[1].close()
                self.commits += 1
        except Exception as exc:  # a disk error (or a bug) must fail the waiting events, not hang
            # After a failed write or fsync the file's tail is unknown: continue in new files.
            self._close_files()
            self._writer_id = _writer_id()
            for append in appends:
                append.done.set_exception(exc)
            return
        for append in appends:
            append.done.set_result(None)

    def _file(self, partition: str, new_dirs: set[Path]) -> BinaryIO:
        handle = self._files.get(partition)
        if handle is not None:
            self._files.move_to_end(partition)
            return handle
        directory = self.root / partition
        path = directory / f"{self._writer_id}.jsonl"
        if not path.exists():
            depth = len(Path(partition).parts)
            new_dirs.update([directory, *directory.parents[: depth + 1]])
        directory.mkdir(parents=True, exist_ok=True)
        handle = path.open("ab")
        self._files[partition] = handle
        return handle

    def _close_files(self) -> None:
        while self._files:
            with contextlib.suppress(OSError):
                self._files.popitem()[1].close()


def _partition(stamp: str) -> str:
    return datetime.strptime(stamp, _TIME_FORMAT).strftime(PARTITIONING)


def _writer_id() -> str:
    # Unique per process and restart: a crashed writer's torn last line stays at its file's end.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- reader


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
            ),
        )

    def signature(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> tuple[Any, ...]:
        """The files of [start, end) with the partners' margin; and `now` until halves settle."""
        now = self.clock()
        settled = end is not None and end + self.sink.pair_timeout <= now
        return (self.files.signature(*self._span(start, end)), None if settled else now)

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
        try:
            paths = self.files.files(*self._span(start, end))
        except (OSError, ValueError) as exc:
            return SourceRead(
                None, DataStatus.ERROR, f"cannot list the sink {self.sink.path}: {exc}"
            )
        if not paths:
            return SourceRead(None, DataStatus.NO_DATA, f"no events in {self.sink.path}{where}")
        try:
            records, torn = self._load(paths, *self._span(start, end))
            rows, counts = self._pair(records, list(columns), start, end)
            rows = _with_filters(rows, list(columns), filters or {}, self.name)
        except (OSError, InputError) as exc:
            return SourceRead(None, DataStatus.ERROR, f"source {self.name!r}: {exc}", tuple(paths))
        note = "".join(
            f", {n} {what}"
            for n, what in [(counts["waiting"], "waiting for their partner"), (torn, "torn lines")]
            if n
        )
        if rows.empty:
            reason = f"no rows{where} in {len(paths)} file(s){note}"
            return SourceRead(None, DataStatus.NO_DATA, reason, tuple(paths))
        reason = f"{len(rows)} rows ({counts['paired']} paired, {counts['alone']} alone{note})"
        return SourceRead(rows, DataStatus.OK, reason, tuple(paths))

    def _span(
        self, start: datetime | None, end: datetime | None
    ) -> tuple[datetime | None, datetime | None]:
        # A window's rows may have their partner up to pair_timeout outside it.
        if start is None or end is None:
            return None, None
        return start - self.sink.pair_timeout, end + self.sink.pair_timeout

    def _load(
        self, paths: Iterable[str], low: datetime | None, high: datetime | None
    ) -> tuple[list[dict[str, Any]], int]:
        """This source's records with a time in [low, high), and how many lines were unreadable."""
        bounds = (_stamp(low).encode(), _stamp(high).encode()) if low and high else None
        records: list[dict[str, Any]] = []
        torn = 0
        for path in paths:
            with self.files.fs.open(path, "rb") as handle:
                for line in handle:
                    if bounds and line.startswith(_TIME_PREFIX):
                        stamp = line[len(_TIME_PREFIX) : _TIME_END]
                        if not bounds[0] <= stamp < bounds[1]:
                            continue
                    try:
                        record = json.loads(line)
                    except ValueError:  # torn by a crash, or still being written
                        torn += 1
                        continue
                    if _is_record(record) and self._selected(record):
                        records.append(record)
        return records, torn

    def _selected(self, record: dict[str, Any]) -> bool:
        spec = self.spec
        return all(
            wanted is None or record.get(field) == wanted
            for field, wanted in [
                ("inference_service", spec.inference_service),
                ("namespace", spec.namespace),
                ("component", spec.component),
            ]
        )

    def _pair(
        self,
        records: list[dict[str, Any]],
        columns: list[str],
        start: datetime | None,
        end: datetime | None,
    ) -> tuple[pd.DataFrame, dict[str, int]]:
        requests = [r for r in records if r["kind"] == "request"]
        responses = [r for r in records if r["kind"] == "response"]
        out_maps = _column_maps(responses, columns, columns, self.spec.output_names)
        filled = {c for mapping in out_maps.values() for c in mapping}
        left = [c for c in columns if c not in filled]  # what the responses did not fill
        in_maps = _column_maps(requests, columns, left, self.spec.input_names)
        both = sorted(filled & {c for mapping in in_maps.values() for c in mapping})
        if both:
            raise InputError(
                f"column(s) {both} come from both requests and responses; "
                "name the positional values with input_names / output_names"
            )
        merged = pd.merge(
            _side(requests, in_maps),
            _side(responses, out_maps),
            on=_PAIR_KEY,
            how="outer",
            suffixes=("", "_response"),
            indicator=True,
        )
        paired = merged["_merge"] == "both"
        time = merged["time"].fillna(merged["time_response"])  # the request's, when there is one
        waiting = ~paired & (time > self.clock() - self.sink.pair_timeout)
        keep = ~waiting
        if start is not None and end is not None:
            inside = (time >= start) & (time < end)
            keep &= inside
            waiting &= inside
        rows = pd.DataFrame(
            {c: _typed(merged[_VALUE + c]) if _VALUE + c in merged else np.nan for c in columns},
            index=merged.index,
        )
        rows["timestamp"] = time
        meta = {
            "endpoint": merged["endpoint"].fillna(merged["endpoint_response"]),
            **{field: merged[field] for field in ("inference_service", "namespace", "component")},
        }
        for field, values in meta.items():
            if field not in rows:  # a requested column of that name wins
                rows[field] = values
        counts = {
            "paired": int((paired & keep).sum()),
            "alone": int((~paired & keep).sum()),
            "waiting": int(waiting.sum()),
        }
        return rows[keep.to_numpy()].reset_index(drop=True), counts


def _is_record(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and record.get("kind") in ("request", "response")
        and isinstance(record.get("values"), list | dict)
        and isinstance(record.get("time"), str)
        and isinstance(record.get("id"), str)
        and type(record.get("row")) is int
    )


def _layout(values: Values) -> Layout:
    return tuple(values) if isinstance(values, dict) else len(values)


def _by_name(layout: Layout, wanted: Sequence[str]) -> dict[str, str] | None:
    """Column -> key of a dict row, when any of its keys is a requested column."""
    if isinstance(layout, tuple):
        found = {key: key for key in layout if key in wanted}
        return found or None
    return None


def _by_position(layout: Layout, names: Sequence[str], wanted: Sequence[str]) -> dict[str, Any]:
    """Column -> key (dict) or index (list) of a row whose values are named by position."""
    keys: Sequence[Any] = layout if isinstance(layout, tuple) else range(layout)
    return {name: key for name, key in zip(names, keys, strict=False) if name in wanted}


def _column_maps(
    records: list[dict[str, Any]], columns: list[str], pool: list[str], names: list[str] | None
) -> dict[Layout, dict[str, Any]]:
    """For each row layout of one side: column -> the key (dict) or index (list) of its value.

    Positional values take `names`, else: responses the last columns of `pool` (the requested
    columns), requests the first ones (the columns the responses left).
    """
    maps: dict[Layout, dict[str, Any]] = {}
    for layout in {_layout(r["values"]) for r in records}:
        named = _by_name(layout, columns)
        if named is None:
            width = len(layout) if isinstance(layout, tuple) else layout
            kind = records[0]["kind"]
            if names is None and width > len(pool):
                option = "input_names" if kind == "request" else "output_names (or [] to skip them)"
                raise InputError(
                    f"{kind}s have {width} positional values but {len(pool)} requested "
                    f"column(s) are left for them {pool}; name them with {option}"
                )
            default = pool[:width] if kind == "request" else pool[len(pool) - width :]
            named = _by_position(layout, default if names is None else names, columns)
        maps[layout] = named
    return maps


def _side(records: list[dict[str, Any]], maps: dict[Layout, dict[str, Any]]) -> pd.DataFrame:
    """One side's rows: pairing key, time, endpoint and its named values; first copy wins."""
    meta = pd.DataFrame(
        {
            **{f: pd.Series([r.get(f, "") for r in records], dtype=object) for f in _TEXT_FIELDS},
            "row": pd.Series([r["row"] for r in records], dtype=np.int64),
            "time": to_utc(pd.Series([r["time"] for r in records], dtype=object), "sink", "time"),
        }
    )
    groups: dict[Layout, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[_layout(record["values"])].append(i)
    blocks = []
    for layout, rows in groups.items():
        mapping = maps[layout]
        if not mapping:
            continue
        pick = itemgetter(*mapping.values())
        values = [pick(records[i]["values"]) for i in rows]
        data = values if len(mapping) > 1 else [(v,) for v in values]
        names = [_VALUE + c for c in mapping]  # apart from the key and time columns
        blocks.append(pd.DataFrame(data, columns=names, index=rows))
    if blocks:
        meta = meta.join(pd.concat(blocks))
    return meta.drop_duplicates(_PAIR_KEY)  # a re-sent event


def _typed(values: pd.Series) -> pd.Series:
    """Numbers as float64 (with missing ones as NaN); anything else as it came."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("integer", "floating", "mixed-integer-float", "empty"):
        return values.astype(np.float64)
    return values


def _with_filters(
    rows: pd.DataFrame, columns: list[str], filters: Filters, source: str
) -> pd.DataFrame:
    """The rows passing `filters` (on requested columns or the event's endpoint, service, ...),
    as `columns`, the timestamp and the filtered columns."""
    unknown = [c for c in filters if c not in rows.columns]
    if unknown:
        raise InputError(
            f"filter column(s) {unknown} are neither requested columns nor one of "
            f"{[*_EXTENSIONS]} of kserve source {source!r}"
        )
    rows = apply_filters(rows, filters)
    wanted = list(dict.fromkeys([*columns, "timestamp", *filters]))
    return rows[wanted].reset_index(drop=True)
