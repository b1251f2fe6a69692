"""Which request row and which response row make each sample row, and their values:
`pairing.pair` builds a `Side` of each kind's events and calls `match`.

Events are matched whole where they can be: a request and a response with the same (inference
service, namespace, component, ce-id), each one layout, with the same rows, put their rows side
by side, and so does an event whose partner has not come. Only the other keys go through a
match of rows (numpy sorts on integer keys): several events of one key on a side (re-sent: the
first copy of a row wins), different rows, mixed layouts. Rows come out in (service, namespace,
component, ce-id, row) order, the order of the outer merge this replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlwatchdog.sources.base import SetAside
from mlwatchdog.sources.kserve.columnar import NO_TIME, Block, EventColumns, Layout, Table

Ints = NDArray[np.int64]
_Key = tuple[str, str, str, str]


class _Run:
    """A side's rows of one layout, block after block in the side's order."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.start = 0  # its first row among the side's rows
        self.events: list[int] = []  # each block's event
        self.blocks: list[Block] = []
        self.size = 0

    def add(self, event: int, block: Block) -> int:
        """Add an event's block; returns where its rows start in the run."""
        self.events.append(event)
        self.blocks.append(block)
        self.size += len(block)
        return self.size - len(block)

    @cached_property
    def segments(self) -> list[tuple[Table, int, int]]:
        """The blocks' rows as slices of their tables, consecutive ones joined."""
        joined: list[tuple[Table, int, int]] = []
        for block in self.blocks:
            if joined and joined[-1][0] is block.table and joined[-1][2] == block.start:
                joined[-1] = (block.table, joined[-1][1], block.stop)
            else:
                joined.append((block.table, block.start, block.stop))
        return joined

    def holds_objects(self, position: int) -> bool:
        return any(position in table.kept for table, _, _ in self.segments)

    def column(self, position: int, as_object: bool) -> NDArray[Any]:
        """The values at `position`: float64, or objects with numbers as they were sent."""
        parts = []
        for table, start, stop in self.segments:
            if position in table.kept or not as_object:
                parts.append(table.column(position)[start:stop])
                continue
            values = table.numbers[start:stop, position].astype(object)
            if table.whole is not None:
                ints = table.whole[start:stop, position]
                values[ints] = table.numbers[start:stop, position][ints].astype(np.int64)
            parts.append(values)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class Side:
    """One kind's events of a read: which of their rows take part (a valid time, a layout
    the requested columns map) and where, and the values of each column."""

    def __init__(
        self,
        events: Sequence[EventColumns],
        maps: dict[Layout, dict[str, int]],
        kind: str,
        aside: list[SetAside],
    ) -> None:
        self.events = events
        self.maps = maps
        bad = np.array([e.nanoseconds == NO_TIME for e in events], dtype=bool)
        lost = sum(e.size for e, b in zip(events, bad, strict=True) if b)
        if lost:
            aside.append(SetAside("row", "bad_timestamp", lost, f"{kind}s"))
        self.layouts = {b.layout for e in events for b in e.blocks}
        runs: dict[Layout, _Run] = {}
        # The blocks taking part ("pieces"), flat: their event, block, run and place in it.
        event_of: list[int] = []
        self.blocks: list[Block] = []
        placed: list[tuple[_Run, int]] = []
        for i, (event, bad_time) in enumerate(zip(events, bad, strict=True)):
            for block in () if bad_time else event.blocks:
                if block.layout in maps:
                    run = runs.get(block.layout) or runs.setdefault(
                        block.layout, _Run(block.layout)
                    )
                    event_of.append(i)
                    self.blocks.append(block)
                    placed.append((run, run.add(i, block)))
        self.runs = list(runs.values())
        for before, run in zip(self.runs, self.runs[1:], strict=False):
            run.start = before.start + before.size
        self.piece_event = np.array(event_of, dtype=np.int64)  # sorted: events in order
        # Each piece's first row among the side's rows.
        self.piece_start = np.array([run.start + at for run, at in placed], dtype=np.int64)
        self.event_of = np.concatenate(  # the event of each of the side's rows
            [np.empty(0, np.int64)]
            + [np.repeat(run.events, [len(b) for b in run.blocks]) for run in self.runs]
        )

    def has(self, column: str) -> bool:
        """Whether any of the side's layouts (of events taking part or not) maps `column`."""
        return any(column in self.maps[layout] for layout in self.layouts if layout in self.maps)

    def holds_objects(self, column: str) -> bool:
        return any(run.holds_objects(p) for run, p in self._mapping(column))

    def all_booleans(self, column: str) -> bool:
        """Whether every row of the side (taking part or not) gives `column` a boolean."""
        for event in self.events:
            for block in event.blocks:
                position = self.maps.get(block.layout, {}).get(column)
                if position is None or not block.all_booleans(position):
                    return False
        return True

    def values(self, column: str, at: Ints, as_object: bool) -> NDArray[Any]:
        """The column's values at the side's rows `at` (-1: no row there, NaN)."""
        dtype = object if as_object else np.float64
        parts = [
            run.column(p, as_object) if p is not None else np.full(run.size, np.nan, dtype)
            for run in self.runs
            for p in [self.maps[run.layout].get(column)]
        ]
        every = parts[0] if len(parts) == 1 else np.concatenate([np.empty(0, dtype), *parts])
        return take(every, at, np.nan)

    def _mapping(self, column: str) -> list[tuple[_Run, int]]:
        found = [(run, self.maps[run.layout].get(column)) for run in self.runs]
        return [(run, p) for run, p in found if p is not None]


