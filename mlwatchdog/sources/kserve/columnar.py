"""Events as column arrays, made once when `KServeReader` parses their lines (`linebatch.py`;
its cache keeps these, not the parsed JSON); `pairing.pair` reads them.

Events converted together put their rows of one kind and layout (a v2 event's names, a v1 dict
row's keys in order, a v1 list row's width) into one `Table`, and each event's rows of that
layout are a `Block`: a slice of it, so a one-row event costs no arrays of its own. In a table,
a position whose values are all numbers or null is a float64 column, with a mask of the values
sent as JSON integers (so a column that also holds text shows them as sent); any other position
(text, booleans, lists, integers beyond 2**53, NaN literals) keeps its values as they came in an
object column, repeated strings stored once. Nothing here depends on the columns a target asks
for: the same arrays serve every target reading the source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from mlwatchdog.sources.kserve.lines import TIME_FORMAT, Event

Layout = tuple[str, ...] | int  # a named row's names, or a positional row's width
NO_TIME = int(np.iinfo(np.int64).min)  # `EventColumns.nanoseconds` of a time pandas cannot hold
_EXACT = 2.0**53  # integers below this are floats exactly, and back
_MAX_ROW = 2**62  # row indices are int64 while pairing
_NUMBERS = {int, float, type(None)}


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of one layout, by position in the layout."""

    numbers: NDArray[np.float64]  # (rows, width): NaN for null and at `kept` positions
    whole: NDArray[np.bool_] | None  # (rows, width): sent as a JSON integer (None: none was)
    objects: NDArray[np.object_]  # (rows, len(kept)): the values at `kept`, as they came
    kept: tuple[int, ...]  # positions that are not all numbers
    booleans: frozenset[int]  # kept positions whose values are all booleans

    def column(self, position: int) -> NDArray[Any]:
        """The values at `position`: float64, or object where they are not all numbers."""
        if position in self.kept:
            return self.objects[:, self.kept.index(position)]
        return self.numbers[:, position]


@dataclass(slots=True)  # not frozen: a frozen one takes five times as long to make
class Block:
    """An event's rows of one layout: rows [start, stop) of a table."""

    layout: Layout
    rows: NDArray[np.int64] | None  # their positions in the event (None: all, in order)
    table: Table
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def all_booleans(self, position: int) -> bool:
        table = self.table
        if position in table.booleans or position not in table.kept:
            return position in table.booleans
        values = table.objects[self.start : self.stop, table.kept.index(position)]
        return all(type(v) is bool for v in values)


@dataclass(slots=True)  # not frozen: as Block
class EventColumns:
    """One event as the reader keeps it: its metadata and its rows as `Block`s."""

    time: str
    nanoseconds: int  # the time as pandas reads it, since 1970 (NO_TIME: not one it can hold)
    kind: str
    id: str
    inference_service: str
    namespace: str
    component: str
    endpoint: str
    first_row: int  # the index of the event's first row (an old-format line holds one row)
    size: int  # rows
    blocks: tuple[Block, ...]  # one per layout, in the order they first occur


def columnar(events: Sequence[Event]) -> list[EventColumns]:
    """`events` with their rows as column arrays, converted together; ValueError for row
    indices beyond int64."""
    builder = Builder()
    for event in events:
        builder.add(event)
    return builder.build()


_Key = tuple[str, Layout, bool]  # kind, layout, dict rows
_Plan = tuple[Layout, tuple[int, ...] | None, _Key, int, int]  # layout, positions, table, rows


class Builder:
    """Events converted together (`columnar`, `LineBatch`). Each event's values go into one
    list per position of its kind and layout as it is added, so its own lists die young (kept
    until the tables are made, they would be promoted to the garbage collector's oldest
    generation, whose collections walk every object of the process); `build` makes the tables
    and the events."""

    def __init__(self) -> None:
        self.columns: dict[_Key, list[list[Any]]] = {}
        self.sizes: dict[_Key, int] = {}
        self.heads: list[tuple[Any, ...]] = []  # per event: its metadata
        self.plans: list[tuple[_Plan, ...]] = []  # per event: where its rows went
        self.rows = 0  # rows added, and one per event

    def add(self, event: Event) -> None:
        rows = event.rows
        if event.first_row + len(rows) > _MAX_ROW:
            raise ValueError("row index out of range")
        plan = []
        for layout, keyed, at, mine in _layouts(event):
            key = (event.kind, layout, keyed)
            columns = self.columns.get(key)
            if columns is None:
                width = len(layout) if isinstance(layout, tuple) else layout
                columns = self.columns[key] = [[] for _ in range(width)]
                self.sizes[key] = 0
            if len(mine) == 1:  # one row (the usual event): no transposing
                for column, value in zip(
                    columns, mine[0].values() if keyed else mine[0], strict=True
                ):
                    column.append(value)
            else:
                for column, values in zip(columns, _by_position(mine, keyed), strict=True):
                    column += values
            start = self.sizes[key]
            self.sizes[key] = start + len(mine)
            plan.append((layout, at, key, start, start + len(mine)))
        # Its metadata, not the event: its rows' lists are to die now.
        head = (event.time, event.kind, event.id, event.inference_service, event.namespace)
        self.heads.append(head + (event.component, event.endpoint, event.first_row, len(rows)))
        self.plans.append(tuple(plan))
        self.rows += len(rows) + 1

    def build(self) -> list[EventColumns]:
        tables = {key: _table(key[1], self.columns[key], n) for key, n in self.sizes.items()}
        times = _nanoseconds([head[0] for head in self.heads]).tolist()
        strings: dict[str, str] = {}  # one copy of each service, namespace, component, endpoint
        same = strings.setdefault
        out = []
        for head, plan, nanoseconds in zip(self.heads, self.plans, times, strict=True):
            time, kind, ce_id, service, namespace, component, endpoint, first, size = head
            blocks = tuple(
                [
                    Block(layout, None if at is None else np.array(at), tables[key], start, stop)
                    for layout, at, key, start, stop in plan
                ]
            )
            out.append(
                EventColumns(
                    time,
                    nanoseconds,
                    kind,
                    ce_id,
                    same(service, service),
                    same(namespace, namespace),
                    same(component, component),
                    same(endpoint, endpoint),
                    first,
                    size,
                    blocks,
                )
            )
        return out


