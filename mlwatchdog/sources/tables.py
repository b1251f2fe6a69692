"""Reading one table file (parquet, csv, jsonl) into a DataFrame; called by the CLI and sources."""

from __future__ import annotations

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


# pandas' default float parsers are off in the last digit; exact parsing keeps the numbers a
# test sees identical to what was written, whatever the file format.
def _read_parquet(source: IO[bytes] | Path, columns: Sequence[str] | None) -> pd.DataFrame:
    try:
        return pd.read_parquet(source, columns=list(columns) if columns is not None else None)
    except ValueError as exc:
        if columns is None:
            raise
        # pyarrow names a missing column amid a dump of its internal schema: say it plainly.
        try:
            if not isinstance(source, Path):
                source.seek(0)
            names = pq.read_schema(source).names
        except (ValueError, OSError):
            raise exc from None
        _require(columns, names)
        raise


def _read_csv(source: IO[bytes] | Path, columns: Sequence[str] | None) -> pd.DataFrame:
    return pd.read_csv(
        source, float_precision="round_trip", usecols=list(columns) if columns else None
    )


def _read_jsonl(source: IO[bytes] | Path, columns: Sequence[str] | None) -> pd.DataFrame:
    # dtype=False: keep JSON's own types (pandas would turn 1.0 into 1 and "01" into 1).
    frame = pd.read_json(source, lines=True, precise_float=True, dtype=False)
    if columns is not None:
        _require(columns, list(frame.columns))
        frame = frame[list(columns)]
    return frame


def _require(columns: Sequence[str], names: Sequence[str]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"no column(s) {missing} in the file (it has {list(names)})")


READERS: dict[str, Callable[[Any, Sequence[str] | None], pd.DataFrame]] = {
    "parquet": _read_parquet,
    "csv": _read_csv,
    "jsonl": _read_jsonl,
}


def table_format(path: str | Path, declared: str | None = None) -> str:
    """The format of `path`: `declared` if given, else from its extension."""
    if declared is not None:
        return declared
    suffix = Path(str(path)).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            f"{path}: unknown table format {suffix!r}; use one of {sorted(FORMATS)} "
            "or declare `format:` on the source."
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
    reader = READERS[kind]
    try:
        if fs is None:
            if not Path(path).exists():
                raise InputError(f"{path}: no such file; check the path.")
            return reader(Path(path), columns)
        with fs.open(path, "rb") as handle:
            return reader(handle, columns)
    except InputError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot be read as {kind}: {exc}") from exc
