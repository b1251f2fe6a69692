"""The KServe sink's storage: logger events checked, written durably, and read back as paired
sample rows (`daemon/sink.py` receives the events, the Observer reads them).

`events.py` turns a CloudEvent into an `Event` (one per request or response), `validate.py`
checks it against the targets that read it, `store.py` appends it as one JSON line
(`lines.py`) to hourly partitions, and `reader.py` reads a window's events incrementally, keeping
each event's rows as column arrays (`linebatch.py` parses lines into `columnar.py`'s tables), and
pairs requests with responses per event and layout (`matching.py`, `pairing.py`).
"""

from mlwatchdog.sources.kserve.events import (
    REQUEST,
    RESPONSE,
    InvalidEvent,
    check_time,
    event_record,
    selects,
)
from mlwatchdog.sources.kserve.lines import PARTITIONING, Event, decode, encode, utc_now
from mlwatchdog.sources.kserve.reader import KServeReader
from mlwatchdog.sources.kserve.store import SinkClosed, SinkStore
from mlwatchdog.sources.kserve.validate import check_event

__all__ = [
    "PARTITIONING",
    "REQUEST",
    "RESPONSE",
    "Event",
    "InvalidEvent",
    "KServeReader",
    "SinkClosed",
    "SinkStore",
    "check_event",
    "check_time",
    "decode",
    "encode",
    "event_record",
    "selects",
    "utc_now",
]
