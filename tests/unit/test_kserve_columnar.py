"""The reader keeps events as column arrays: a long line of numbers is read without a list per
row, exactly as `decode` reads it (or refused as it refuses it); the cache holds no Python
object per row; a read allocates about what its rows take; and what the row-by-row pairing
failed on or changed is now read as sent."""

from __future__ import annotations

import gc
import json
import math
import random
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlwatchdog.core import DataStatus
from mlwatchdog.rules import KServeSource, Sink
from mlwatchdog.sources.kserve import Event, KServeReader, SinkStore, decode, encode
from mlwatchdog.sources.kserve.columnar import EventColumns, columnar
from mlwatchdog.sources.kserve.linebatch import LineBatch, _flat_rows
from mlwatchdog.sources.kserve.lines import stamp
from mlwatchdog.sources.kserve.pairing import pair

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
COLUMNS = ["age", "income", "channel", "score"]
SPEC = KServeSource(type="kserve", inference_service="credit")
META = {"inference_service": "credit", "namespace": "models", "component": "predictor"}


def everything(_: Event) -> bool:
    return True


def parse(line: bytes, wanted: Callable[[Event], bool] = everything) -> EventColumns | None:
    """The event of one line as the reader parses it (None: not `wanted`)."""
    batch = LineBatch(wanted)
    batch.add(line)
    got = batch.done()
    return got[0] if got else None


# ------------------------------------------------------------------------ long lines, no lists


def long_line(rng: random.Random) -> bytes:
    """A sink line of 100-300 rows of numbers, booleans and nulls (sometimes named)."""
    width = rng.randint(1, 4)
    pick = rng.choice(["floats", "ints", "mixed", "bools"])

    def one() -> Any:
        roll = rng.random()
        if pick == "bools" or roll < 0.02:
            return rng.choice([True, False])
        if roll < 0.05:
            return None
        if pick == "ints" or (pick == "mixed" and roll < 0.5):
            return rng.choice([0, -1, 7, 2**53 - 1, 2**53 + 1, 2**64 + 3, -(2**63)])
        return rng.choice([0.5, -0.0, 1e300, 5e-324, 1 / 3, round(rng.uniform(-9, 9), 4)])

    rows = [[one() for _ in range(width)] for _ in range(rng.randint(100, 300))]
    names = tuple(f"n{i}" for i in range(width)) if rng.random() < 0.3 else None
    event = Event(stamp(NOW), "request", "e1", **META, endpoint="", rows=rows, names=names)
    return encode(event).rstrip(b"\n")  # as the reader splits lines


def mutated(line: bytes, rng: random.Random) -> bytes:
    """`line` with a small change in its rows: often not JSON, not rows, or other rows."""
    start = line.index(b'"rows":[') + 8
    at = rng.randrange(start, len(line) - 1)
    change = rng.choice(
        [b" ", b"[", b"]", b",", b"0", b".", b"-", b"+", b"e", b"x", b'"', b"{", b"[]", b"],["]
    )
    if rng.random() < 0.3:
        return line[:at] + line[at + 1 :]  # a character less
    if rng.random() < 0.5:
        return line[:at] + change + line[at:]
    return line[:at] + change + line[at + 1 :]


def assert_same_columns(got: EventColumns | None, want: EventColumns) -> None:
    assert got is not None
    for name in ("time", "nanoseconds", "kind", "id", "endpoint", "first_row", "size", *META):
        assert getattr(got, name) == getattr(want, name), name
    assert len(got.blocks) == len(want.blocks)
    for mine, theirs in zip(got.blocks, want.blocks, strict=True):
        assert (mine.layout, len(mine)) == (theirs.layout, len(theirs))
        assert (mine.rows is None) == (theirs.rows is None)
        if mine.rows is not None:
            assert np.array_equal(mine.rows, theirs.rows)
        a, b = mine.table, theirs.table
        assert (a.kept, a.booleans) == (b.kept, b.booleans)
        assert np.array_equal(a.numbers, b.numbers, equal_nan=True)
        assert np.array_equal(np.signbit(a.numbers), np.signbit(b.numbers))
        assert (a.whole is None) == (b.whole is None)
        if a.whole is not None:
            assert np.array_equal(a.whole, b.whole)
        pairs = zip(a.objects.ravel(), b.objects.ravel(), strict=True)
        assert all(type(x) is type(y) and x == y for x, y in pairs)


def test_a_long_line_of_numbers_is_read_as_decode_reads_it() -> None:
    rng = random.Random(12)
    fast = 0
    for _ in range(150):
        line = long_line(rng)
        text = line[line.index(b'"rows":[') + 7 : -1]
        fast += _flat_rows(text) is not None
        assert_same_columns(parse(line), columnar([decode(line)])[0])
    assert fast == 150  # every one of them without a list per row


def test_a_long_line_that_is_not_rows_of_numbers_is_read_or_refused_as_decode_does() -> None:
    rng = random.Random(5)
    refused = 0
    for _ in range(400):
        line = mutated(long_line(rng), rng)
        try:
            want = columnar([decode(line)])[0]
        except ValueError:
            refused += 1
            with pytest.raises(ValueError):
                parse(line)
            continue
        assert_same_columns(parse(line), want)
        text = line[line.index(b'"rows":[') + 7 : -1]
        flat = _flat_rows(text)
        if flat is not None:  # what it takes is what json reads
            values, size, width = flat
            rows = json.loads(text)
            assert len(rows) == size and {len(r) for r in rows} == {width}
            assert [type(v) for r in rows for v in r] == [type(v) for v in values]
    assert 50 < refused < 350  # both kinds of lines were tried


