"""Sample: one window of columns prepared once for every drift test (sorted values, categories).

Built by `Reference` for the reference data and for each current window, and by the functional
tests (`ks_2samp`, `psi`, `chi2`) for their inputs. Non-finite and missing values are dropped per
column and counted, so a test never sees NaN or inf.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol, TypeAlias

import numpy as np
from numpy.typing import NDArray

from mlwatchdog.detectors.threads import run_chunks, thread_count
from mlwatchdog.errors import InputError

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]


class ColumnKind(StrEnum):
    """How a column is tested: numeric columns by distribution, categorical ones by frequencies."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class FrameLike(Protocol):
    """What the detectors need of a DataFrame, so they work on pandas without importing it."""

    @property
    def columns(self) -> Any: ...

    def __getitem__(self, key: str) -> Any: ...


@dataclass(frozen=True, eq=False)
class NumericColumn:
    """The finite values of one numeric column, ascending, and how many non-finite were dropped.

    `integer` records that the source dtype was an integer one (evidently's binning treats those
    differently).
    """

    values: FloatArray
    n_dropped: int
    integer: bool = False

    @property
    def n(self) -> int:
        return int(self.values.size)

    @cached_property
    def n_distinct(self) -> int:
        return int(np.count_nonzero(np.diff(self.values))) + 1 if self.values.size else 0


@dataclass(frozen=True, eq=False)
class CategoricalColumn:
    """Category labels (ascending, as strings), their counts, and how many missing were dropped."""

    labels: NDArray[np.str_]
    counts: IntArray
    n_dropped: int

    @property
    def n(self) -> int:
        return int(self.counts.sum())


Column: TypeAlias = NumericColumn | CategoricalColumn