def take(values: NDArray[Any], at: Ints, missing: Any) -> NDArray[Any]:
    """`values[at]`, `missing` where `at` is -1."""
    if not len(values):
        return np.full(len(at), missing, dtype=values.dtype)
    out = values.take(np.maximum(at, 0))
    out[at < 0] = missing
    return out


def match(requests: Side, responses: Side) -> tuple[Ints, Ints]:
    """For each sample row, in order: its request's row and its response's row among their
    side's rows (-1: none)."""
    numbers: dict[_Key, int] = {}  # each key's number, as first seen
    sides = [_Events(side, numbers) for side in (requests, responses)]
    keys = list(numbers)
    rank = np.empty(len(keys), dtype=np.int64)  # each key's place in key order
    rank[np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)] = np.arange(
        len(keys)
    )
    q, s = (side.only(len(keys)) for side in sides)  # the key's one event (-1: none, -2: more)
    q_whole, s_whole = (side.whole(one) for side, one in zip(sides, (q, s), strict=True))
    whole = (q > -2) & (s > -2) & (q_whole[1] | (q == -1)) & (s_whole[1] | (s == -1))
    both = (q >= 0) & (s >= 0)
    same_rows = sides[0].rows_of(q) == sides[1].rows_of(s)
    whole &= ~both | same_rows.all(axis=1)
    key = np.flatnonzero(whole)
    key = key[np.argsort(rank[key])]
    size = np.where(q[key] >= 0, sides[0].rows_of(q)[key, 1], sides[1].rows_of(s)[key, 1])
    ranks, q_at, s_at = _expand(rank[key], q_whole[0][key], s_whole[0][key], size)
    if whole.all():
        return q_at, s_at
    # The other keys' events: a match of rows.
    q_rest, s_rest = (side.rows(np.flatnonzero(~whole[side.key]), rank) for side in sides)
    g_ranks, q_rows, s_rows = _joined(q_rest, s_rest)
    order = np.argsort(np.concatenate([ranks, g_ranks]), kind="stable")
    return np.concatenate([q_at, q_rows])[order], np.concatenate([s_at, s_rows])[order]