def test_a_line_other_sources_read_is_not_kept_but_a_corrupt_one_is_refused() -> None:
    line = long_line(random.Random(3))
    assert parse(line, lambda _: False) is None
    with pytest.raises(ValueError):  # not an event, whoever reads it
        parse(line.replace(b"],[", b"],x[", 1), lambda _: False)


# ------------------------------------------------------------------------------- what it costs


@pytest.fixture
def sink(tmp_path: Path) -> Sink:
    return Sink(path=str(tmp_path / "sink"), pair_timeout=timedelta(minutes=1))


@pytest.fixture
def store(sink: Sink) -> Iterator[SinkStore]:
    store = SinkStore(sink)
    yield store
    store.close()


def write_window(store: SinkStore, events: int, rows: int) -> None:
    """`events` request/response pairs of `rows` rows each, as KServe's logger sends a batch."""
    rng = np.random.default_rng(0)
    written = []
    for i in range(events):
        at = stamp(NOW - timedelta(minutes=5) + timedelta(seconds=i))
        features = np.column_stack([rng.integers(18, 90, rows), rng.normal(50, 9, rows).round(3)])
        request = [[int(a), float(b), "web" if a % 2 else "app"] for a, b in features]
        response = [[float(p)] for p in rng.random(rows).round(4)]
        written += [
            Event(at, "request", f"batch-{i}", **META, endpoint="", rows=request),
            Event(at, "response", f"batch-{i}", **META, endpoint="", rows=response),
        ]
    store.write(written).result()


def test_the_cache_holds_column_arrays_not_rows(store: SinkStore, sink: Sink) -> None:
    """The row-by-row reader kept every row as a Python list (40 000 here), which the garbage
    collector walks on each full collection; now an event is a few arrays."""
    write_window(store, events=8, rows=2_500)
    reader = KServeReader("live", SPEC, sink, clock=lambda: NOW)
    gc.collect()
    before = len(gc.get_objects())
    read = reader.read(COLUMNS, NOW - timedelta(minutes=10), NOW)
    assert read.status is DataStatus.OK and len(read.frame) == 20_000
    del read
    gc.collect()
    assert len(gc.get_objects()) - before < 1_000


def test_a_read_allocates_about_what_its_rows_take(store: SinkStore, sink: Sink) -> None:
    """20 000 rows of 4 columns: the frame takes 72 bytes a row (4 values, the time, 4 metadata
    references); parsing and pairing them allocated over 1 KB a row before, now under 300."""
    write_window(store, events=8, rows=2_500)
    reader = KServeReader("live", SPEC, sink, clock=lambda: NOW)
    tracemalloc.start()
    try:
        read = reader.read(COLUMNS, NOW - timedelta(minutes=10), NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(read.frame) == 20_000
    assert peak / 20_000 < 300


# -------------------------------------------------------------------- read as sent, never raised


def events(request_rows: list[Any], response_rows: list[Any], ce_id: str) -> list[Event]:
    at = stamp(NOW - timedelta(minutes=5))
    return [
        Event(at, "request", ce_id, **META, endpoint="", rows=request_rows),
        Event(at, "response", ce_id, **META, endpoint="", rows=response_rows),
    ]


def test_an_integer_no_float_holds_is_set_aside_not_raised(store: SinkStore, sink: Sink) -> None:
    """Stored before the sink checked values (or by hand): the row-by-row pairing raised
    OverflowError on it, which blinded the whole window; now only that value is left out."""
    store.write(events([[10**400, 52.5, "web"], [31, 61.0, "app"]], [[0.1], [0.2]], "e1")).result()
    read = KServeReader("live", SPEC, sink, clock=lambda: NOW).read(
        COLUMNS, NOW - timedelta(minutes=10), NOW
    )
    assert read.status is DataStatus.OK, read.reason
    assert [(a.reason, a.count, a.detail) for a in read.set_aside] == [("not_numeric", 1, "age")]
    assert read.frame["age"].tolist()[1] == 31.0 and math.isnan(read.frame["age"].iloc[0])
    assert read.frame["income"].tolist() == [52.5, 61.0]


def test_numbers_in_a_column_of_text_stay_as_they_were_sent() -> None:
    """A categorical column sent as text by some clients and as numbers by others: 7 is the
    category "7" whichever layout it came in (pandas' typing made it 7.0 when a null shared its
    layout's column)."""
    sent = events([[31, 52.5, "web"]], [[0.1]], "e1") + events(
        [{"age": 45, "income": 61.0, "channel": 7}, {"age": 46, "income": 62.0, "channel": None}],
        [[0.2], [0.3]],
        "e2",
    )
    rows, _, aside = pair(sent, COLUMNS, SPEC, NOW, None, None)
    assert aside == []
    channel = rows["channel"].tolist()
    assert channel[:2] == ["web", 7] and type(channel[1]) is int and str(channel[1]) == "7"
    assert channel[2] is None or math.isnan(channel[2])


def test_a_boolean_stays_a_boolean_whatever_other_layouts_send() -> None:
    """A boolean column that one client sends as objects and another by position, with numbers:
    true stays true (pandas' concatenation of the layouts' frames made it 1)."""
    sent = events([{"age": 30, "income": 1.0, "channel": True}], [[0.1]], "e1") + events(
        [[40, 2.0, 1]], [[0.2]], "e2"
    )
    rows, _, _ = pair(sent, COLUMNS, SPEC, NOW, None, None)
    assert rows["channel"].tolist() == [True, 1]
    assert [type(v) for v in rows["channel"]] == [bool, int]
