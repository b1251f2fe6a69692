"""The files source on real files: formats and exact values, the [now - window, now) window,
timestamps to UTC, partition pruning, hidden files, failures as statuses, filters, fsspec URLs,
and the Observer's reference cache."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

import fsspec  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import pytest

from mlwatchdog.core import DataStatus
from mlwatchdog.rules import FilesSource, parse_config
from mlwatchdog.sources.files import FilesReader, partition_dirs
from mlwatchdog.sources.observe import Observer

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
START = NOW - WINDOW
FORMATS = ["parquet", "csv", "jsonl"]
HOURLY = "dt=%Y-%m-%d/hour=%H"


def reader(url: str | Path, **options: Any) -> FilesReader:
    spec = FilesSource.model_validate({"type": "files", "url": str(url), **options})
    return FilesReader("live", spec)


def naive(*moments: datetime) -> list[datetime]:
    """UTC instants as naive datetimes (how many loggers write them)."""
    return [m.astimezone(UTC).replace(tzinfo=None) for m in moments]


def write(frame: pd.DataFrame, path: Path | str, fs: Any = None) -> str:
    """`frame` as parquet, csv or jsonl by `path`'s extension (on `fs`, else local)."""
    if fs is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    suffix = PurePosixPath(str(path)).suffix
    with (fs or fsspec.filesystem("file")).open(str(path), "wb") as handle:
        if suffix == ".parquet":
            frame.to_parquet(handle, index=False)
        elif suffix == ".csv":
            handle.write(frame.to_csv(index=False).encode())
        else:  # json.dumps writes floats exactly; pandas' to_json rounds to 10 digits
            for record in frame.to_dict(orient="records"):
                line = json.dumps(record, default=lambda v: v.isoformat())
                handle.write(line.encode() + b"\n")
    return str(path)


def window_read(source: FilesReader, columns: list[str], now: datetime = NOW, **kwargs: Any) -> Any:
    return source.read(columns, now - WINDOW, now, **kwargs)


