"""The audit trail and the journal (one JSON-lines writer) under real faults: a record that cannot
be written (disk full on a tmpfs, no file descriptor left) is kept, the owner is told, and it is
written later, before newer records, in order; a torn line left by a crash loses nothing after it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.daemon.journal import Journal
from tests.faults.disk import Filler, open_files_exhausted, tmpfs


def lines(path: Path) -> list[dict[str, Any]]:
    """The file's records as any reader of JSON lines sees them (`jq`, pandas)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record(n: int) -> dict[str, Any]:
    return {"at": f"2026-11-25T12:00:0{n}+00:00", "target": "credit-model", "n": n}


def block_sized(n: int, block: int) -> dict[str, Any]:
    """A record whose line fills whole blocks: a file of it has no room left in its last block
    (a full tmpfs still takes an append that fits in a block the file already has)."""
    bare = len(json.dumps({**record(n), "pad": ""}, sort_keys=True)) + 1
    return {**record(n), "pad": "x" * (block - bare)}


@pytest.fixture(params=["disk full", "no file descriptor left"])
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """(a folder, a context manager in which writing there fails)."""
    if request.param == "disk full":
        with tmpfs(tmp_path / "disk", "1m") as disk:
            filler = Filler(disk)

            class Full:
                def __enter__(self) -> None:
                    filler.fill()

                def __exit__(self, *_: Any) -> None:
                    filler.free()

            yield disk, Full()
    else:
        yield tmp_path, open_files_exhausted()


@pytest.mark.parametrize("kind", [AuditLog, Journal])
def test_records_that_cannot_be_written_are_kept_and_written_later_in_order(
    kind: Any, fault: tuple[Path, Any]
) -> None:
    folder, failing = fault
    path = folder / "records.jsonl"
    records = kind(path)
    told: list[str | None] = []
    records.on_fault = told.append
    first = block_sized(0, os.statvfs(folder).f_frsize)
    assert records.append(first) is not False  # written before the fault

    with failing:
        assert records.append(record(1)) is False  # kept, not raised, not lost
        assert records.append(record(2)) is False
        assert records.flush() is False  # the daemon's flush job, still failing
    assert records.pending == 2
    [error] = told  # told once when the fault starts, not on every retry
    assert error is not None
    assert "No space left on device" in error or "Too many open files" in error
    assert lines(path) == [first]

    # The fault is gone: the next flush (the daemon's job, every 5 s) writes what was kept.
    assert records.flush() is True
    assert told[-1] is None
    assert records.pending == 0
    assert records.append(record(3)) is True
    assert lines(path) == [first, record(1), record(2), record(3)]
    assert list(records.entries()) == [first, record(1), record(2), record(3)]


@pytest.mark.parametrize("kind", [AuditLog, Journal])
def test_a_record_appended_after_a_torn_line_is_not_lost_with_it(kind: Any, tmp_path: Path) -> None:
    """A crash in the middle of an append leaves half a line at the end of the file; the next
    record starts a line of its own instead of being glued to the torn one (and lost with it)."""
    path = tmp_path / "records.jsonl"
    torn = json.dumps(record(1))[:25]
    path.write_text(json.dumps(record(0)) + "\n" + torn)
    kind(path).append(record(2))
    text = path.read_text().splitlines()
    assert text == [json.dumps(record(0)), torn, json.dumps(record(2), sort_keys=True)]
    assert list(kind(path).entries()) == [record(0), record(2)]


@pytest.mark.parametrize("kind", [AuditLog, Journal])
def test_a_write_cut_short_by_a_full_disk_stores_no_record_twice(kind: Any, tmp_path: Path) -> None:
    """Records kept while the disk was full go out together; when the disk takes only the first
    of them, the part written is undone, so the retry does not store that one a second time."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        path = disk / "records.jsonl"
        records = kind(path)
        filler = Filler(disk)
        filler.fill()
        assert records.append(record(1)) is False  # nothing fits
        block = os.statvfs(disk).f_frsize
        filler.leave(block)  # room for the first record, not for both
        assert records.append(block_sized(2, 2 * block)) is False
        assert path.read_bytes() == b""  # not the first record alone, nor half the second
        filler.free()
        assert records.flush() is True
        assert path.read_text().splitlines() == [
            json.dumps(r, sort_keys=True) for r in (record(1), block_sized(2, 2 * block))
        ]


@pytest.mark.parametrize("kind", [AuditLog, Journal])
def test_records_not_written_yet_are_read_after_the_stored_ones(kind: Any, tmp_path: Path) -> None:
    """While the disk is full, the daemon's own readers (a bundle's audit records, a report's
    history, the API) still see every record, in order."""
    records = kind(tmp_path / "records.jsonl")
    records.append(record(0))
    with open_files_exhausted():
        assert records.append(record(1)) is False
        assert records.append(record(2)) is False
    assert records.pending == 2
    assert list(records.entries()) == [record(0), record(1), record(2)]
    assert records.tail(limit=2) == [record(1), record(2)]
    assert records.tail(lambda r: r["n"] != 2) == [record(0), record(1)]
    assert records.tail(stop=lambda r: r["n"] < 1) == [record(1), record(2)]
