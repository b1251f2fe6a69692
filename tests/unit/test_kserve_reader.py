"""KServeReader on real sink files written by SinkStore: a read parses only what was appended
since the last one, lines before its span are not parsed, files that left the span are
dropped, a line still being written waits for the next read, and every read gives exactly the
rows a fresh reader gives."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlwatchdog.core import DataStatus
from mlwatchdog.rules import KServeSource, Sink
from mlwatchdog.sources.kserve import Event, KServeReader, SinkStore, encode
from mlwatchdog.sources.kserve.lines import stamp

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
COLUMNS = ["age", "income", "score"]
SPEC = KServeSource(type="kserve", inference_service="credit")


def pair(i: int, at: datetime, isvc: str = "credit") -> list[Event]:
    """A request (two features) and its response (one prediction), both at `at`."""
    meta = {"inference_service": isvc, "namespace": "models", "component": "predictor"}
    return [
        Event(stamp(at), "request", f"e{i}", **meta, endpoint="", rows=[[i, i / 2]]),
        Event(stamp(at), "response", f"e{i}", **meta, endpoint="", rows=[[i / 100]]),
    ]


@pytest.fixture
def sink(tmp_path: Path) -> Sink:
    return Sink(path=str(tmp_path / "sink"), pair_timeout=timedelta(minutes=1))


@pytest.fixture
def store(sink: Sink) -> Iterator[SinkStore]:
    store = SinkStore(sink)
    yield store
    store.close()


def write(store: SinkStore, events: list[Event]) -> int:
    """Store `events`; returns the bytes that added to the sink."""
    before = disk(store)
    store.write(events).result()
    return disk(store) - before


def disk(store: SinkStore) -> int:
    return sum(f.stat().st_size for f in Path(store.root).rglob("*.jsonl"))


def read(reader: KServeReader, start: datetime, end: datetime) -> pd.DataFrame:
    got = reader.read(COLUMNS, start, end)
    assert got.status is DataStatus.OK, got.reason
    return got.frame


def fresh(sink: Sink, start: datetime, end: datetime) -> pd.DataFrame:
    return read(KServeReader("live", SPEC, sink, clock=lambda: NOW), start, end)


def test_a_second_read_parses_only_the_new_events(store: SinkStore, sink: Sink) -> None:
    start = NOW - timedelta(minutes=15)
    write(store, [e for i in range(100) for e in pair(i, start + timedelta(seconds=5 * i))])
    # Another InferenceService's events are parsed too (to know whose they are), not kept.
    write(store, pair(1000, start, isvc="other"))
    reader = KServeReader("live", SPEC, sink, clock=lambda: NOW)
    assert len(read(reader, start, NOW)) == 100
    lines, size = reader.parsed_lines, reader.parsed_bytes
    assert (lines, size) == (202, disk(store))

    added = write(store, [e for i in range(100, 107) for e in pair(i, NOW - timedelta(seconds=30))])
    rows = read(reader, start, NOW)
    assert reader.parsed_lines - lines == 14
    assert reader.parsed_bytes - size == added
    pd.testing.assert_frame_equal(rows, fresh(sink, start, NOW))
    assert len(rows) == 107
    # Nothing new: nothing parsed.
    read(reader, start, NOW)
    assert reader.parsed_lines - lines == 14


def test_lines_before_the_span_are_skipped_and_files_that_left_it_dropped(
    store: SinkStore, sink: Sink
) -> None:
    hours = [NOW.replace(hour=10, minute=5), NOW.replace(hour=11, minute=50), NOW]
    write(
        store, [e for h, at in enumerate(hours) for i in range(10) for e in pair(100 * h + i, at)]
    )
    early = NOW - timedelta(minutes=20)  # 12:10, in the same hourly file as NOW's events
    write(store, [e for i in range(10) for e in pair(900 + i, early)])
    reader = KServeReader("live", SPEC, sink, clock=lambda: NOW)
    span = (NOW - timedelta(minutes=5), NOW + timedelta(minutes=1))
    assert len(read(reader, *span)) == 10
    assert reader.parsed_lines == 20  # not the 12:10 lines before the span, nor other hours
    assert [Path(p).parent.name for p in reader.held] == ["hour=12"]

    # An earlier window: the 12:00 file's skipped lines are needed now, so it is read again.
    earlier = (NOW.replace(hour=11, minute=45), NOW.replace(hour=12, minute=15))
    rows = read(reader, *earlier)
    pd.testing.assert_frame_equal(rows, fresh(sink, *earlier))
    assert len(rows) == 20
    assert [Path(p).parent.name for p in reader.held] == ["hour=11", "hour=12"]
    read(reader, *span)
    assert [Path(p).parent.name for p in reader.held] == ["hour=12"]


def test_a_line_being_written_is_read_once_it_is_complete(store: SinkStore, sink: Sink) -> None:
    start = NOW - timedelta(minutes=10)
    write(store, pair(0, start))
    reader = KServeReader("live", SPEC, sink, clock=lambda: NOW)
    assert len(read(reader, start, NOW)) == 1
    file = Path(reader.held[0])
    request, response = (encode(e) for e in pair(1, start + timedelta(minutes=1)))
    with file.open("ab") as handle:
        handle.write(request + response[:20])  # a writer half-way through a line
    lines = reader.parsed_lines
    got = reader.read(COLUMNS, start, NOW)
    assert reader.parsed_lines == lines + 1  # the request, not half a response
    assert [(a.reason, a.count) for a in got.set_aside] == [("torn", 1)]
    assert len(got.frame) == 2  # the second request alone (settled), its response not yet
    with file.open("ab") as handle:
        handle.write(response[20:])
    rows = read(reader, start, NOW)
    assert reader.parsed_lines == lines + 2
    assert rows["score"].tolist() == [0.0, 0.01]
    pd.testing.assert_frame_equal(rows, fresh(sink, start, NOW))


def test_a_file_pruned_and_written_again_is_read_from_its_start(
    store: SinkStore, sink: Sink
) -> None:
    start = NOW - timedelta(minutes=10)
    write(store, [e for i in range(5) for e in pair(i, start)])
    reader = KServeReader("live", SPEC, sink, clock=lambda: NOW)
    assert len(read(reader, start, NOW)) == 5
    assert store.prune(NOW + timedelta(days=30))
    assert reader.read(COLUMNS, start, NOW).status is DataStatus.NO_DATA
    assert reader.held == []
    write(store, pair(7, start))  # the same file name, a new file
    rows = read(reader, start, NOW)
    assert rows["age"].tolist() == [7.0]
    pd.testing.assert_frame_equal(rows, fresh(sink, start, NOW))