# ------------------------------------------------------------------------- formats and values


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_right_dtypes_and_exact_floats(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(11)
    n = 60
    x = rng.normal(size=n) * 10.0 ** rng.integers(-8, 9, size=n)  # every magnitude
    x[:5] = [0.1, 1 / 3, 0.1 + 0.2, 1e-300, 2.0**53 + 2]
    frame = pd.DataFrame(
        {
            "timestamp": naive(*(START + timedelta(seconds=10 * i) for i in range(n))),
            "x": x,
            "whole": np.arange(n, dtype=float),  # floats that happen to be whole stay floats
            "count": np.arange(n, dtype=np.int64),
            "label": [["low", "mid", "high"][i % 3] for i in range(n)],
        }
    )
    path = write(frame, tmp_path / f"batch.{fmt}")
    read = window_read(reader(tmp_path), ["x", "whole", "count", "label"])
    assert read.status is DataStatus.OK, read.reason
    assert read.files == (path,)
    rows = read.frame
    assert len(rows) == n
    assert rows["x"].tolist() == x.tolist()  # bit for bit, not approximately
    assert rows["whole"].tolist() == frame["whole"].tolist()
    assert rows["count"].tolist() == list(range(n))
    assert rows["label"].tolist() == frame["label"].tolist()
    assert rows["x"].dtype == np.float64
    assert rows["whole"].dtype == np.float64
    assert rows["count"].dtype == np.int64
    assert pd.api.types.is_string_dtype(rows["label"])


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_typed_formats_keep_codes_that_look_like_numbers(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame(
        {
            "timestamp": naive(START, START + timedelta(minutes=1), START + timedelta(minutes=2)),
            "zip": ["01000", "007", "1"],  # categories, not numbers
        }
    )
    write(frame, tmp_path / f"batch.{fmt}")
    read = window_read(reader(tmp_path), ["zip"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["zip"].tolist() == ["01000", "007", "1"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_window_includes_its_start_and_excludes_now(tmp_path: Path, fmt: str) -> None:
    tick = timedelta(milliseconds=1)
    moments = [START - tick, START, START + tick, NOW - tick, NOW, NOW + timedelta(hours=1)]
    frame = pd.DataFrame({"timestamp": naive(*moments), "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    write(frame, tmp_path / f"batch.{fmt}")
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [2.0, 3.0, 4.0]


# -------------------------------------------------------------------------------- timestamps


def test_timezone_aware_parquet_is_converted_to_utc(tmp_path: Path) -> None:
    berlin, new_york = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
    inside = NOW - timedelta(minutes=10)  # 11:50Z
    frame = pd.DataFrame(
        {
            # 12:50 in Berlin is 11:50Z (inside); 13:30 in Berlin is 12:30Z (after now).
            "timestamp": pd.to_datetime(
                [inside.astimezone(berlin), (NOW + timedelta(minutes=30)).astimezone(berlin)]
            ),
            "x": [1.0, 2.0],
        }
    )
    write(frame, tmp_path / "berlin.parquet")
    other = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                [inside.astimezone(new_york), (START - timedelta(hours=1)).astimezone(new_york)]
            ),
            "x": [3.0, 4.0],
        }
    )
    write(other, tmp_path / "new_york.parquet")
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert sorted(read.frame["x"]) == [1.0, 3.0]


def test_naive_timestamps_are_taken_as_utc(tmp_path: Path) -> None:
    # A naive 11:50 is 11:50Z, inside; read as local time of any zone but UTC it would not be.
    frame = pd.DataFrame(
        {
            "timestamp": ["2026-03-10 11:50:00", "2026-03-10 12:50:00", "2026-03-10 10:50:00"],
            "x": [1.0, 2.0, 3.0],
        }
    )
    write(frame, tmp_path / "naive.csv")
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.0]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_timestamps_with_offsets_are_converted_to_utc(tmp_path: Path, fmt: str) -> None:
    stamps = [
        "2026-03-10T12:50:00+01:00",  # 11:50Z inside
        "2026-03-10T06:59:59.250000-05:00",  # 11:59:59.25Z inside
        "2026-03-10T12:00:00Z",  # now: outside
        "2026-03-10T11:50:00+01:00",  # 10:50Z outside
        "2026-03-10T11:45:00.000001+00:00",  # inside
    ]
    write(
        pd.DataFrame({"timestamp": stamps, "x": [1.0, 2.0, 3.0, 4.0, 5.0]}), tmp_path / f"t.{fmt}"
    )
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.0, 2.0, 5.0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_python_isoformat_with_and_without_fraction_in_one_file(tmp_path: Path, fmt: str) -> None:
    # datetime.isoformat() leaves out ".000000" when the microseconds are 0.
    moments = [START + timedelta(seconds=30, microseconds=123456), START + timedelta(minutes=1)]
    stamps = [m.isoformat() for m in moments]
    assert "." not in stamps[1]
    write(pd.DataFrame({"ts": stamps, "x": [1.0, 2.0]}), tmp_path / f"t.{fmt}")
    read = window_read(reader(tmp_path, timestamp_column="ts"), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("column", ["timestamp", "ts"])
@pytest.mark.parametrize("as_int", [False, True], ids=["float", "int"])
def test_numeric_timestamps_are_unix_seconds(
    tmp_path: Path, fmt: str, column: str, as_int: bool
) -> None:
    seconds = [START.timestamp() - 1, START.timestamp(), NOW.timestamp() - 1, NOW.timestamp()]
    if not as_int:
        seconds = [s + 0.5 for s in seconds[:1]] + seconds[1:]  # 0.5 s before start is outside
    values: list[float] | list[int] = [int(s) for s in seconds] if as_int else seconds
    write(pd.DataFrame({column: values, "x": [1.0, 2.0, 3.0, 4.0]}), tmp_path / f"t.{fmt}")
    read = window_read(reader(tmp_path, timestamp_column=column), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [2.0, 3.0]


# ------------------------------------------------------------------------- partition pruning

DAYS = [datetime(2026, 3, d, tzinfo=UTC) for d in (9, 10, 11)]


def hourly_tree(root: Path, valid: set[str]) -> dict[str, str]:
    """Three days of hourly partitions; only the `valid` ones hold readable parquet, every other
    one a corrupt file, so reading any of those would show (in the opens and set-asides)."""
    files = {}
    for day in DAYS:
        for hour in range(24):
            at = day + timedelta(hours=hour)
            directory = at.strftime(HOURLY)
            path = root / directory / "part-0.parquet"
            path.parent.mkdir(parents=True)
            if directory in valid:
                minutes = [at + timedelta(minutes=m) for m in (0, 15, 30, 45)]
                x = [float(m.day * 10000 + m.hour * 100 + m.minute) for m in minutes]
                write(pd.DataFrame({"timestamp": naive(*minutes), "x": x}), path)
            else:
                path.write_bytes(b"PAR1 this is not parquet")
            files[directory] = str(path)
    return files


def spy_opens(source: FilesReader, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    real_open = source.fs.open

    def spying_open(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(source.fs, "open", spying_open)
    return opened


@pytest.mark.parametrize(
    ("now", "expected_dirs", "expected_x"),
    [
        (datetime(2026, 3, 10, 12, 20, tzinfo=UTC), ["dt=2026-03-10/hour=12"], [101215.0]),
        (
            datetime(2026, 3, 10, 13, 5, tzinfo=UTC),
            ["dt=2026-03-10/hour=12", "dt=2026-03-10/hour=13"],
            [101300.0],
        ),
        (
            datetime(2026, 3, 11, 0, 10, tzinfo=UTC),
            ["dt=2026-03-10/hour=23", "dt=2026-03-11/hour=00"],
            [110000.0],
        ),
        # The next hour too: its files may hold the last rows of this one (late_files).
        (
            datetime(2026, 3, 10, 13, 0, tzinfo=UTC),
            ["dt=2026-03-10/hour=12", "dt=2026-03-10/hour=13"],
            [101245.0],
        ),
    ],
    ids=["inside an hour", "across an hour", "across midnight", "ends on the hour"],
)
def test_window_lists_and_opens_only_its_partitions(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    now: datetime,
    expected_dirs: list[str],
    expected_x: list[float],
) -> None:
    files = hourly_tree(tmp_path, set(expected_dirs))
    source = reader(tmp_path, partitioning=HOURLY)
    wanted = [files[d] for d in expected_dirs]
    assert source.files(now - WINDOW, now) == wanted
    opened = spy_opens(source, monkeypatch)
    read = window_read(source, ["x"], now=now)
    assert read.status is DataStatus.OK, read.reason
    assert read.files == tuple(wanted)
    assert sorted(opened) == wanted  # the 70 corrupt partitions were never opened
    assert read.frame["x"].tolist() == expected_x


def test_a_batch_filed_in_the_next_partition_is_read(tmp_path: Path) -> None:
    """A logger files a batch under the time it writes it: rows of 12:59 in hour=13."""
    late = tmp_path / "dt=2026-03-10/hour=13/part-0.parquet"
    late.parent.mkdir(parents=True)
    rows = [datetime(2026, 3, 10, 12, 59, 30, tzinfo=UTC), datetime(2026, 3, 10, 13, 0, tzinfo=UTC)]
    write(pd.DataFrame({"timestamp": naive(*rows), "x": [1.0, 2.0]}), late)
    end = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
    read = window_read(reader(tmp_path, partitioning=HOURLY), ["x"], now=end)
    assert read.status is DataStatus.OK and read.frame["x"].tolist() == [1.0]
    strict = reader(tmp_path, partitioning=HOURLY, late_files="0s")
    assert window_read(strict, ["x"], now=end).status is DataStatus.NO_DATA


def test_window_in_another_time_zone_prunes_by_utc(tmp_path: Path) -> None:
    files = hourly_tree(tmp_path, {"dt=2026-03-10/hour=12"})
    source = reader(tmp_path, partitioning=HOURLY)
    end = datetime(2026, 3, 10, 12, 20, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    assert source.files(end - WINDOW, end) == [files["dt=2026-03-10/hour=12"]]
    assert window_read(source, ["x"], now=end).frame["x"].tolist() == [101215.0]


def test_window_without_partitions_is_no_data_with_reason(tmp_path: Path) -> None:
    hourly_tree(tmp_path, set())
    source = reader(tmp_path, partitioning=HOURLY)
    read = window_read(source, ["x"], now=datetime(2026, 4, 1, tzinfo=UTC))
    assert read.status is DataStatus.NO_DATA
    assert read.frame is None
    assert "no files" in read.reason and str(tmp_path) in read.reason


H11, H12 = "dt=2026-03-10/hour=11", "dt=2026-03-10/hour=12"


@pytest.mark.parametrize(
    ("template", "start", "end", "expected"),
    [
        (HOURLY, "2026-03-10T11:50", "2026-03-10T12:05", [H11, H12]),
        (HOURLY, "2026-03-10T11:00", "2026-03-10T12:00", [H11]),
        (HOURLY, "2026-03-10T13:50+02:00", "2026-03-10T14:05+02:00", [H11, H12]),
        ("%Y/%m/%d", "2026-03-10T23:00", "2026-03-11T01:00", ["2026/03/10", "2026/03/11"]),
        ("month=%Y-%m", "2026-02-27T00:00", "2026-03-02T00:00", ["month=2026-02", "month=2026-03"]),
        ("%Y%m%d%H%M", "2026-03-10T11:58:30", "2026-03-10T12:00:30",
         ["202603101158", "202603101159", "202603101200"]),
    ],
    ids=["hours", "end excluded", "non-UTC bounds", "days", "months", "minutes"],
)  # fmt: skip
def test_partition_dirs(template: str, start: str, end: str, expected: list[str]) -> None:
    def utc(text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    assert partition_dirs(template, utc(start), utc(end)) == expected


# ------------------------------------------------------------------------------- hidden files


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    frame = pd.DataFrame({"timestamp": naive(START, NOW - timedelta(minutes=1)), "x": [1.0, 2.0]})
    data = write(frame, tmp_path / "part-0.parquet")
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / ".part-1.parquet.crc").write_bytes(b"garbage")
    (tmp_path / "_metadata").write_bytes(b"garbage")
    write(frame, tmp_path / ".part-2.parquet")  # being written
    write(frame, tmp_path / "_temporary" / "0" / "part-3.parquet")  # Spark, mid-commit
    write(frame, tmp_path / ".ipynb_checkpoints" / "part-0-checkpoint.csv")  # a stale copy
    source = reader(tmp_path)
    assert source.files(START, NOW) == [data]
    read = window_read(source, ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.0, 2.0]  # no row counted twice


def test_hidden_files_are_skipped_in_partitions_and_globs(tmp_path: Path) -> None:
    directory = tmp_path / "dt=2026-03-10" / "hour=11"
    frame = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [7.0]})
    data = write(frame, directory / "part-0.parquet")
    (directory / "_SUCCESS").write_bytes(b"")
    (directory / ".part-1.parquet").write_bytes(b"half written")
    (directory / "_temporary" / "0").mkdir(parents=True)
    (directory / "_temporary" / "0" / "part-2.parquet").write_bytes(b"half written")
    source = reader(tmp_path, partitioning=HOURLY)
    assert source.files(START, NOW) == [data]
    assert window_read(source, ["x"]).frame["x"].tolist() == [7.0]
    glob = reader(f"{directory}/*.parquet")
    assert glob.files() == [data]


def test_a_hidden_folder_above_the_url_is_fine(tmp_path: Path) -> None:
    root = tmp_path / ".demo" / "live"  # like the bundled rules.yaml's .demo/live
    frame = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [7.0]})
    data = write(frame, root / "part-0.parquet")
    source = reader(root)
    assert source.files() == [data]
    assert window_read(source, ["x"]).status is DataStatus.OK


# ---------------------------------------------------------------------- failures are statuses


def test_empty_window_is_no_data_with_a_reason(tmp_path: Path) -> None:
    frame = pd.DataFrame({"timestamp": naive(START - timedelta(hours=1)), "x": [1.0]})
    path = write(frame, tmp_path / "old.parquet")
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.NO_DATA
    assert read.frame is None
    assert "no rows" in read.reason and "1 file(s)" in read.reason
    assert read.files == (path,)


def test_empty_folder_is_no_data_naming_the_url(tmp_path: Path) -> None:
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.NO_DATA
    assert str(tmp_path) in read.reason


CORRUPT: dict[str, tuple[bytes, str]] = {  # content, the reason it is set aside for
    "parquet": (b"PAR1\x00\x01 truncated", "corrupt"),
    "csv": (b"", "empty"),
    "jsonl": (b'{"timestamp": "2026-03-10T11:50:00", "x": 1.0}\n{"timestamp": \n', "corrupt"),
}


def set_aside(read: Any) -> list[tuple[str, str, int]]:
    return [(a.what, a.reason, a.count) for a in read.set_aside]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_corrupt_file_is_set_aside_and_named_and_the_rest_is_read(
    tmp_path: Path, fmt: str
) -> None:
    good = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [1.0]})
    write(good, tmp_path / f"a-good.{fmt}")
    bad = tmp_path / f"b-bad.{fmt}"
    content, reason = CORRUPT[fmt]
    bad.write_bytes(content)
    write(good.assign(x=[2.0]), tmp_path / f"c-good.{fmt}")
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.0, 2.0]  # every good file, none of the bad one
    assert set_aside(read) == [("file", reason, 1)]
    assert read.set_aside[0].detail.startswith(f"{bad}: ")
    assert read.reason.startswith(f"2 rows; 1 file set aside ({reason}: {bad}: ")
    assert "\n" not in read.reason


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_window_of_only_corrupt_files_is_an_error_naming_each(tmp_path: Path, fmt: str) -> None:
    content, reason = CORRUPT[fmt]
    first, second = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    first.write_bytes(content)
    second.write_bytes(content + b"\n")  # not a copy of the first
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.ERROR
    assert read.frame is None  # not half a window
    assert [a.what for a in read.set_aside] == ["file", "file"]
    assert str(first) in read.reason and str(second) in read.reason
    assert fmt in read.reason or reason == "empty"


@pytest.mark.parametrize(
    ("fmt", "cut_at"),
    [("csv", b"2026-03-1"), ("csv", b"2026-03-10T11:59:00"), ("jsonl", b'{"timestamp": "20')],
    ids=["csv in a timestamp", "csv before a field", "jsonl"],
)
def test_a_file_cut_mid_line_is_set_aside_until_it_is_complete(
    tmp_path: Path, fmt: str, cut_at: bytes
) -> None:
    """A file being written: its last line cut short. pandas would read "2026-03-1" as 1 March
    and a row without its last field with NaN: no row of it is read until it is whole."""
    write(
        pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=2)), "x": [1.0]}),
        tmp_path / f"a.{fmt}",
    )
    stamps = naive(*(NOW - timedelta(minutes=m) for m in (5, 4, 1)))
    whole = tmp_path / ".scratch" / f"whole.{fmt}"  # a hidden folder: not read
    write(pd.DataFrame({"timestamp": stamps, "x": [7.0, 8.0, 9.0]}), whole)
    content = whole.read_bytes()
    last = content.rstrip(b"\n").rfind(b"\n") + 1
    assert content[last:].startswith(cut_at[:4])
    being_written = tmp_path / f"b.{fmt}"
    being_written.write_bytes(content[:last] + cut_at)
    source = reader(tmp_path)
    read = window_read(source, ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.0]
    assert set_aside(read) == [("file", "truncated", 1)]
    assert str(being_written) in read.reason and "cut short" in read.reason
    being_written.write_bytes(content)  # the writer finished
    read = window_read(source, ["x"])
    assert read.frame["x"].tolist() == [1.0, 7.0, 8.0, 9.0] and read.set_aside == ()


