"""One sink store, several writer processes: what replicas behind one Service do. Two real
processes write to one store at once, a shared folder (what a ReadWriteMany volume is to each
pod) or an S3 bucket (moto's server, through s3fs), and one reader sees every acknowledged
event exactly once; on S3 each commit is an immutable segment, parsed once, and retention
deletes old partitions there too."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest

from mlwatchdog.core import DataStatus
from mlwatchdog.rules import KServeSource, Sink
from mlwatchdog.sources.kserve import Event, KServeReader, SinkStore
from mlwatchdog.sources.kserve.lines import stamp
from tests.servers.s3 import s3_server

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
START = NOW - timedelta(hours=1, minutes=10)  # the events span two hourly partitions
SPEC = KServeSource(type="kserve", inference_service="credit")
COLUMNS = ["age", "score"]
PER_WRITER = 300

pytestmark = pytest.mark.timeout(120)


def events(i: int) -> list[Event]:
    """Event pair `i`: a request (its id as the feature) and its response."""
    meta = {"inference_service": "credit", "namespace": "models", "component": "predictor"}
    at = stamp(START + timedelta(seconds=10 * (i % 300)))
    return [
        Event(at, "request", f"e{i}", **meta, endpoint="", rows=[[float(i)]]),
        Event(at, "response", f"e{i}", **meta, endpoint="", rows=[[i / 1000]]),
    ]


def write_events(sink: Sink, first: int, count: int) -> str:
    """In a writer process: store pairs [first, first + count), a few at a time concurrently
    (each waited for, as the sink route waits before answering); returns the writer id."""
    store = SinkStore(sink)
    try:
        for at in range(first, first + count, 10):
            done = [store.write(events(i)) for i in range(at, min(at + 10, first + count))]
            for future in done:
                future.result()
        return store.writer_id
    finally:
        store.close()


@pytest.fixture(params=["shared-folder", "s3"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sink]:
    if request.param == "shared-folder":
        yield Sink(path=str(tmp_path / "sink"), retention=timedelta(days=1))
        return
    with s3_server(tmp_path / "moto.log", "sink-bucket") as options:
        yield Sink(
            path="s3://sink-bucket/sink", storage_options=options, retention=timedelta(days=1)
        )


def read_all(reader: KServeReader) -> dict[str, Any]:
    got = reader.read(COLUMNS, START - timedelta(minutes=1), NOW)
    assert got.status is DataStatus.OK, got.reason
    frame = got.frame
    return {"ages": sorted(frame["age"]), "scores": sorted(frame["score"]), "files": got.files}


def test_two_writer_processes_one_reader_sees_every_event_once(sink: Sink) -> None:
    context = multiprocessing.get_context("spawn")  # real processes, as two pods are
    with context.Pool(2) as pool:
        writers = pool.starmap(
            write_events, [(sink, 0, PER_WRITER), (sink, PER_WRITER, PER_WRITER)]
        )
    assert len(set(writers)) == 2, writers

    reader = KServeReader("live", SPEC, sink, clock=lambda: NOW + timedelta(hours=1))
    got = read_all(reader)
    expected = [float(i) for i in range(2 * PER_WRITER)]
    assert got["ages"] == expected  # every event, none twice
    assert got["scores"] == [i / 1000 for i in range(2 * PER_WRITER)]
    # Both writers' files, in both hourly partitions.
    names = {Path(f).name for f in got["files"]}
    for writer in writers:
        assert any(n.startswith(writer) for n in names), (writer, names)
    assert len({Path(f).parent.name for f in got["files"]}) == 2

    # A second read parses nothing again; one more event is all the next read parses.
    lines = reader.parsed_lines
    assert read_all(reader)["ages"] == expected
    assert reader.parsed_lines == lines
    write_events(sink, 10_000, 1)
    assert read_all(reader)["ages"] == [*expected, 10_000.0]
    assert reader.parsed_lines == lines + 2


def test_a_segment_is_one_immutable_object_per_commit(tmp_path: Path) -> None:
    with s3_server(tmp_path / "moto.log", "sink-bucket") as options:
        fs = fsspec.filesystem("s3", **options)
        sink = Sink(path="s3://sink-bucket/sink", storage_options=options)
        store = SinkStore(sink)
        try:
            store.write(events(1)).result()
            store.write(events(2)).result()
        finally:
            store.close()
        fs.invalidate_cache()
        found = sorted(fs.find("sink-bucket/sink"))
        # Two commits, two objects, each named by the writer and its sequence number.
        assert [Path(f).name for f in found] == [
            f"{store.writer_id}-000000001.jsonl",
            f"{store.writer_id}-000000002.jsonl",
        ]
        assert all(len(fs.cat_file(f).splitlines()) == 2 for f in found)

        # A busy writer with commit_interval: what comes within it is gathered into one object,
        # not one object per commit.
        store = SinkStore(sink.model_copy(update={"commit_interval": timedelta(seconds=1)}))
        try:
            pending = []
            for i in range(100, 120):  # a sender pacing its events 20 ms apart, not waiting
                pending.append(store.write(events(i)))
                time.sleep(0.02)
            for future in pending:
                future.result()
        finally:
            store.close()
        fs.invalidate_cache()
        mine = [f for f in fs.find("sink-bucket/sink") if Path(f).name.startswith(store.writer_id)]
        assert 1 <= len(mine) <= 2, mine  # the first event's commit, then all the others'
        assert sum(len(fs.cat_file(f).splitlines()) for f in mine) == 40


def test_a_failing_store_is_reported_and_its_recovery_seen_without_an_event(
    tmp_path: Path,
) -> None:
    """The store down (its bucket missing): the event fails and the store reports it; once the
    bucket is there, its probe finds so with no event to try it (what a pod out of its Service
    gets), and leaves no object behind."""
    with s3_server(tmp_path / "moto.log", "sink-bucket") as options:
        reports: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        sink = Sink(path="s3://later-bucket/sink", storage_options=options)
        store = SinkStore(sink, on_fault=reports.put)
        try:
            with pytest.raises(FileNotFoundError):
                store.write(events(1)).result()
            missing = "FileNotFoundError: The specified bucket does not exist"
            assert reports.get_nowait() == missing  # reported before the event failed
            httpx.put(f"{options['client_kwargs']['endpoint_url']}/later-bucket").raise_for_status()
            while (report := reports.get(timeout=30)) is not None:  # failed probes: the same
                assert report == missing
            store.write(events(2)).result()
            assert reports.empty()  # nothing more while it works
        finally:
            store.close()
        fs = fsspec.filesystem("s3", **options)
        # The failed commit's sequence number is not reused; no probe object is left.
        [stored] = fs.find("later-bucket")
        assert Path(stored).name == f"{store.writer_id}-000000002.jsonl"


def test_retention_deletes_every_writers_old_partitions(sink: Sink) -> None:
    write_events(sink, 0, 300)  # two partitions: START's hour and the next
    later = NOW + sink.retention  # START's hour ended retention ago, the next has not
    store = SinkStore(sink)
    try:
        removed = store.prune(later)
        assert removed == [f"{START:dt=%Y-%m-%d/hour=%H}"]
        assert store.prune(later) == []  # another replica pruning the same store: nothing left
    finally:
        store.close()
    reader = KServeReader("live", SPEC, sink, clock=lambda: NOW + timedelta(hours=1))
    assert min(read_all(reader)["ages"]) > 0  # the first hour's events are gone, not the rest
