"""The sink's line format: one JSON line per logger event, written by `SinkStore`, read back by
`KServeReader`.

A line is `{"time": <fixed-width UTC stamp>, "kind", "id", "inference_service", "namespace",
"component", "endpoint", ["names",] "rows"}`, the time first so a reader skips lines outside its
span by comparing bytes. `rows` holds the event's instance rows: lists of values (named by
`names` for v2 tensors of one value per row), or objects (v1 named instances). Lines of the
previous format (one line per row: `"row": i, "values": ...`) are read as one-row events.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PARTITIONING = "dt=%Y-%m-%d/hour=%H"
PARTITION_SPAN = timedelta(hours=1)
KINDS = ("request", "response")
# Fixed width, and first in every line: a reader skips lines outside its span by comparing bytes.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
TIME_PREFIX = b'{"time":"'
TIME_END = len(TIME_PREFIX) + len("2000-01-01T00:00:00.000000Z")
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
META = ("inference_service", "namespace", "component", "endpoint")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One logger event as stored: its time, kind, ce-id, where it came from, and its rows."""

    time: str  # stamp(): UTC, fixed width, so stamps compare as times
    kind: str  # request or response
    id: str
    inference_service: str
    namespace: str
    component: str
    endpoint: str
    rows: list[Any]  # each a list of values, or a dict of them (v1 named instances)
    names: tuple[str, ...] | None = None  # the rows are lists of these (v2 named tensors)
    first_row: int = 0  # the index of rows[0] in its event (an old-format line holds one row)


def stamp(moment: datetime) -> str:
    """`moment` as a line's fixed-width UTC time; ValueError outside years 1000-9999."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not 1000 <= moment.year <= 9999:  # keeps the stamp's width fixed
        raise ValueError(f"{moment.isoformat()} is out of range")
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def partition(time: str) -> str:
    """The hourly partition folder (PARTITIONING) of a stamp, cut from its fixed-width text
    (strptime and strftime cost tens of µs an event)."""
    return f"dt={time[:10]}/hour={time[11:13]}"


def encode(event: Event) -> bytes:
    """The event's line (ending in a newline). Raises RecursionError for absurdly deep values."""
    record: dict[str, Any] = {"time": event.time, "kind": event.kind, "id": event.id}
    record.update((field, getattr(event, field)) for field in META)
    if event.names is not None:
        record["names"] = event.names
    record["rows"] = event.rows
    # ASCII only: the time stays at its fixed byte offsets whatever the other fields hold.
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Event:
    """The event of one line (this format or the previous one); ValueError if it is not one."""
    try:
        record = json.loads(line)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if not isinstance(record, dict):
        raise ValueError("not an object")
    time, kind, ce_id = record.get("time"), record.get("kind"), record.get("id")
    if not (isinstance(time, str) and _STAMP.fullmatch(time)):
        raise ValueError("no valid time")
    if kind not in KINDS or not isinstance(ce_id, str):
        raise ValueError("no kind or id")
    meta = {field: record.get(field, "") for field in META}
    if not all(isinstance(value, str) for value in meta.values()):
        raise ValueError("metadata that is not text")
    first: Any = 0
    if "rows" in record:
        rows = record["rows"]
    else:  # the previous format: one line per row
        rows, first = [record.get("values")], record.get("row")
        if type(first) is not int or first < 0:
            raise ValueError("no row index")
    names = record.get("names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("names that are not text")
        names = tuple(names)
    if not isinstance(rows, list) or not all(_fits(row, names) for row in rows):
        raise ValueError("rows that are not lists or objects")
    return Event(
        time,
        kind,
        ce_id,
        meta["inference_service"],
        meta["namespace"],
        meta["component"],
        meta["endpoint"],
        rows,
        names,
        first,
    )


def _fits(row: Any, names: tuple[str, ...] | None) -> bool:
    if names is not None:
        return isinstance(row, list) and len(row) == len(names)
    return isinstance(row, list | dict)