def test_a_last_line_without_newline_but_whole_is_read(tmp_path: Path) -> None:
    """Hand-written files often end without a newline: a whole last record is kept."""
    (tmp_path / "a.csv").write_bytes(
        b"timestamp,x\n2026-03-10T11:50:00,1.5\n2026-03-10T11:51:00,2.5"
    )
    (tmp_path / "b.jsonl").write_bytes(b'{"timestamp": "2026-03-10T11:52:00", "x": 3.5}')
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.5, 2.5, 3.5] and read.set_aside == ()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_duplicate_file_is_counted_once_naming_both(tmp_path: Path, fmt: str) -> None:
    stamps = naive(*(NOW - timedelta(minutes=m) for m in (3, 2, 1)))
    original = write(
        pd.DataFrame({"timestamp": stamps, "x": [1.0, 2.0, 3.0]}), tmp_path / f"a.{fmt}"
    )
    copy = tmp_path / "retry" / f"a-copy.{fmt}"  # a retried upload, elsewhere in the tree
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    other = write(pd.DataFrame({"timestamp": stamps[:1], "x": [1.0]}), tmp_path / f"c.{fmt}")
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.0, 2.0, 3.0, 1.0]  # the copy once; equal rows stay
    assert set_aside(read) == [("file", "duplicate", 1)]
    assert read.set_aside[0].detail == f"{copy}: same bytes as {original}"
    assert str(copy) in read.reason and original in read.reason
    assert other in read.files


