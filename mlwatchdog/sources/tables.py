"""Reading one table file (parquet, csv, jsonl) into a DataFrame; called by the CLI and sources."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from mlwatchdog.errors import InputError

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class TableError(InputError):
    """A table file that cannot be used. `reason` is a short token for metrics (unreadable,
    unknown_format, empty, truncated, missing_column, corrupt); `why` says it without the path."""

    def __init__(self, path: str | Path, reason: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.reason = reason
        self.why = why


def read_parquet(source: IO[bytes] | str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A parquet file (or its `columns`) as pd.read_parquet gives it, read in the calling thread.

    arrow's thread pools are left unused (its file reader, not the dataset scanner; to_pandas'
    threads off, which pandas < 3 cannot ask for): a pool thread still alive at interpreter exit
    aborts the process (apache/arrow#34314: SIGABRT, "terminate called without an active
    exception"; `mlwatchdog evaluate` hit it about once in 100 runs on a loaded machine). The
    files are small (a batch, a partition, a bundle's window) and the daemon's own threads
    already read them in parallel."""
    with pq.ParquetFile(source, pre_buffer=False) as file:
        if columns is not None:
            _require(columns, file.schema_arrow.names)  # the reader would leave them out
        table = file.read(
            columns=list(columns) if columns is not None else None,
            use_threads=False,
            use_pandas_metadata=True,
        )
    frame: pd.DataFrame = table.to_pandas(use_threads=False)
    return frame


# pandas' default float parsers are off in the last digit; exact parsing keeps the numbers a
# test sees identical to what was written, whatever the file format.
def _read_csv(source: IO[bytes], columns: Sequence[str] | None) -> pd.DataFrame:
    if columns is None:
        return pd.read_csv(source, float_precision="round_trip")
    wanted = set(columns)
    # A callable, not a list: pandas' message for a missing column is not the one we give.
    frame = pd.read_csv(source, float_precision="round_trip", usecols=lambda c: c in wanted)
    _require(columns, list(frame.columns))
    return frame[list(columns)]


def _read_jsonl(source: IO[bytes], columns: Sequence[str] | None) -> pd.DataFrame:
    # dtype=False: keep JSON's own types (pandas would turn 1.0 into 1 and "01" into 1).
    frame = pd.read_json(source, lines=True, precise_float=True, dtype=False)
    if columns is not None:
        _require(columns, list(frame.columns))
        frame = frame[list(columns)]
    return frame


class _MissingColumns(ValueError):
    pass


def _require(columns: Sequence[str], names: Sequence[str]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise _MissingColumns(f"no column(s) {missing} in the file (it has {list(names)})")


READERS: dict[str, Callable[[IO[bytes], Sequence[str] | None], pd.DataFrame]] = {
    "parquet": read_parquet,
    "csv": _read_csv,
    "jsonl": _read_jsonl,
}


def table_format(path: str | Path, declared: str | None = None) -> str:
    """The format of `path`: `declared` if given, else from its extension."""
    if declared is not None:
        return declared
    suffix = Path(str(path)).suffix.lower()
    if suffix not in FORMATS:
        raise TableError(
            path,
            "unknown_format",
            f"unknown table format {suffix!r}; use one of {sorted(FORMATS)} "
            "or declare `format:` on the source.",
        )
    return FORMATS[suffix]


def read_table(
    path: str | Path,
    columns: Sequence[str] | None = None,
    *,
    fs: Any = None,
    format: str | None = None,
) -> pd.DataFrame:
    """The table at `path` (on fsspec filesystem `fs`, else local), optionally only `columns`."""
    kind = table_format(path, format)
    try:
        if fs is None:
            if not Path(path).exists():
                raise InputError(f"{path}: no such file; check the path.")
            content = Path(path).read_bytes()
        else:
            with fs.open(path, "rb") as handle:
                content = handle.read()
    except OSError as exc:
        raise TableError(path, "unreadable", f"cannot be read: {first_line(exc)}") from exc
    return parse_table(content, path, columns, kind)


def parse_table(
    content: bytes, path: str | Path, columns: Sequence[str] | None, kind: str
) -> pd.DataFrame:
    """The table in `content` (the bytes of `path`, a `kind` file), optionally only `columns`.
    Raises TableError saying why it cannot be used: empty, cut short, a column missing, or
    anything the parser refuses (corrupt)."""
    if not content:
        raise TableError(path, "empty", f"an empty file, not a {kind} table (being written?)")
    if kind in ("csv", "jsonl") and _torn(content, kind):
        raise TableError(
            path, "truncated", "its last line is cut short (being written?); read once complete"
        )
    try:
        return READERS[kind](io.BytesIO(content), columns)
    except _MissingColumns as exc:
        raise TableError(path, "missing_column", str(exc)) from exc
    except Exception as exc:  # whatever the parser refuses: the file's content, not our bug
        message = first_line(exc).removeprefix("Could not open Parquet input source '<Buffer>': ")
        raise TableError(path, "corrupt", f"cannot be read as {kind}: {message}") from exc


def _torn(content: bytes, kind: str) -> bool:
    """A text file whose last line has no newline and is short of a whole record: fewer fields
    than the header (csv) or not a JSON value (jsonl). pandas would read "2026-03-1" as
    1 March, so such a line is never read. A whole last line without a newline is fine (hand-
    written files often end so); a cut inside the last csv field cannot be told apart."""
    if content.endswith(b"\n"):
        return False
    # Slices, not split(): a split would copy the whole file once more.
    last = content[content.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")
    if kind == "jsonl":
        if not last.strip():
            return False
        try:
            json.loads(last)
        except ValueError:
            return True
        return False
    end = content.find(b"\n")
    header = content[: end if end >= 0 else len(content)].decode("utf-8", errors="replace")
    return _fields(last) < _fields(header)


def _fields(line: str) -> int:
    return len(next(csv.reader([line.rstrip("\r")]), []))


def first_line(exc: BaseException) -> str:
    """An exception's message on one line of at most 200 characters (pyarrow's run long)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