class _Events:
    """A side's events taking part, as arrays: key number, rows, where their rows are."""

    def __init__(self, side: Side, numbers: dict[_Key, int]) -> None:
        self.side = side
        self.index, first, count = np.unique(
            side.piece_event, return_index=True, return_counts=True
        )
        events = [side.events[i] for i in self.index]
        self.key = np.array(
            [
                numbers.setdefault(
                    (e.inference_service, e.namespace, e.component, e.id), len(numbers)
                )
                for e in events
            ],
            dtype=np.int64,
        )
        self.first_row = np.array([e.first_row for e in events], dtype=np.int64)
        self.size = np.array([e.size for e in events], dtype=np.int64)
        # Where an event's rows start if it is one block of all its rows, taking part; else -1
        one_block = np.array([len(e.blocks) == 1 for e in events], dtype=bool) & (count == 1)
        self.start = np.where(one_block, side.piece_start[first], -1) if len(first) else first

    def only(self, keys: int) -> Ints:
        """Per key: the position of its one event here; -1 if none, -2 if more than one."""
        count = np.bincount(self.key, minlength=keys)
        one = np.full(keys, -1, dtype=np.int64)
        one[self.key] = np.arange(len(self.key))
        return np.where(count > 1, -2, one)

    def whole(self, one: Ints) -> tuple[Ints, NDArray[np.bool_]]:
        """Per key: where its one event's rows start, and whether they are one block."""
        start = np.where(one >= 0, self.start[np.maximum(one, 0)] if len(self.start) else -1, -1)
        return start, start >= 0

    def rows_of(self, one: Ints) -> Ints:
        """Per key: its one event's (first row, rows); (-1, -1) without one."""
        if not len(self.first_row):
            return np.full((len(one), 2), -1, dtype=np.int64)
        at = np.maximum(one, 0)
        rows = np.column_stack([self.first_row[at], self.size[at]])
        rows[one < 0] = -1
        return rows

    def rows(self, events: Ints, rank: Ints) -> tuple[Ints, Ints, Ints]:
        """The rows of `events` (positions here), first copy of each (key, row) only: their
        key's rank, row index and place among the side's rows, ordered by (rank, row)."""
        side = self.side
        pieces = np.flatnonzero(np.isin(side.piece_event, self.index[events]))
        event = side.piece_event[pieces]
        size = np.array([len(side.blocks[p]) for p in pieces], dtype=np.int64)
        starts = np.cumsum(size) - size
        within = np.arange(size.sum()) - np.repeat(starts, size)
        local = within.copy()  # the row's position in its event
        for start, piece in zip(starts.tolist(), pieces.tolist(), strict=True):
            block = side.blocks[piece]
            if block.rows is not None:
                local[start : start + len(block)] = block.rows
        mine = np.searchsorted(self.index, event)  # the pieces' events' positions here
        rank_of = np.repeat(rank[self.key[mine]], size)
        row = np.repeat(self.first_row[mine], size) + local
        place = np.repeat(side.piece_start[pieces], size) + within
        order = np.lexsort((np.repeat(event, size), row, rank_of))  # a re-sent event's last
        rank_of, row, place = rank_of[order], row[order], place[order]
        first = _starts(rank_of, row)
        return rank_of[first], row[first], place[first]


def _expand(rank: Ints, q_start: Ints, s_start: Ints, size: Ints) -> tuple[Ints, Ints, Ints]:
    """Per row of the keys matched whole: the key's rank, its request row, its response row."""
    first = np.cumsum(size) - size  # each key's first sample row
    out = []
    for start in (q_start, s_start):
        at = np.repeat(start - first, size)
        at += np.arange(len(at))
        at[np.repeat(start < 0, size)] = -1
        out.append(at)
    return np.repeat(rank, size), out[0], out[1]


def _joined(
    requests: tuple[Ints, Ints, Ints], responses: tuple[Ints, Ints, Ints]
) -> tuple[Ints, Ints, Ints]:
    """The outer join of both sides' (rank, row, place): rank, request place, response place."""
    rank, row, at = (np.concatenate([q, s]) for q, s in zip(requests, responses, strict=True))
    is_response = np.arange(len(rank)) >= len(requests[0])
    order = np.lexsort((is_response, row, rank))
    rank, row, at, is_response = rank[order], row[order], at[order], is_response[order]
    starts = _starts(rank, row)
    out = np.cumsum(starts) - 1
    q_at, s_at = np.full(int(starts.sum()), -1), np.full(int(starts.sum()), -1)
    q_at[out[~is_response]] = at[~is_response]
    s_at[out[is_response]] = at[is_response]
    return rank[starts], q_at, s_at


def _starts(rank: Ints, row: Ints) -> NDArray[np.bool_]:
    """Where a new (rank, row) begins in arrays sorted by them."""
    starts = np.ones(len(rank), dtype=bool)
    starts[1:] = (rank[1:] != rank[:-1]) | (row[1:] != row[:-1])
    return starts