def test_files_without_rows_are_no_duplicates(tmp_path: Path) -> None:
    """Empty hours of a logger are the same bytes (a header): nothing to count twice."""
    empty = pd.DataFrame({"timestamp": pd.Series([], dtype=str), "x": pd.Series([], dtype=float)})
    write(empty, tmp_path / "dt=2026-03-10/hour=10/part.csv")
    write(empty, tmp_path / "dt=2026-03-10/hour=11/part.csv")
    row = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [4.0]})
    write(row, tmp_path / "dt=2026-03-10/hour=11/more.csv")
    read = reader(tmp_path).read(["x"])
    assert read.status is DataStatus.OK and read.set_aside == ()


def test_a_file_is_hashed_once_per_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[int] = []
    real_sha256 = hashlib.sha256

    def counting_sha256(data: bytes) -> Any:
        hashed.append(len(data))
        return real_sha256(data)

    monkeypatch.setattr("mlwatchdog.sources.files.hashlib.sha256", counting_sha256)
    row = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [1.0]})
    first = write(row, tmp_path / "a.parquet")
    write(row.assign(x=[2.0]), tmp_path / "b.parquet")
    source = reader(tmp_path)
    for _ in range(3):
        assert window_read(source, ["x"]).frame["x"].tolist() == [1.0, 2.0]
    assert len(hashed) == 2
    write(row.assign(x=[5.0]), first)  # a new version is read and hashed again
    assert window_read(source, ["x"]).frame["x"].tolist() == [5.0, 2.0]
    assert len(hashed) == 3


def test_a_corrupt_file_is_not_read_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [1.0]})
    write(row, tmp_path / "a.parquet")
    bad = tmp_path / "b.parquet"
    bad.write_bytes(b"PAR1 not yet")
    source = reader(tmp_path)
    opened = spy_opens(source, monkeypatch)
    assert set_aside(window_read(source, ["x"])) == [("file", "corrupt", 1)]
    assert set_aside(window_read(source, ["x"])) == [("file", "corrupt", 1)]
    assert sorted(opened) == [str(tmp_path / "a.parquet"), str(bad)]
    write(row.assign(x=[2.0]), bad)
    read = window_read(source, ["x"])
    assert read.frame["x"].tolist() == [1.0, 2.0] and read.set_aside == ()


