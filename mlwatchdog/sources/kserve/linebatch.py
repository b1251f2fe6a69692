"""Reads the sink's lines into `EventColumns` for `KServeReader`, in order: the events of short
lines are converted together (`columnar.Builder`), a long line whose rows hold numbers, booleans
and nulls only is read without a Python list per row.

Why: lists alive while a line is converted are promoted to the garbage collector's oldest
generation, whose collections walk every object of the process; a 15,000-row event made one
every few events. A long line's rows are checked here (brackets, one width) and their values read
by `json` as one flat list; what is before them by `decode`. Any other line is read by `decode`,
so a line is an event, or not one, exactly as `decode` says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from mlwatchdog.sources.kserve.columnar import Builder, EventColumns, flat_event
from mlwatchdog.sources.kserve.lines import Event, decode

_LONG = 4096  # bytes of a line worth reading its rows without a list per row
_BATCH = 4096  # rows of short lines converted together
_ROWS = b',"rows":['  # the rows come last in a line (`encode`)
_FLAT_BYTES = b"0123456789.eE+-,[]truefalsn"  # numbers, true, false, null, commas, brackets
_OPEN, _CLOSE, _COMMA = b"[],"


class LineBatch:
    """Turns sink lines into `EventColumns`, in order: a short line's event is converted with
    others (`_BATCH` rows at a time), a long line of numbers at once without a list per row."""

    def __init__(self, wanted: Callable[[Event], bool]) -> None:
        self.wanted = wanted  # whose events to keep (by their metadata)
        self.events: list[EventColumns] = []
        self._waiting = Builder()

    def add(self, line: bytes) -> None:
        """Parse `line`; ValueError if it is not an event (as `decode` says)."""
        long = _long_line(line) if len(line) > _LONG else None
        if long is not None:
            head, values, size, width = long
            if self.wanted(head):
                self._flush()
                self.events.append(flat_event(head, values, size, width))
            return
        decoded = decode(line)
        if self.wanted(decoded):
            self._waiting.add(decoded)
            if self._waiting.rows >= _BATCH:
                self._flush()

    def done(self) -> list[EventColumns]:
        """The events of the lines added, in order."""
        self._flush()
        return self.events

    def _flush(self) -> None:
        if self._waiting.heads:
            self.events += self._waiting.build()
            self._waiting = Builder()


def _long_line(line: bytes) -> tuple[Event, list[Any], int, int] | None:
    """A line whose rows hold numbers, booleans and nulls only: its event without its rows, and
    their values row after row, the rows and their width; None for any other line (`decode`
    reads it)."""
    cut = line.find(_ROWS)
    if cut <= 0 or not line.endswith(b"]}"):
        return None
    try:  # what is before the rows, with no rows: the time, kind, id, metadata, names
        head = decode(line[:cut] + _ROWS + b"]}")
    except ValueError:
        return None
    flat = _flat_rows(line[cut + len(_ROWS) - 1 : -1])
    if flat is None:
        return None
    values, size, width = flat
    if head.names is not None and len(head.names) != width:
        raise ValueError("rows that are not lists or objects")  # as decode says
    return head, values, size, width


def _flat_rows(text: bytes) -> tuple[list[Any], int, int] | None:
    """The values of a JSON array of rows of one width > 0 holding numbers, booleans and nulls
    only (no strings, objects or spaces), row after row, with the rows and the width; None for
    any other text. The brackets are checked here, the values and commas by `json`."""
    if text.translate(None, _FLAT_BYTES) or len(text) < 4:
        return None
    data = np.frombuffer(text, dtype=np.uint8)
    brackets = np.flatnonzero((data == _OPEN) | (data == _CLOSE))
    size = (len(brackets) - 2) // 2
    if size < 1 or data[brackets].tobytes() != b"[" + b"[]" * size + b"]":
        return None
    opens, closes = brackets[1:-1:2], brackets[2:-1:2]  # each row's
    between = closes[:-1] + 1  # one comma between rows, nothing else outside them
    if opens[0] != 1 or closes[-1] != len(text) - 2 or (opens[1:] != between + 1).any():
        return None
    if (data[between] != _COMMA).any() or (closes == opens + 1).any():  # an empty row
        return None
    commas = np.flatnonzero(data == _COMMA)
    per_row = np.searchsorted(commas, closes) - np.searchsorted(commas, opens)
    if (per_row != per_row[0]).any():
        return None
    try:
        values = json.loads(b"[" + text[1:-1].replace(b"[", b"").replace(b"]", b"") + b"]")
    except (ValueError, RecursionError):
        return None
    width = int(per_row[0]) + 1
    return (values, size, width) if len(values) == size * width else None
