"""Pairs the sink's request and response events into sample rows; `KServeReader.read` calls it.

A request row and its response row (same inference service, component, ce-id and row index) make
one sample row, timestamped by the request. Column names: a row naming any requested column
(v1 dict instances, v2 tensors of one value per row) gives those columns by name. Positional
rows (v1 lists, v2 2-D tensors, or named rows naming no requested column) are named by
`output_names` / `input_names`; by default the outputs fill the last requested columns (a target
asks for its features, then its predictions) and the inputs, in order, the columns that not
every positional response fills. A column both halves give is the response's where it has a
value. What does not fit is set aside, never an error, and costs only its own rows: positional
rows wider than the columns left for them, values that are not scalars.

The work is per event and per layout, not per row: the events come as column arrays
(`columnar.py`), the column maps are made per layout, and `matching.py` pairs whole events where
it can. The frame is the one the row-by-row merge this replaced gave (its column order, row
order, dtypes and set-aside counts), but for values pandas changed there: in a column that mixes
text and numbers, 7 stays 7 (not 7.0) and 2**53 + 1 stays exact; a boolean stays a boolean (not
1, when another layout gave the column numbers); an integer no float holds is set aside
(not_numeric) where pandas raised OverflowError and the read failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from mlwatchdog.errors import InputError
from mlwatchdog.rules import KServeSource
from mlwatchdog.sources.base import Filters, SetAside
from mlwatchdog.sources.files import apply_filters
from mlwatchdog.sources.kserve.columnar import EventColumns, Layout, columnar
from mlwatchdog.sources.kserve.lines import META, Event
from mlwatchdog.sources.kserve.matching import Ints, Side, match, take

_NUMBERS = ("integer", "floating", "mixed-integer-float", "empty")
_SCALARS = (*_NUMBERS, "string", "boolean")


def pair(
    events: Sequence[EventColumns] | Sequence[Event],
    columns: list[str],
    spec: KServeSource,
    settled_before: datetime,
    start: datetime | None,
    end: datetime | None,
) -> tuple[pd.DataFrame, dict[str, int], list[SetAside]]:
    """The sample rows of [start, end) (all without a window), `columns` then the timestamp and
    the events' metadata; how many were paired, alone, waiting (a half younger than
    `settled_before` whose partner may still come); and what was set aside."""
    tables = [e for e in events if isinstance(e, EventColumns)]
    if len(tables) < len(events):  # decoded events (as tests have them): converted here
        tables = columnar([e for e in events if isinstance(e, Event)])
    requests = [t for t in tables if t.kind == "request"]
    responses = [t for t in tables if t.kind != "request"]
    aside: list[SetAside] = []
    out_maps = _column_maps("response", responses, columns, columns, spec.output_names, aside)
    # Where positional inputs go: not into a column every positional response fills (a few odd
    # responses then cost only their own rows).
    fills = [set(m) for layout, m in out_maps.items() if not _named(layout, columns)]
    always = set.intersection(*fills) if fills else set()
    left = [c for c in columns if c not in always]
    in_maps = _column_maps("request", requests, columns, left, spec.input_names, aside)
    sides = Side(requests, in_maps, "request", aside), Side(responses, out_maps, "response", aside)
    q_at, s_at = match(*sides)
    # Whether each side has a row in every sample row (pandas kept bool columns only then)
    complete = (bool((q_at >= 0).all()), bool((s_at >= 0).all()))
    paired = (q_at >= 0) & (s_at >= 0)
    # The event of each row: its request's when it has one (time and endpoint are the request's)
    event = take(sides[0].event_of, q_at, -1)
    alone = event < 0
    event[alone] = len(requests) + sides[1].event_of[s_at[alone]]
    nanoseconds = np.array([t.nanoseconds for t in (*requests, *responses)], dtype=np.int64)
    time = pd.to_datetime(nanoseconds.take(event), utc=True).array
    waiting = ~paired & np.asarray(time > settled_before)
    keep = ~waiting
    if start is not None and end is not None:
        inside = np.asarray((time >= start) & (time < end))
        keep &= inside
        waiting &= inside
    counts = {
        "paired": int((paired & keep).sum()),
        "alone": int((~paired & keep).sum()),
        "waiting": int(waiting.sum()),
    }
    if not keep.all():
        q_at, s_at, event, time = q_at[keep], s_at[keep], event[keep], time[keep]
    rows: dict[str, Any] = {}
    for c in columns:
        rows[c] = _values(c, sides, (q_at, s_at), complete, aside)
    rows["timestamp"] = time
    for name in ("endpoint", "inference_service", "namespace", "component"):
        if name not in rows:  # a requested column of that name wins
            given = np.array([getattr(t, name) for t in (*requests, *responses)], dtype=object)
            rows[name] = given.take(event)
    # Every array is this call's own: no copy, no consolidation into 2-D blocks.
    return pd.DataFrame(rows, index=pd.RangeIndex(len(event)), copy=False), counts, aside


def _values(
    column: str,
    sides: tuple[Side, Side],
    at: tuple[Ints, Ints],
    complete: tuple[bool, bool],
    aside: list[SetAside],
) -> NDArray[Any] | pd.Series:
    """One column of the rows: the response's value where it has one, else the request's."""
    given = [(sides[k], at[k], complete[k]) for k in (1, 0) if sides[k].has(column)]
    if not given:
        return np.full(len(at[0]), np.nan)
    as_object = any(side.holds_objects(column) for side, _, _ in given)
    values = [side.values(column, rows, as_object) for side, rows, _ in given]
    combined = values[0]
    if len(values) == 2:
        combined = np.where(pd.isna(values[0]), values[1], values[0])
    if _bool_column([done and side.all_booleans(column) for side, _, done in given], values):
        return combined.astype(bool)
    if combined.dtype != object:
        return combined
    return _typed(pd.Series(combined, dtype=object), column, aside)


def _bool_column(bools: list[bool], values: list[NDArray[Any]]) -> bool:
    """Whether the merge this replaced gave a bool column (the rows' values are booleans then),
    to keep its dtypes: a side's column was bool if it gave a boolean to each of its rows and
    was in every row; the response's then wins in every row, and the request's bool column is
    kept where no response has a value (not in an empty frame: pandas makes that object)."""
    if len(bools) == 1 or (bools[0] and bools[1]):
        return all(bools)
    return len(values[0]) > 0 and (bools[0] or (bools[1] and bool(pd.isna(values[0]).all())))


def _column_maps(
    kind: str,
    events: Sequence[EventColumns],
    columns: list[str],
    pool: list[str],
    names: list[str] | None,
    aside: list[SetAside],
) -> dict[Layout, dict[str, int]]:
    """For each row layout of one kind's events: column -> the position of its value in the
    layout. Layouts with more positional values than `pool` has columns are left out (set
    aside)."""
    maps: dict[Layout, dict[str, int]] = {}
    counts: dict[Layout, int] = {}  # rows of each layout, in the order layouts first come
    for event in events:
        for block in event.blocks:
            counts[block.layout] = counts.get(block.layout, 0) + len(block)
    for layout, n in counts.items():
        if _named(layout, columns):
            assert isinstance(layout, tuple)
            maps[layout] = {name: i for i, name in enumerate(layout) if name in columns}
            continue
        width = len(layout) if isinstance(layout, tuple) else layout
        if names is None and width > len(pool):
            option = "input_names" if kind == "request" else "output_names (or [] to skip)"
            detail = (
                f"{kind}s with {width} positional values, but {len(pool)} requested "
                f"column(s) left for them {pool}: name them with {option}"
            )
            aside.append(SetAside("row", "column_count", n, detail))
            continue
        default = pool[:width] if kind == "request" else pool[len(pool) - width :]
        named = default if names is None else names
        maps[layout] = {
            name: i for name, i in zip(named, range(width), strict=False) if name in columns
        }
    return maps


def _named(layout: Layout, columns: list[str]) -> bool:
    return isinstance(layout, tuple) and any(name in columns for name in layout)


def _typed(values: pd.Series, column: str, aside: list[SetAside]) -> pd.Series:
    """Numbers as float64 (with missing ones as NaN); anything else as it came, but for values
    that are not scalars (lists, objects): those are left out (NaN) and counted."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in _SCALARS:
        scalar = values.map(lambda v: not isinstance(v, list | dict))
        if not scalar.all():
            aside.append(SetAside("value", "not_scalar", int((~scalar).sum()), column))
            values = values.where(scalar, np.nan)
            kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in _NUMBERS:
        try:
            return values.astype(np.float64)
        except (OverflowError, ValueError, TypeError):  # an integer beyond float's range
            numbers = values.map(_as_float)
            lost = int((numbers.isna() & values.notna()).sum())
            aside.append(SetAside("value", "not_numeric", lost, column))
            return numbers.astype(np.float64)
    return values


def _as_float(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (OverflowError, ValueError, TypeError):
        return math.nan


def with_filters(
    rows: pd.DataFrame, columns: list[str], filters: Filters, source: str
) -> pd.DataFrame:
    """The rows passing `filters` (on requested columns or the event's endpoint, service, ...),
    as `columns`, the timestamp and the filtered columns."""
    unknown = [c for c in filters if c not in rows.columns]
    if unknown:
        raise InputError(
            f"filter column(s) {unknown} are neither requested columns nor one of "
            f"{list(META)} of kserve source {source!r}"
        )
    rows = apply_filters(rows, filters)
    wanted = list(dict.fromkeys([*columns, "timestamp", *filters]))
    picked = pd.DataFrame({c: rows[c] for c in wanted}, copy=False)  # the same arrays, no copy
    picked.index = pd.RangeIndex(len(picked))
    return picked


def span_of(
    start: datetime | None, end: datetime | None, margin: timedelta
) -> tuple[datetime | None, datetime | None]:
    """The times whose events a window's rows may need: their partners come up to `margin`
    (pair_timeout) before or after."""
    if start is None or end is None:
        return None, None
    return start - margin, end + margin