def test_a_file_that_cannot_be_opened_is_set_aside_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network error or a file gone since the listing: set aside, opened again next time."""
    row = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [1.0]})
    write(row, tmp_path / "a.parquet")
    flaky = write(row.assign(x=[2.0]), tmp_path / "b.parquet")
    source = reader(tmp_path)
    real_open = source.fs.open
    failing = [True]

    def open_or_fail(path: str, *args: Any, **kwargs: Any) -> Any:
        if str(path) == flaky and failing[0]:
            raise ConnectionResetError("connection reset by peer")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(source.fs, "open", open_or_fail)
    read = window_read(source, ["x"])
    assert read.frame["x"].tolist() == [1.0]
    assert set_aside(read) == [("file", "unreadable", 1)]
    assert f"{flaky}: connection reset by peer" in read.reason
    failing[0] = False
    assert window_read(source, ["x"]).frame["x"].tolist() == [1.0, 2.0]


def test_a_file_of_unknown_format_is_set_aside(tmp_path: Path) -> None:
    write(
        pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [1.0]}),
        tmp_path / "a.csv",
    )
    (tmp_path / "README.txt").write_text("rows of the model's inputs, one file per hour\n")
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK and read.frame["x"].tolist() == [1.0]
    assert set_aside(read) == [("file", "unknown_format", 1)]
    assert "'.txt'" in read.reason


def test_a_reason_names_the_first_five_set_aside_and_counts_the_rest(tmp_path: Path) -> None:
    write(
        pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [1.0]}),
        tmp_path / "a.csv",
    )
    for i in range(40):
        (tmp_path / f"bad-{i:02}.parquet").write_bytes(b"PAR1 %d" % i)
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK and len(read.set_aside) == 40
    assert "bad-04.parquet" in read.reason and "bad-05.parquet" not in read.reason
    assert read.reason.endswith("; 35 more set aside")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_row_with_a_bad_timestamp_is_dropped_and_counted(tmp_path: Path, fmt: str) -> None:
    stamps = ["2026-03-10T11:50:00", "not a time", "2026-03-10T11:51:00", "2026-03-10T11:52:00.5"]
    path = write(
        pd.DataFrame({"timestamp": stamps, "x": [1.0, 2.0, 3.0, 4.0]}), tmp_path / f"a.{fmt}"
    )
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.0, 3.0, 4.0]
    assert set_aside(read) == [("row", "bad_timestamp", 1)] and read.set_aside[0].detail == path
    assert read.reason == f"3 rows; 1 row set aside (bad_timestamp: {path})"


def test_numeric_timestamps_beyond_pandas_range_are_bad_rows(tmp_path: Path) -> None:
    seconds = [NOW.timestamp() - 60, 1e20, float("nan"), NOW.timestamp() - 30]
    write(pd.DataFrame({"timestamp": seconds, "x": [1.0, 2.0, 3.0, 4.0]}), tmp_path / "a.parquet")
    read = window_read(reader(tmp_path), ["x"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == [1.0, 4.0]
    assert set_aside(read) == [("row", "bad_timestamp", 2)]


@pytest.mark.filterwarnings("ignore:Could not infer format:UserWarning")
def test_unparseable_timestamps_are_an_error_naming_the_column(tmp_path: Path) -> None:
    path = write(pd.DataFrame({"ts": ["yesterday", "soon"], "x": [1.0, 2.0]}), tmp_path / "a.csv")
    read = window_read(reader(tmp_path, timestamp_column="ts"), ["x"])
    assert read.status is DataStatus.ERROR
    assert path in read.reason and "'ts'" in read.reason and "not a timestamp" in read.reason
    assert set_aside(read) == [("file", "bad_timestamp", 1)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_timestamp_column_is_an_error_naming_it(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame({"time": naive(NOW - timedelta(minutes=1)), "x": [1.0]})
    path = write(frame, tmp_path / f"a.{fmt}")
    read = window_read(reader(tmp_path, timestamp_column="event_time"), ["x"])
    assert read.status is DataStatus.ERROR
    assert path in read.reason
    assert "'event_time'" in read.reason
    assert "\n" not in read.reason  # one line, not a dump of the file's internal schema
    assert set_aside(read) == [("file", "missing_column", 1)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_feature_column_is_an_error_naming_it(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [1.0]})
    path = write(frame, tmp_path / f"a.{fmt}")
    read = window_read(reader(tmp_path), ["x", "income"])
    assert read.status is DataStatus.ERROR
    assert path in read.reason
    assert "'income'" in read.reason
    assert "\n" not in read.reason
    assert set_aside(read) == [("file", "missing_column", 1)]
    # Beside a file that has it: that file is read, this one set aside.
    full = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=2)), "x": [2.0], "income": 3.0})
    write(full, tmp_path / f"b.{fmt}")
    read = window_read(reader(tmp_path), ["x", "income"])
    assert read.status is DataStatus.OK, read.reason
    assert read.frame[["x", "income"]].values.tolist() == [[2.0, 3.0]]
    assert set_aside(read) == [("file", "missing_column", 1)] and path in read.reason


def test_fixed_file_without_timestamp_column_cannot_be_windowed(tmp_path: Path) -> None:
    write(pd.DataFrame({"x": [1.0, 2.0]}), tmp_path / "ref.parquet")
    source = reader(tmp_path / "ref.parquet", timestamp_column=None)
    every = source.read(["x"]).frame
    assert every is not None and every["x"].tolist() == [1.0, 2.0]  # every row
    read = window_read(source, ["x"])
    assert read.status is DataStatus.ERROR
    assert "timestamp_column" in read.reason


# ------------------------------------------------------------------------------------ filters

FILTERED = pd.DataFrame(
    {
        "timestamp": naive(*(START + timedelta(minutes=m) for m in range(5))),
        "x": [0.0, 1.0, 2.0, 3.0, 4.0],
        "region": ["eu", "us", "apac", "eu", "us"],
        "flag": [True, False, True, True, False],
        "n": [1, 2, 3, 2, 1],
    }
)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"region": "eu"}, [0.0, 3.0]),
        ({"region": ["eu", "apac"]}, [0.0, 2.0, 3.0]),
        ({"region": "eu", "flag": True}, [0.0, 3.0]),
        ({"flag": False}, [1.0, 4.0]),
        ({"n": 2}, [1.0, 3.0]),
        ({"n": [1, 3], "region": "us"}, [4.0]),
    ],
)
def test_filters_keep_matching_rows(
    tmp_path: Path, filters: dict[str, Any], expected: list[float]
) -> None:
    write(FILTERED, tmp_path / "a.parquet")
    read = window_read(reader(tmp_path), ["x"], filters=filters)
    assert read.status is DataStatus.OK, read.reason
    assert read.frame["x"].tolist() == expected


def test_filter_matching_nothing_is_no_data(tmp_path: Path) -> None:
    write(FILTERED, tmp_path / "a.parquet")
    read = window_read(reader(tmp_path), ["x"], filters={"region": "mars"})
    assert read.status is DataStatus.NO_DATA
    assert read.frame is None


def test_filters_from_rules_yaml_apply_to_observed_samples(tmp_path: Path) -> None:
    write(FILTERED, tmp_path / "live" / "a.csv")
    write(FILTERED.drop(columns="timestamp"), tmp_path / "reference.parquet")
    config = parse_config(
        RULES.format(root=tmp_path, extra="      filters: {region: [eu, apac], flag: true}\n"),
        env={},
    )
    observation = Observer(config).observe(config.targets[0], NOW)
    assert observation.samples_status is DataStatus.OK, observation.samples_reason
    assert observation.samples["x"].tolist() == [0.0, 2.0, 3.0]


# ------------------------------------------------------------------------------ fsspec memory://


@pytest.fixture
def memory_root() -> Iterator[str]:
    fs = fsspec.filesystem("memory")
    root = f"memory://mlwatchdog-test-{uuid.uuid4().hex}"
    yield root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_memory_url_reads_through_the_same_code_path(
    memory_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = fsspec.filesystem("memory")
    now = datetime(2026, 3, 10, 12, 20, tzinfo=UTC)
    inside = pd.DataFrame({"timestamp": naive(now - timedelta(minutes=5)), "x": [0.1]})
    write(inside, f"{memory_root}/live/dt=2026-03-10/hour=12/a.parquet", fs)
    write(inside.assign(x=[0.2]), f"{memory_root}/live/dt=2026-03-10/hour=12/b.csv", fs)
    fs.pipe(f"{memory_root}/live/dt=2026-03-10/hour=12/_SUCCESS", b"")
    fs.pipe(f"{memory_root}/live/dt=2026-03-10/hour=11/corrupt.parquet", b"not parquet")
    source = reader(f"{memory_root}/live", partitioning=HOURLY)
    opened = spy_opens(source, monkeypatch)
    read = window_read(source, ["x"], now=now)
    assert read.status is DataStatus.OK, read.reason
    assert sorted(read.frame["x"]) == [0.1, 0.2]
    assert [p.rsplit("/", 1)[1] for p in read.files] == ["a.parquet", "b.csv"]
    assert all("hour=12" in p for p in opened)


def test_memory_url_errors_are_statuses(memory_root: str) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{memory_root}/live/a.parquet", b"not parquet")
    read = window_read(reader(f"{memory_root}/live"), ["x"])
    assert read.status is DataStatus.ERROR
    assert "a.parquet" in read.reason


# ----------------------------------------------------------------------- observer: reference cache

RULES = """\
sources:
  live: {{type: files, url: "{root}/live"}}
  training: {{type: files, url: "{root}/reference.parquet", timestamp_column: null}}
