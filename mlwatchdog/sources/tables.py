"""Reading one table file (parquet, csv, jsonl) into a DataFrame; called by the CLI and sources."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlwatchdog.errors import InputError

READERS = {
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
    ".csv": pd.read_csv,
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".ndjson": lambda path: pd.read_json(path, lines=True),
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