@dataclass(frozen=True, eq=False)
class Sample:
    """Named columns of one data window, each ready for the tests of its kind."""

    names: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def kinds(self) -> tuple[ColumnKind, ...]:
        return tuple(_kind_of(c) for c in self.columns)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_data(
        cls,
        data: Any,
        *,
        names: Sequence[str] | None = None,
        kinds: Sequence[ColumnKind | str] | None = None,
        axis: int = 0,
        workers: int | None = None,
    ) -> Sample:
        """Prepare `data`: a DataFrame-like (columns by name) or a 1-D/2-D array (`axis` = samples).

        `names` selects and orders columns (required by name in a frame, positional in an array);
        `kinds` declares each column's kind, otherwise it follows the dtype (numbers are numeric,
        anything else categorical). A declared kind the data cannot have raises `InputError`.
        `workers`: threads that sort the columns (`threads.thread_count`; None: by size).
        """
        if hasattr(data, "columns") and hasattr(data, "__getitem__"):
            return _from_frame(data, names, kinds, workers)
        return _from_array(np.asarray(data), names, kinds, axis, workers)

    def select(self, names: Sequence[str]) -> Sample:
        """The same sample restricted to `names`, in that order."""
        index = {name: i for i, name in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise InputError(
                f"unknown column(s) {missing}; this sample has {list(self.names)}. "
                "Name only columns the reference was built with."
            )
        return Sample(tuple(names), tuple(self.columns[index[n]] for n in names))


def _kind_of(column: Column) -> ColumnKind:
    return ColumnKind.NUMERIC if isinstance(column, NumericColumn) else ColumnKind.CATEGORICAL


def _default_kind(dtype: np.dtype[Any]) -> ColumnKind:
    return ColumnKind.NUMERIC if dtype.kind in "iuf" else ColumnKind.CATEGORICAL


def _check_kind(name: str, dtype: np.dtype[Any], kind: ColumnKind) -> None:
    if dtype.kind in "mM":
        raise InputError(
            f"column {name!r} has dtype {dtype}, which no drift test takes; "
            "drop it from the tested columns or convert it (e.g. to seconds) first."
        )
    if kind is ColumnKind.NUMERIC and dtype.kind not in "iuf":
        raise InputError(
            f"column {name!r} is numeric in the reference but has dtype {dtype} here; "
            "send numbers for it, or declare it categorical."
        )


def _from_array(
    array: NDArray[Any],
    names: Sequence[str] | None,
    kinds: Sequence[ColumnKind | str] | None,
    axis: int,
    workers: int | None,
) -> Sample:
    if array.ndim not in (1, 2):
        raise InputError(f"expected a 1-D or 2-D array of samples, got shape {array.shape}.")
    block = array[:, np.newaxis] if array.ndim == 1 else np.moveaxis(array, axis, 0)
    n_columns = block.shape[1]
    if names is None:
        names = [str(j) for j in range(n_columns)]
    if len(names) != n_columns:
        raise InputError(
            f"the array has {n_columns} column(s) but {len(names)} name(s) are expected "
            f"({list(names)}); pass columns in the reference's order."
        )
    declared = [ColumnKind(k) for k in kinds] if kinds is not None else None
    default = _default_kind(block.dtype)
    column_kinds = declared if declared is not None else [default] * n_columns
    for name, kind in zip(names, column_kinds, strict=True):
        _check_kind(name, block.dtype, kind)
    numeric_at = [j for j, k in enumerate(column_kinds) if k is ColumnKind.NUMERIC]
    columns: list[Column | None] = [None] * n_columns
    numeric_block = block.T if len(numeric_at) == n_columns else block[:, numeric_at].T
    integer = block.dtype.kind in "iu"
    for j, col in zip(numeric_at, _numeric_columns(numeric_block, workers=workers), strict=True):
        columns[j] = replace(col, integer=integer) if integer else col
    for j, kind in enumerate(column_kinds):
        if kind is ColumnKind.CATEGORICAL:
            columns[j] = _categorical_column(block[:, j])
    return Sample(tuple(names), tuple(c for c in columns if c is not None))


def _from_frame(
    frame: FrameLike,
    names: Sequence[str] | None,
    kinds: Sequence[ColumnKind | str] | None,
    workers: int | None,
) -> Sample:
    available = [str(c) for c in frame.columns]
    if names is None:
        names = available
    missing = [n for n in names if n not in available]
    if missing:
        raise InputError(
            f"column(s) {missing} missing from the data; it has {available}. "
            "Provide every column the reference has, or test fewer columns."
        )
    declared = [ColumnKind(k) for k in kinds] if kinds is not None else None
    series = [frame[name] for name in names]
    dtypes = [_frame_dtype(s) for s in series]
    column_kinds = declared if declared is not None else [_default_kind(d) for d in dtypes]
    for name, dtype, kind in zip(names, dtypes, column_kinds, strict=True):
        _check_kind(name, dtype, kind)
    numeric_at = [j for j, k in enumerate(column_kinds) if k is ColumnKind.NUMERIC]
    n_rows = len(series[0]) if series else 0
    block = np.empty((len(numeric_at), n_rows), dtype=np.float64)
    for row, j in enumerate(numeric_at):
        block[row] = as_float(series[j])
    columns: list[Column | None] = [None] * len(names)
    numeric = _numeric_columns(block, copy=False, workers=workers)
    for j, col in zip(numeric_at, numeric, strict=True):
        columns[j] = replace(col, integer=True) if dtypes[j].kind in "iu" else col
    for j, kind in enumerate(column_kinds):
        if kind is ColumnKind.CATEGORICAL:
            columns[j] = _categorical_column(np.asarray(series[j], dtype=object))
    return Sample(tuple(names), tuple(c for c in columns if c is not None))


def _frame_dtype(series: Any) -> np.dtype[Any]:
    dtype = series.dtype
    # pandas extension dtypes (category, string, Int64) expose their numpy kind via numpy_dtype
    # where one exists; a category column has none and stays categorical.
    if isinstance(dtype, np.dtype):
        return dtype
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    return numpy_dtype if isinstance(numpy_dtype, np.dtype) else np.dtype(object)


def as_float(series: Any) -> FloatArray:
    """A column's values as float64, missing ones (None, pandas' NA) as NaN."""
    if hasattr(series, "to_numpy"):
        return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(series, dtype=np.float64)


def _numeric_columns(
    block: NDArray[Any], *, copy: bool = True, workers: int | None = None
) -> list[NumericColumn]:
    """Sort each row of `block` (columns x samples) with its non-finite values dropped."""
    values = np.array(block, dtype=np.float64, order="C") if copy else block
    finite = np.isfinite(values)
    n_valid = np.count_nonzero(finite, axis=1)
    if n_valid.sum() != values.size:
        values[~finite] = np.nan  # NaN sorts last, so each column's finite values lead its row

    def sort_rows(start: int, stop: int) -> None:
        values[start:stop].sort(axis=1)

    run_chunks(sort_rows, values.shape[0], thread_count(values.size, workers))
    n_rows = values.shape[1]
    return [
        NumericColumn(values[j, : n_valid[j]], int(n_rows - n_valid[j]))
        for j in range(values.shape[0])
    ]


def _categorical_column(values: NDArray[Any]) -> CategoricalColumn:
    values = np.asarray(values, dtype=object)
    missing = np.fromiter((_is_missing(v) for v in values), dtype=bool, count=values.size)
    present = values[~missing]
    labels, counts = np.unique(_labels(present), return_counts=True)
    return CategoricalColumn(labels, counts.astype(np.int64), int(missing.sum()))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and NaT are not equal to themselves
    except TypeError:
        return True  # pandas' NA: its comparisons are NA, which has no truth value


def _labels(values: NDArray[Any]) -> NDArray[np.str_]:
    """Labels as strings; whole floats lose '.0' (pandas makes int columns with gaps float)."""
    if values.size and all(
        isinstance(v, float | np.floating) and float(v).is_integer() for v in values
    ):
        if all(abs(v) < 2.0**63 for v in values):
            return values.astype(np.int64).astype(str)
        return np.array([str(int(v)) for v in values])  # ids beyond int64: exact Python ints
    return values.astype(str)