targets:
  - name: model
    samples:
      source: live
{extra}    reference: {{source: training}}
    columns:
      features: {{x: numeric}}
    checks:
      - {{name: drift, type: drift, test: ks}}
    verify: {{window: 30m}}
"""


def reference_frame(seed: int, n: int = 500) -> pd.DataFrame:
    return pd.DataFrame({"x": np.random.default_rng(seed).normal(size=n)})


@pytest.fixture
def observed(tmp_path: Path) -> tuple[Observer, Callable[[], Any], Path]:
    live = pd.DataFrame({"timestamp": naive(NOW - timedelta(minutes=1)), "x": [0.5]})
    write(live, tmp_path / "live" / "a.parquet")
    reference = tmp_path / "reference.parquet"
    reference_frame(1).to_parquet(reference, index=False)
    config = parse_config(RULES.format(root=tmp_path, extra=""), env={})
    observer = Observer(config)

    def observe() -> Any:
        return observer.observe(config.targets[0], NOW)

    return observer, observe, reference


def test_reference_is_built_once_while_its_file_is_unchanged(
    observed: tuple[Observer, Callable[[], Any], Path], tmp_path: Path
) -> None:
    observer, observe, _ = observed
    first = observe()
    assert first.reference_status is DataStatus.OK, first.reference_reason
    assert first.samples_status is DataStatus.OK, first.samples_reason
    assert observer.reference_builds == 1
    # New live data does not touch the reference.
    write(
        pd.DataFrame({"timestamp": naive(NOW - timedelta(seconds=5)), "x": [0.7]}),
        tmp_path / "live" / "b.parquet",
    )
    for _ in range(3):
        again = observe()
        assert again.reference is first.reference
        assert again.reference_status is DataStatus.OK
    assert len(again.samples) == 2
    assert observer.reference_builds == 1


def test_reference_is_rebuilt_when_its_file_is_rewritten(
    observed: tuple[Observer, Callable[[], Any], Path],
) -> None:
    observer, observe, reference = observed
    first = observe()
    reference_frame(2).to_parquet(reference, index=False)
    second = observe()
    assert observer.reference_builds == 2
    assert second.reference is not first.reference
    assert second.reference.fingerprint != first.reference.fingerprint
    assert observe().reference is second.reference
    assert observer.reference_builds == 2


def test_reference_is_rebuilt_when_its_file_is_touched(
    observed: tuple[Observer, Callable[[], Any], Path],
) -> None:
    observer, observe, reference = observed
    observe()
    later = reference.stat().st_mtime + 60
    os.utime(reference, (later, later))
    observe()
    assert observer.reference_builds == 2


def test_reference_on_memory_url_is_rebuilt_when_rewritten_with_the_same_size(
    memory_root: str,
) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{memory_root}/live/a.csv", b"timestamp,x\n2026-03-10T11:59:00,0.5\n")
    fs.pipe(f"{memory_root}/reference.csv", b"x\n" + b"".join(b"1.%d\n" % i for i in range(9)))
    text = RULES.format(root=memory_root, extra="").replace("reference.parquet", "reference.csv")
    config = parse_config(text, env={})
    observer = Observer(config)
    first = observer.observe(config.targets[0], NOW)
    assert first.reference_status is DataStatus.OK, first.reference_reason
    fs.pipe(f"{memory_root}/reference.csv", b"x\n" + b"".join(b"2.%d\n" % i for i in range(9)))
    second = observer.observe(config.targets[0], NOW)
    assert observer.reference_builds == 2
    assert first.reference is not None and second.reference is not None
    assert second.reference.fingerprint != first.reference.fingerprint


def test_a_moving_window_opens_only_new_or_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon re-reads the same hour folder every interval: unchanged files come from the
    reader's cache, a new file is opened once, and a rewritten file is read again."""
    folder = tmp_path / "dt=2026-03-10" / "hour=11"  # the window is [11:45, 12:00)
    stamp = naive(NOW - timedelta(minutes=3))
    first = write(pd.DataFrame({"timestamp": stamp, "x": [1.0]}), folder / "a.parquet")
    source = reader(tmp_path, partitioning=HOURLY)
    opened = spy_opens(source, monkeypatch)  # (the local filesystem is shared: writes count too)
    assert window_read(source, ["x"]).frame["x"].tolist() == [1.0]
    assert window_read(source, ["x"]).frame["x"].tolist() == [1.0]
    assert opened == [first]
    second = write(pd.DataFrame({"timestamp": stamp, "x": [2.0]}), folder / "b.parquet")
    opened.clear()
    assert window_read(source, ["x"]).frame["x"].tolist() == [1.0, 2.0]
    assert opened == [second]
    write(pd.DataFrame({"timestamp": stamp, "x": [5.0]}), first)
    opened.clear()
    assert window_read(source, ["x"]).frame["x"].tolist() == [5.0, 2.0]
    assert opened == [first]


