"""The pairing of the KServe sink's events as it was before issue 12 made it columnar: the
reference oracle of `test_kserve_pairing.py`, which checks that `pairing.pair` gives exactly
these frames, counts and set-aside lists for random event sets. Kept verbatim (row by row,
`pd.merge` on five object keys: slow, which is why it was replaced); not used by mlwatchdog.

Its docstring, as it was:

Pairs the sink's request and response events into sample rows; `KServeReader.read` calls it.

A request row and its response row (same inference service, component, ce-id and row index) make
one sample row, timestamped by the request. Column names: a row naming any requested column
(v1 dict instances, v2 tensors of one value per row) gives those columns by name. Positional
rows (v1 lists, v2 2-D tensors, or named rows naming no requested column) are named by
`output_names` / `input_names`; by default the outputs fill the last requested columns (a target
asks for its features, then its predictions) and the inputs, in order, the columns that not
every positional response fills. A column both halves give is the response's where it has a
value. What does not fit is set aside, never an error, and costs only its own rows: positional
rows wider than the columns left for them, values that are not scalars.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from mlwatchdog.errors import InputError
from mlwatchdog.rules import KServeSource
from mlwatchdog.sources.base import Filters, SetAside
from mlwatchdog.sources.files import apply_filters
from mlwatchdog.sources.kserve.lines import META, TIME_FORMAT, Event

Layout = tuple[str, ...] | int  # a named row's names, or a positional row's width
_PAIR_KEY = ["inference_service", "namespace", "component", "id", "row"]
_VALUE = "value:"  # prefix of the value columns while pairing: a feature may be called "id"
_NUMBERS = ("integer", "floating", "mixed-integer-float", "empty")
_SCALARS = (*_NUMBERS, "string", "boolean")


@dataclass
class _Side:
    """One kind's rows, expanded from its events: metadata, layout and values of each."""

    kind: str
    meta: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    layouts: list[tuple[Layout, bool]] = field(default_factory=list)  # (layout, keyed by name)
    values: list[Any] = field(default_factory=list)

    def add(self, event: Event) -> None:
        for i, row in enumerate(event.rows):
            self.meta["time"].append(event.time)
            self.meta["id"].append(event.id)
            self.meta["row"].append(event.first_row + i)
            for name in META:
                self.meta[name].append(getattr(event, name))
            if event.names is not None:
                self.layouts.append((event.names, False))
            elif isinstance(row, dict):
                self.layouts.append((tuple(row), True))
            else:
                self.layouts.append((len(row), False))
            self.values.append(row)


def pair(
    events: Sequence[Event],
    columns: list[str],
    spec: KServeSource,
    settled_before: datetime,
    start: datetime | None,
    end: datetime | None,
) -> tuple[pd.DataFrame, dict[str, int], list[SetAside]]:
    """The sample rows of [start, end) (all without a window), `columns` then the timestamp and
    the events' metadata; how many were paired, alone, waiting (a half younger than
    `settled_before` whose partner may still come); and what was set aside."""
    requests, responses = _Side("request"), _Side("response")
    for event in events:
        (requests if event.kind == "request" else responses).add(event)
    aside: list[SetAside] = []
    out_maps = _column_maps(responses, columns, columns, spec.output_names, aside)
    # Where positional inputs go: not into a column every positional response fills (a few odd
    # responses then cost only their own rows).
    fills = [set(m) for layout, m in out_maps.items() if not _named(layout, columns)]
    always = set.intersection(*fills) if fills else set()
    left = [c for c in columns if c not in always]
    in_maps = _column_maps(requests, columns, left, spec.input_names, aside)
    merged = pd.merge(
        _frame(requests, in_maps, aside),
        _frame(responses, out_maps, aside),
        on=_PAIR_KEY,
        how="outer",
        suffixes=("", "_response"),
        indicator=True,
    )
    paired = merged["_merge"] == "both"
    time = merged["time"].fillna(merged["time_response"])  # the request's, when there is one
    waiting = ~paired & (time > settled_before)
    keep = ~waiting
    if start is not None and end is not None:
        inside = (time >= start) & (time < end)
        keep &= inside
        waiting &= inside
    counts = {
        "paired": int((paired & keep).sum()),
        "alone": int((~paired & keep).sum()),
        "waiting": int(waiting.sum()),
    }
    merged, time = merged[keep.to_numpy()], time[keep.to_numpy()]
    rows = pd.DataFrame(index=merged.index)
    for c in columns:
        given = [merged[n] for n in (_VALUE + c + "_response", _VALUE + c) if n in merged]
        if not given:
            rows[c] = np.nan
            continue
        values = given[0].combine_first(given[1]) if len(given) == 2 else given[0]
        rows[c] = _typed(values, c, aside)
    rows["timestamp"] = time
    meta = {
        "endpoint": merged["endpoint"].fillna(merged["endpoint_response"]),
        **{f: merged[f] for f in ("inference_service", "namespace", "component")},
    }
    for name, given_meta in meta.items():
        if name not in rows:  # a requested column of that name wins
            rows[name] = given_meta
    return rows.reset_index(drop=True), counts, aside


