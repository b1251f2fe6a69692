"""`pairing.pair` gives exactly what the row-by-row pairing it replaced gave (the oracle, kept
verbatim in `kserve_pairing_oracle.py`) for random event sets: v1 lists and dicts, v2 named
rows, halves alone or late, re-sent events, mixed layouts, odd widths, bad values and times,
several services; whether the events come as `Event`s or through the reader's line parser
(`LineBatch`: events converted together, long lines without a list per row), and for two
targets' columns over the same parsed events. Where pandas changed values in the old frames
(`same_value`, `booleans_made_numbers`), the new ones hold them as they were sent."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlwatchdog.rules import KServeSource
from mlwatchdog.sources.base import SetAside
from mlwatchdog.sources.kserve import Event, decode, encode
from mlwatchdog.sources.kserve.linebatch import LineBatch
from mlwatchdog.sources.kserve.lines import META, stamp
from mlwatchdog.sources.kserve.pairing import pair
from tests.unit.kserve_pairing_oracle import pair as oracle_pair

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
FEATURES = ["age", "income", "channel", "zip"]
PREDICTIONS = ["score", "label"]
BAD_STAMPS = ["2026-02-30T12:00:00.000000Z", "1500-01-01T00:00:00.000000Z"]  # no date; not ns
STRINGS = ["web", "app", "7", "", "é"]
BIG = [2**53 + 1, -(2**63), 2**64 + 3]
SPECIAL = [2**53 + 1, -0.0, math.inf, -math.inf, math.nan]


# ------------------------------------------------------------------------------ random events


def value(rng: random.Random, kind: str) -> Any:
    """A row value of a kind of event: numbers (and nulls), integers, booleans, or anything
    JSON can hold."""
    roll = rng.random()
    if kind == "booleans":
        return rng.choice([True, False])
    if kind == "integers":
        return rng.randint(-5, 300) if roll < 0.97 else rng.choice(BIG)
    if roll < 0.45:
        return round(rng.uniform(-100, 100), rng.choice([0, 1, 6]))
    if roll < 0.65:
        return rng.randint(-5, 300)
    if roll < 0.72 or kind == "numbers":
        return None if roll < 0.75 else rng.random()
    if roll < 0.76:
        return rng.choice([True, False])
    if roll < 0.86:
        return rng.choice(STRINGS)
    if roll < 0.94:
        return rng.choice(SPECIAL)
    return rng.choice([[1, 2], {"a": 1}, [], [[0.5]]])


def rows_of(rng: random.Random, n: int, columns: list[str], kind: str) -> Any:
    """`n` rows of one layout or several: (rows, names)."""
    style = rng.choice(["list", "list", "dict", "names", "mixed"])
    extra = ["zip", "extra", "output-0", "id"]
    if style == "names":
        names = rng.sample(columns + extra, rng.randint(1, 4))
        if rng.random() < 0.1:
            names.append(names[0])  # a tensor named twice
        return [[value(rng, kind) for _ in names] for _ in range(n)], tuple(names)
    width = rng.choice([0, 1, 1, 2, 3, 3, 4, 6])
    keys = rng.sample(columns + extra, rng.randint(0, 4))
    rows: list[Any] = []
    for _ in range(n):
        if style == "mixed" and rng.random() < 0.5:
            width, keys = rng.choice([1, 2, 3]), rng.sample(columns + extra, rng.randint(1, 3))
        if style == "dict" or (style == "mixed" and rng.random() < 0.5):
            order = keys if rng.random() < 0.9 else list(reversed(keys))
            rows.append({k: value(rng, kind) for k in order})
        else:
            rows.append([value(rng, kind) for _ in range(width)])
    return rows, None


def event(
    rng: random.Random,
    kind: str,
    key: tuple[str, str, str, str],
    at: datetime,
    rows: list[Any],
    names: tuple[str, ...] | None,
    first_row: int = 0,
) -> Event:
    time = stamp(at) if rng.random() > 0.03 else rng.choice(BAD_STAMPS)
    isvc, namespace, component, ce_id = key
    endpoint = rng.choice(["", "default", "canary"])
    return Event(time, kind, ce_id, isvc, namespace, component, endpoint, rows, names, first_row)


def random_case(rng: random.Random) -> dict[str, Any]:
    """Events of a few keys, each in one of the ways they come, and what a read asks."""
    columns = rng.sample(FEATURES, rng.randint(1, 4)) + rng.sample(PREDICTIONS, rng.randint(0, 2))
    if rng.random() < 0.1:
        columns.insert(rng.randrange(len(columns) + 1), rng.choice(["endpoint", "timestamp"]))
    spec = KServeSource(
        type="kserve",
        input_names=rng.choice([None, None, None, FEATURES[:3], ["x", "age", "income"]]),
        output_names=rng.choice([None, None, None, [], ["score"], ["label", "score"]]),
    )
    kinds = ["numbers", "numbers", "numbers", "integers", "booleans", "any", "any"]
    usual = rng.choice(kinds)  # most events of a case are of one kind
    events: list[Event] = []
    for _ in range(rng.randint(0, 7)):
        key = (
            rng.choice(["credit", "fraud"]),
            rng.choice(["models", "other"]),
            rng.choice(["predictor", "transformer"]),
            rng.choice(["e0", "e1", "e2", "e3", "e4", "e5", "e10"]),
        )
        at = NOW - timedelta(seconds=rng.randint(-90, 600))
        later = at + timedelta(seconds=rng.choice([0, 0, 1, 30, 200]))
        kind = usual if rng.random() < 0.7 else rng.choice(kinds)
        big = rng.random() < 0.08  # long lines: the parser's path without a list per row
        n = rng.randint(150, 400) if big else rng.choice([0, 1, 1, 2, 3, 5])
        way = rng.choice(["pair", "pair", "pair", "rows", "request", "response", "resent", "old"])
        kind = "numbers" if big and kind == "any" else kind
        request, names = rows_of(rng, n, columns, kind)
        response, out_names = rows_of(rng, n, columns, kind)
        if way == "rows":  # a response with other rows
            response, out_names = rows_of(rng, rng.randint(0, 4), columns, kind)
        if way == "old":  # the previous format: one line per row
            for i, row in enumerate(request[:3]):
                events.append(event(rng, "request", key, at, [row], None, i))
            for i, row in enumerate(response[:3]):
                events.append(event(rng, "response", key, later, [row], None, i))
            continue
        if way != "response":
            events.append(event(rng, "request", key, at, request, names))
        if way != "request":
            events.append(event(rng, "response", key, later, response, out_names))
        if way == "resent":  # again, maybe with other values (the first copy wins)
            again, again_names = rows_of(rng, n, columns, kind)
            if rng.random() < 0.5:
                again, again_names = request, names
            events.append(event(rng, "request", key, at, again, again_names))
    rng.shuffle(events)
    window = rng.choice([None, (NOW - timedelta(minutes=5), NOW), (NOW - timedelta(hours=1), NOW)])
    return {
        "events": events,
        "columns": columns,
        "spec": spec,
        "settled_before": NOW - timedelta(seconds=rng.choice([0, 60, 300])),
        "start": window[0] if window else None,
        "end": window[1] if window else None,
    }


# ------------------------------------------------------------------------------ comparing


def line_of(event: Event) -> bytes:
    """The line the sink holds for `event` (the previous format for a row of a later index)."""
    if event.first_row == 0:
        return encode(event)
    record: dict[str, Any] = {"time": event.time, "kind": event.kind, "id": event.id}
    record.update({field: getattr(event, field) for field in META})
    record.update(row=event.first_row, values=event.rows[0])
    return json.dumps(record).encode()


def missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def same_value(old: Any, new: Any) -> bool:
    """Equal, and of the same kind: a boolean is not 1, a string is not a number. But values
    are now as they were sent where pandas' typing of the frames of the pairing it replaced
    changed them: in a column mixing text and numbers, 7 could become 7.0 and 2**53 + 1 could
    become 2.0**53, and a boolean could become 0 / 1 (see `booleans_made_numbers`)."""
    if missing(old) or missing(new):
        return missing(old) and missing(new)
    numbers = (int, float, np.integer, np.floating)
    if isinstance(new, bool) and isinstance(old, numbers) and not isinstance(old, bool | np.bool_):
        return bool(old == int(new))  # promoted to a number by numpy
    if isinstance(old, bool | np.bool_) or isinstance(new, bool | np.bool_):
        return isinstance(old, bool | np.bool_) and isinstance(new, bool) and old == new
    if isinstance(old, numbers) or isinstance(new, numbers):
        if not (isinstance(old, numbers) and isinstance(new, numbers)):
            return False
        if isinstance(new, int) and isinstance(old, float | np.floating):
            return old == new or float(new) == old  # the float pandas made of it
        return bool(old == new)
    return type(old) is type(new) and old == new


def assert_same(
    got: tuple[pd.DataFrame, dict[str, int], list[SetAside]],
    want: tuple[pd.DataFrame, dict[str, int], list[SetAside]],
) -> None:
    (frame, counts, aside), (expected, expected_counts, expected_aside) = got, want
    assert counts == expected_counts
    assert aside == expected_aside
    assert list(frame.columns) == list(expected.columns)
    pd.testing.assert_index_equal(frame.index, expected.index)
    for column in expected.columns:
        old, new = expected[column], frame[column]
        if booleans_made_numbers(old, new):
            continue
        if old.dtype != object:
            pd.testing.assert_series_equal(new, old, check_exact=True)
            continue
        assert new.dtype == object, column
        wrong = [(o, n) for o, n in zip(old, new, strict=True) if not same_value(o, n)]
        assert not wrong, f"{column}: {wrong[:5]}"


def booleans_made_numbers(old: pd.Series, new: pd.Series) -> bool:
    """Whether `old` is `new` but for booleans pandas made 0.0 / 1.0: when another layout of
    the same side gave numbers for the column, concatenating the layouts' frames promoted
    bool to float as numpy does (the same values in one layout gave an object column). The
    new pairing keeps a boolean a boolean (the other difference)."""
    if old.dtype != np.float64 or new.dtype != object:
        return False
    flags = [isinstance(v, bool) for v in new]
    numbers = [float(v) if isinstance(v, bool) else v for v in new]
    return any(flags) and bool(
        np.array_equal(old.to_numpy(), np.array(numbers, dtype=np.float64), equal_nan=True)
    )


def check(case: dict[str, Any]) -> None:
    events, asked = case["events"], {k: v for k, v in case.items() if k != "events"}
    batch = LineBatch(lambda _: True)  # as the reader parses lines: converted together
    for e in events:
        batch.add(line_of(e))
    parsed = batch.done()
    assert len(parsed) == len(events)
    compare(events, events, asked)
    compare(parsed, [decode(line_of(e)) for e in events], asked)
    # Another target reading the same source: other columns, the same parsed events.
    compare(parsed, events, {**asked, "columns": ["score", *FEATURES[:2]]})


def compare(events: list[Any], old_events: list[Event], asked: dict[str, Any]) -> None:
    assert_same(pair(events, **asked), oracle_pair(old_events, **asked))


@pytest.mark.parametrize("chunk", range(8))
def test_pair_gives_what_the_row_by_row_pairing_gave(chunk: int) -> None:
    for seed in range(chunk * 60, (chunk + 1) * 60):
        case = random_case(random.Random(seed))
        try:
            check(case)
        except AssertionError as failed:
            raise AssertionError(f"seed {seed}: {failed}") from failed


def test_the_cases_cover_what_they_should() -> None:
    """The generator makes the cases the comparison is for (else it proves little)."""
    seen: dict[str, int] = {}

    def count(what: str, yes: bool = True) -> None:
        seen[what] = seen.get(what, 0) + int(yes)

    for seed in range(480):
        case = random_case(random.Random(seed))
        frame, counts, aside = oracle_pair(**case)
        for key, n in counts.items():
            count(key, n > 0)
        for item in aside:
            count(item.reason)
        asked = frame[[c for c in case["columns"] if c not in META]]
        count("object column", "O" in [d.kind for d in asked.dtypes])
        count("bool column", "b" in [d.kind for d in asked.dtypes])
        count("long line", any(len(line_of(e)) > 4096 for e in case["events"]))
        count(
            "re-sent",
            len({(e.kind, e.id, e.namespace) for e in case["events"]}) < len(case["events"]),
        )
    wanted = ["paired", "alone", "waiting", "column_count", "not_scalar"]
    wanted += ["bad_timestamp", "object column", "bool column", "long line", "re-sent"]
    assert all(seen.get(what, 0) >= 3 for what in wanted), str(sorted(seen.items()))