# ------------------------------------------------------------------- one reader, many threads


def test_one_reader_hammered_from_threads_reads_what_a_fresh_reader_reads(tmp_path: Path) -> None:
    """The scheduler's threads share one reader: 16 of them read overlapping windows of two
    column sets through a cache so small that nearly every read evicts, while new files land.
    Every read holds exactly the rows a fresh single-threaded reader finds in the files it
    listed, and the cache's byte count is the sum of its entries, never below 0."""
    hours = [datetime(2026, 3, 10, h, tzinfo=UTC) for h in (10, 11)]
    numbered: dict[str, int] = {}  # path -> the file's number (its rows' `f`)

    def add_file(number: int, folder: Path) -> None:
        hour = hours[number % 2]
        stamps = [hour + timedelta(minutes=(number * 7 + 3 * i) % 60) for i in range(12)]
        frame = pd.DataFrame(
            {"timestamp": naive(*stamps), "x": np.arange(12) + 100.0 * number, "f": number}
        )
        final = folder / hour.strftime(HOURLY) / f"part-{number:03}.parquet"
        scratch = final.parent / f".part-{number:03}.tmp.parquet"  # hidden until renamed
        write(frame, scratch)
        os.replace(scratch, final)  # lands whole, as object stores and careful writers do
        numbered[str(final)] = number

    for number in range(6):
        add_file(number, tmp_path)
    source = reader(tmp_path, partitioning=HOURLY, late_files="0s")
    source.cache_bytes = 4_000  # a few files: nearly every read evicts
    ends = [datetime(2026, 3, 10, 10, 40, tzinfo=UTC) + timedelta(minutes=10 * i) for i in range(8)]
    column_sets = [["x", "f"], ["f", "x"]]  # two cache keys for each file
    seen: list[tuple[datetime, list[str], tuple[str, ...], pd.DataFrame]] = []
    errors: list[BaseException] = []
    accounting: list[tuple[int, int]] = []
    start_line = threading.Barrier(17)
    reads = 5  # per thread

    def hammer(worker: int) -> None:
        try:
            start_line.wait()
            for i in range(reads):
                end = ends[(worker + i) % len(ends)]
                columns = column_sets[(worker + i) % 2]
                read = source.read(columns, end - timedelta(minutes=30), end)
                assert read.status is DataStatus.OK, read.reason
                seen.append((end, columns, read.files, read.frame))
                with source._lock:
                    sizes = sum(entry.size for entry in source._cache.values())
                    accounting.append((source._cache_bytes, sizes))
        except BaseException as exc:  # reported by the test, in its thread
            errors.append(exc)

    def land_files() -> None:
        start_line.wait()
        for number in range(6, 16):
            add_file(number, tmp_path)

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(16)]
    threads.append(threading.Thread(target=land_files))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors[0]
    assert len(seen) == 16 * reads
    assert all(counted == held >= 0 for counted, held in accounting), accounting[:5]
    assert source._cache_bytes == sum(e.size for e in source._cache.values()) >= 0
    assert len(source._cache) >= 1  # it held entries, and evicted the rest
    fresh = reader(tmp_path, partitioning=HOURLY, late_files="0s")
    everything = {
        (end, tuple(columns)): fresh.read(columns, end - timedelta(minutes=30), end).frame
        for end in ends
        for columns in column_sets
    }
    assert {len(frame) for frame in everything.values()} != {0}
    for end, columns, files, frame in seen:
        listed = {numbered[path] for path in files}
        expected = everything[(end, tuple(columns))]
        expected = expected[expected["f"].isin(listed)].reset_index(drop=True)
        pd.testing.assert_frame_equal(frame, expected)


# ------------------------------------------------------------------- incremental windows


