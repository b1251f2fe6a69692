"""Joining delayed labels to the predictions they judge: by request id, or by time and key.

Pure: arrays in, for each prediction the index of its label row (-1: no label yet). The shell
(sources/observe.py) reads both tables and builds the joined rows from these indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

Indices = NDArray[np.intp]


def match_ids(predictions: Sequence[Any] | ArrayLike, labels: Sequence[Any] | ArrayLike) -> Indices:
    """For each prediction's request id, the row of the label with the same id (-1 if none).
    An id labelled twice takes its last row (a corrected label replaces the first). A missing id
    (None, NaN) matches nothing."""
    latest: dict[Any, int] = {}
    for row, key in enumerate(np.asarray(labels, dtype=object).tolist()):
        if _present(key):
            latest[_canonical(key)] = row
    found = [
        latest.get(_canonical(key), -1) if _present(key) else -1
        for key in np.asarray(predictions, dtype=object).tolist()
    ]
    return np.asarray(found, dtype=np.intp)


def match_nearest(
    prediction_times: ArrayLike,
    label_times: ArrayLike,
    tolerance_ns: int,
    prediction_keys: ArrayLike | None = None,
    label_keys: ArrayLike | None = None,
) -> Indices:
    """For each prediction, the label row of the same key (when keys are given) whose time is
    nearest to the prediction's, within `tolerance_ns` either way (-1 if none). Times are
    integer nanoseconds (UTC). Ties go to the earlier label."""
    p_times = np.asarray(prediction_times, dtype=np.int64)
    l_times = np.asarray(label_times, dtype=np.int64)
    found = np.full(len(p_times), -1, dtype=np.intp)
    if prediction_keys is None or label_keys is None:
        groups = {None: (np.arange(len(p_times)), np.arange(len(l_times)))}
    else:
        groups = _groups(prediction_keys, label_keys)
    for p_rows, l_rows in groups.values():
        if not len(p_rows) or not len(l_rows):
            continue
        order = l_rows[np.argsort(l_times[l_rows], kind="stable")]
        times = l_times[order]
        wanted = p_times[p_rows]
        after = np.clip(np.searchsorted(times, wanted, side="left"), 0, len(times) - 1)
        before = np.clip(after - 1, 0, len(times) - 1)
        gap_before = np.abs(wanted - times[before])
        gap_after = np.abs(times[after] - wanted)
        pick = np.where(gap_before <= gap_after, before, after)
        gap = np.minimum(gap_before, gap_after)
        found[p_rows] = np.where(gap <= tolerance_ns, order[pick], -1)
    return found


def _groups(
    prediction_keys: ArrayLike, label_keys: ArrayLike
) -> dict[Any, tuple[Indices, Indices]]:
    """Row indices of each key present on both sides."""
    by_key: dict[Any, tuple[list[int], list[int]]] = {}
    for side, keys in enumerate((prediction_keys, label_keys)):
        for row, key in enumerate(np.asarray(keys, dtype=object).tolist()):
            if _present(key):
                by_key.setdefault(_canonical(key), ([], []))[side].append(row)
    return {
        key: (np.asarray(p, dtype=np.intp), np.asarray(labels, dtype=np.intp))
        for key, (p, labels) in by_key.items()
    }


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


def _canonical(value: Any) -> Any:
    """One spelling of an id read as text in one file and as a number in another (csv vs
    parquet): integral numbers as int, everything else as text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text
    return (
        int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else text
    )


def as_classes(values: ArrayLike) -> NDArray[np.object_]:
    """Class labels in one spelling, so 1, 1.0, '1' and True are the same class (a label file
    in csv and predictions in parquet must compare equal). Missing values stay None."""
    return np.asarray(
        [
            None
            if not _present(v)
            else ("1" if v is True else "0" if v is False else str(_canonical(v)))
            for v in np.asarray(values, dtype=object).tolist()
        ],
        dtype=object,
    )
