"""Reading one table file (parquet, csv, jsonl) into a DataFrame; called by the CLI and sources."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlwatchdog.errors import InputError


# pandas' default float parsers are off in the last digit; exact parsing keeps the numbers a
# test sees identical to what was written, whatever the file format.
def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, float_precision="round_trip")


def _read_jsonl(path: Path) -> pd.DataFrame:
    return pd.read_json(path, lines=True, precise_float=True)


READERS = {
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
    ".csv": _read_csv,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
}


def read_table(path: str | Path) -> pd.DataFrame:
    """The table at `path`, its format chosen by the file extension."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            f"{path}: unknown table format {path.suffix!r}; use one of {sorted(READERS)}."
        )
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path.")
    try:
        return reader(path)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: cannot be read as {path.suffix[1:]}: {exc}") from exc