def test_a_sliding_window_read_incrementally_equals_a_full_re_read(tmp_path: Path) -> None:
    """One reader kept across 40 evaluations a minute apart (as the daemon keeps it: files
    already read come from its cache, rows behind the window are dropped) returns, every
    time, bit for bit what a fresh reader reading every file returns, while files arrive
    (some in time order, some not), arrive late into an earlier folder, are rewritten, deleted
    and copied; its cache holds only rows the windows can still need."""
    rng = np.random.default_rng(16)
    source = reader(tmp_path, partitioning=HOURLY)
    begin = datetime(2026, 3, 10, 10, 50, tzinfo=UTC)
    written: list[Path] = []

    def land(at: datetime, name: str, ordered: bool = True) -> Path:
        offsets = rng.uniform(0, 60, 20)
        offsets[-1] = 30.0  # a row on the half minute: a window's first instant, 15 minutes on
        stamps = [
            at + timedelta(seconds=float(s)) for s in (sorted(offsets) if ordered else offsets)
        ]
        frame = pd.DataFrame({"timestamp": naive(*stamps), "x": rng.normal(size=20), "n": 1})
        path = tmp_path / at.strftime(HOURLY) / f"{name}.parquet"
        write(frame, path)
        written.append(path)
        return path

    compared = 0
    for minute in range(40):
        now = begin + timedelta(minutes=minute, seconds=30)  # windows cut files in two
        minute_ago = begin + timedelta(minutes=minute - 1)  # a file per whole minute
        land(minute_ago, f"part-{minute:03}", ordered=minute % 3 != 0)
        if minute % 7 == 3:  # late: rows of 12 minutes ago, filed in that minute's folder
            land(minute_ago - timedelta(minutes=11), f"late-{minute:03}", ordered=False)
        if minute % 9 == 4 and len(written) > 5:  # deleted
            written.pop(-4).unlink()
        if minute % 10 == 6:  # rewritten in place, with other rows
            target = written[-3]
            write(pd.read_parquet(target).assign(x=rng.normal(size=20)), target)
        if minute == 20:  # a copy of a file: set aside as a duplicate by both
            shutil.copy(written[-2], written[-2].with_name("copy.parquet"))
        incremental = window_read(source, ["x", "n"], now)
        full = window_read(reader(tmp_path, partitioning=HOURLY), ["x", "n"], now)
        assert incremental.status is full.status is DataStatus.OK, full.reason
        pd.testing.assert_frame_equal(incremental.frame, full.frame, check_exact=True)
        assert (incremental.reason, incremental.files) == (full.reason, full.files)
        assert incremental.set_aside == full.set_aside
        # And what the files hold, read here with pandas alone: the rows of [start, now).
        start, set_aside = now - WINDOW, {a.detail.split(":")[0] for a in full.set_aside}
        parts = [pd.read_parquet(p) for p in full.files if p not in set_aside]
        rows = pd.concat(parts, ignore_index=True)
        rows["timestamp"] = pd.to_datetime(rows["timestamp"], utc=True)
        rows = rows[(rows["timestamp"] >= start) & (rows["timestamp"] < now)]
        pd.testing.assert_frame_equal(
            full.frame, rows[["x", "n", "timestamp"]].reset_index(drop=True), check_exact=True
        )
        compared += 1
        held = [e for e in source._cache.values() if e.problem is None and not e.behind]
        # Nothing held whose rows all lie before the window (15 minutes, 1 file a minute, the
        # late ones and the file across the edge: about 20, never the whole run's files).
        assert len(held) <= 22, len(held)
        # And a file the window passed keeps its bounds, not its rows.
        for entry in source._cache.values():
            if entry.behind:
                assert (entry.columns, entry.stamps) == ((), None)
    assert compared == 40


def test_a_kept_reader_holds_about_its_files_values_and_nothing_of_files_passed(
    tmp_path: Path,
) -> None:
    """What a reader keeps between windows (measured by tracemalloc: what goes when the reader
    goes) is about the bytes of its cached files' values, not a pandas frame per file, and a
    file the sliding window has passed costs about a kilobyte (its bounds), not its rows."""
    rng = np.random.default_rng(7)
    begin = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    rows, columns = 400, ["a", "b", "c", "d"]
    values = rows * (len(columns) + 1) * 8  # a file's values: 4 floats and a timestamp a row
    for minute in range(40):  # one file a minute, all in one hourly folder
        at = begin + timedelta(minutes=minute)
        offsets = np.sort(rng.uniform(0, 60, rows))
        stamps = naive(*(at + timedelta(seconds=float(s)) for s in offsets))
        frame = pd.DataFrame({"timestamp": stamps, **{c: rng.normal(size=rows) for c in columns}})
        write(frame, tmp_path / at.strftime(HOURLY) / f"part-{minute:03}.parquet")
    window_read(reader(tmp_path, partitioning=HOURLY), columns, begin)  # pandas' lazy imports

    def held_after(minutes: int) -> tuple[int, int, int]:
        """Bytes a reader holds after sliding `minutes` windows, its files with rows, passed."""
        gc.collect()
        tracemalloc.start()
        try:
            source = reader(tmp_path, partitioning=HOURLY)
            for minute in range(minutes):
                now = begin + WINDOW + timedelta(minutes=minute, seconds=30)
                assert window_read(source, columns, now).status is DataStatus.OK
            gc.collect()
            with_reader = tracemalloc.get_traced_memory()[0]
            passed = sum(entry.behind for entry in source._cache.values())
            kept = len(source._cache) - passed
            del source
            gc.collect()
            return with_reader - tracemalloc.get_traced_memory()[0], kept, passed
        finally:
            tracemalloc.stop()

    held, kept, passed = held_after(1)  # every file of the hour is listed, none passed
    assert (kept, passed) == (40, 0)
    assert held < kept * (1.25 * values + 2048), held / kept
    held, kept, passed = held_after(25)  # 24 minutes' files passed
    assert passed == 24
    assert held < kept * (1.25 * values + 2048) + passed * 2048, (held, kept, passed)