def _column_maps(
    side: _Side, columns: list[str], pool: list[str], names: list[str] | None, aside: list[SetAside]
) -> dict[Layout, dict[str, int]]:
    """For each row layout of one side: column -> the position of its value in the layout.
    Layouts with more positional values than `pool` has columns are left out (set aside)."""
    maps: dict[Layout, dict[str, int]] = {}
    counts: dict[Layout, int] = defaultdict(int)
    for layout, _ in side.layouts:
        counts[layout] += 1
    for layout, n in counts.items():
        if _named(layout, columns):
            assert isinstance(layout, tuple)
            maps[layout] = {name: i for i, name in enumerate(layout) if name in columns}
            continue
        width = len(layout) if isinstance(layout, tuple) else layout
        if names is None and width > len(pool):
            option = "input_names" if side.kind == "request" else "output_names (or [] to skip)"
            detail = (
                f"{side.kind}s with {width} positional values, but {len(pool)} requested "
                f"column(s) left for them {pool}: name them with {option}"
            )
            aside.append(SetAside("row", "column_count", n, detail))
            continue
        default = pool[:width] if side.kind == "request" else pool[len(pool) - width :]
        named = default if names is None else names
        maps[layout] = {
            name: i for name, i in zip(named, range(width), strict=False) if name in columns
        }
    return maps


def _named(layout: Layout, columns: list[str]) -> bool:
    return isinstance(layout, tuple) and any(name in columns for name in layout)


def _frame(side: _Side, maps: dict[Layout, dict[str, int]], aside: list[SetAside]) -> pd.DataFrame:
    """One side's rows: pairing key, time, endpoint and its named values; first copy wins."""
    meta = pd.DataFrame(
        {
            **{name: pd.Series(side.meta[name], dtype=object) for name in (*META, "id")},
            "row": pd.Series(side.meta["row"], dtype=np.int64),
            "time": pd.to_datetime(
                pd.Series(side.meta["time"], dtype=object),
                format=TIME_FORMAT,
                utc=True,
                errors="coerce",
            ),
        }
    )
    groups: dict[tuple[Layout, bool], list[int]] = defaultdict(list)
    for i, kind in enumerate(side.layouts):
        groups[kind].append(i)
    blocks, refused = [], []
    for (layout, keyed), rows in groups.items():
        mapping = maps.get(layout)
        if mapping is None:
            refused += rows
            continue
        if not mapping:
            continue
        keys: list[Any] = list(mapping.values())  # positions in a list row
        if keyed and isinstance(layout, tuple):  # a dict row: its keys at those positions
            keys = [layout[i] for i in keys]
        pick = itemgetter(*keys)
        values = [pick(side.values[i]) for i in rows]
        data = values if len(keys) > 1 else [(v,) for v in values]
        blocks.append(pd.DataFrame(data, columns=[_VALUE + c for c in mapping], index=rows))
    if blocks:
        meta = meta.join(pd.concat(blocks))
    bad_time = meta["time"].isna()
    if bad_time.any():
        aside.append(SetAside("row", "bad_timestamp", int(bad_time.sum()), f"{side.kind}s"))
    meta = meta[~bad_time & ~meta.index.isin(refused)]
    return meta.drop_duplicates(_PAIR_KEY)  # a re-sent event


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
    return rows[wanted].reset_index(drop=True)


def span_of(
    start: datetime | None, end: datetime | None, margin: timedelta
) -> tuple[datetime | None, datetime | None]:
    """The times whose events a window's rows may need: their partners come up to `margin`
    (pair_timeout) before or after."""
    if start is None or end is None:
        return None, None
    return start - margin, end + margin