def flat_event(head: Event, values: list[Any], size: int, width: int) -> EventColumns:
    """The event `head` (rows aside) with `size` rows of `width` given row after row."""
    layout = width if head.names is None else head.names
    table = _table(layout, [values[p::width] for p in range(width)], size)
    return EventColumns(
        head.time,
        int(_nanoseconds([head.time])[0]),
        head.kind,
        head.id,
        head.inference_service,
        head.namespace,
        head.component,
        head.endpoint,
        head.first_row,
        size,
        (Block(layout, None, table, 0, size),),
    )


def _nanoseconds(times: list[str]) -> NDArray[np.int64]:
    """The stamps as pandas reads them (as the pairing always did), NO_TIME where it cannot."""
    parsed = pd.to_datetime(
        pd.Series(times, dtype=object), format=TIME_FORMAT, utc=True, errors="coerce"
    )
    return np.asarray(parsed.dt.tz_localize(None), dtype="datetime64[ns]").view(np.int64)


def _layouts(event: Event) -> Iterator[tuple[Layout, bool, tuple[int, ...] | None, list[Any]]]:
    """The event's rows by layout, in the order layouts first occur: (layout, dict rows, their
    positions in the event (None: all), the rows)."""
    rows = event.rows
    if not rows:
        return
    if event.names is not None:  # decode checked: lists of len(names)
        yield event.names, False, None, rows
        return
    kinds = set(map(type, rows))
    if kinds == {list} and len(set(map(len, rows))) == 1:
        yield len(rows[0]), False, None, rows
        return
    if kinds == {dict} and len(keys := set(map(tuple, rows))) == 1:
        yield keys.pop(), True, None, rows
        return
    groups: dict[Layout, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(tuple(row) if isinstance(row, dict) else len(row), []).append(i)
    for layout, at in groups.items():
        keyed = isinstance(layout, tuple)
        if len(groups) == 1:
            yield layout, keyed, None, rows
        else:
            yield layout, keyed, tuple(at), [rows[i] for i in at]


def _by_position(rows: list[Any], keyed: bool) -> list[tuple[Any, ...]]:
    """The values of rows of one layout, position by position (dict rows: in key order)."""
    return list(zip(*(map(dict.values, rows) if keyed else rows), strict=True))


def _table(layout: Layout, values: Sequence[Sequence[Any]], n: int) -> Table:
    """`n` rows of `layout`, given position by position, as arrays."""
    width = len(layout) if isinstance(layout, tuple) else layout
    numbers = np.full((n, width), np.nan)
    whole: NDArray[np.bool_] | None = None
    kept: list[int] = []
    objects: list[NDArray[np.object_]] = []
    booleans: set[int] = set()
    strings: dict[str, str] = {}  # one copy of each repeated string
    for position, column in enumerate(values):
        kinds = set(map(type, column))
        parsed = _numbers(column, kinds)
        if parsed is not None:
            numbers[:, position], ints = parsed
            if ints is not None:
                if whole is None:
                    whole = np.zeros((n, width), dtype=bool)
                whole[:, position] = ints
            continue
        kept.append(position)
        if kinds == {bool}:
            booleans.add(position)
        same = strings.setdefault
        objects.append(
            np.fromiter((same(v, v) if type(v) is str else v for v in column), object, n)
        )
    kept_values = np.empty((n, len(kept)), dtype=object)
    for j, column_values in enumerate(objects):
        kept_values[:, j] = column_values
    return Table(numbers, whole, kept_values, tuple(kept), frozenset(booleans))


def _numbers(
    column: Sequence[Any], kinds: set[type]
) -> tuple[NDArray[np.float64], NDArray[np.bool_] | None] | None:
    """A column of numbers and nulls (of types `kinds`) as float64, and which were JSON
    integers; None if it is not one (or holds integers a float cannot give back, or NaN
    literals, which are not null)."""
    if not kinds <= _NUMBERS or kinds == {type(None)}:
        return None
    try:
        floats = np.array(column, dtype=np.float64)  # None -> NaN
    except OverflowError:  # an integer beyond float's range
        return None
    nulls = column.count(None) if type(None) in kinds else 0
    if int(np.isnan(floats).sum()) != nulls:
        return None
    if int not in kinds:
        return floats, None
    ints = ~np.isnan(floats) if float not in kinds else np.array([type(v) is int for v in column])
    if ints.any() and np.abs(floats[ints]).max() >= _EXACT:
        return None
    return floats, ints
