"""The sink's durable store: `SinkStore` appends events (one JSON line each) to hourly partitions
with group-commit fsync, and deletes expired partitions; the sink route and the daemon call it."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import threading
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from mlwatchdog.rules import Sink
from mlwatchdog.sources.kserve.lines import (
    PARTITION_SPAN,
    PARTITIONING,
    Event,
    encode,
    partition,
    utc_now,
)

_MAX_BATCH = 4096  # appends per commit: bounds the latency of the first one
_OPEN_FILES = 4  # partitions kept open (late events may still reach the previous hour)


class SinkClosed(RuntimeError):
    """The store is closed (the daemon is stopping): nothing more is written."""


@dataclass(eq=False)
class _Append:
    chunks: dict[str, bytes]  # partition -> JSON lines
    done: Future[None]


class SinkStore:
    """Appends events to hourly JSON-lines partitions (`dt=%Y-%m-%d/hour=%H/<writer>.jsonl`),
    durably, and deletes expired partitions.

    A writer thread does group commit: it takes every append queued while the previous fsync
    ran, writes them in one go per file and fsyncs once, then completes their futures; so many
    concurrent events cost one fsync. Each process writes its own file per partition, so a line
    torn by a crash is always the last of its file.
    """

    def __init__(self, settings: Sink) -> None:
        self.settings = settings
        self.root = Path(settings.path)
        self.commits = 0  # fsync rounds so far (appends / commits is the group-commit gain)
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._state = threading.Lock()  # guards starting and closing
        self._disk = threading.Lock()  # a commit and a prune never overlap
        self._files: OrderedDict[str, BinaryIO] = OrderedDict()
        self._writer_id = _writer_id()
        self._thread: threading.Thread | None = None
        self._closed = False

    def write(self, events: Sequence[Event]) -> Future[None]:
        """Queue events for the next commit; the future completes once they are on disk.
        Raises RecursionError for values nested too deep to encode, SinkClosed once closed."""
        done: Future[None] = Future()
        done.set_running_or_notify_cancel()  # not cancellable: the writer always completes it
        chunks: dict[str, list[bytes]] = defaultdict(list)
        for event in events:
            chunks[partition(event.time)].append(encode(event))
        if not chunks:
            done.set_result(None)
            return done
        with self._state:
            if self._closed:
                raise SinkClosed("the sink is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sink-writer", daemon=True)
                self._thread.start()
            self._queue.put(_Append({p: b"".join(lines) for p, lines in chunks.items()}, done))
        return done

    def close(self) -> None:
        """Commit what is queued and stop the writer; later writes raise SinkClosed."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)  # after every append: nothing is queued once closed
        if thread is not None:
            thread.join()

    def prune(self, now: datetime | None = None) -> list[str]:
        """Delete the partitions that ended `retention` ago or earlier, and the day folders
        left empty; returns the partitions."""
        cutoff = (now or utc_now()) - self.settings.retention
        removed: list[str] = []
        with self._disk:
            for directory in sorted(self.root.glob("dt=*/hour=*")):
                name = directory.relative_to(self.root).as_posix()
                try:
                    begins = datetime.strptime(name, PARTITIONING).replace(tzinfo=UTC)
                except ValueError:
                    continue  # not a partition of this store
                if begins + PARTITION_SPAN > cutoff:
                    continue
                handle = self._files.pop(name, None)
                if handle is not None:
                    handle.close()
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(name)
            for day in self.root.glob("dt=*"):
                if day.is_dir() and not any(day.iterdir()):
                    day.rmdir()
        return removed

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]  # blocks until there is work
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            appends = [a for a in batch if a is not None]
            if appends:
                self._commit(appends)
        with self._disk:
            self._close_files()

    def _commit(self, appends: list[_Append]) -> None:
        chunks: dict[str, list[bytes]] = defaultdict(list)
        for append in appends:
            for name, data in append.chunks.items():
                chunks[name].append(data)
        try:
            with self._disk:
                new_dirs: set[Path] = set()
                handles = []
                for name, lines in chunks.items():
                    handle = self._file(name, new_dirs)
                    handle.write(b"".join(lines))
                    handle.flush()
                    handles.append(handle)
                for handle in handles:
                    os.fsync(handle.fileno())
                for directory in new_dirs:  # a new file's entry must survive a crash too
                    _fsync_dir(directory)
                while len(self._files) > _OPEN_FILES:
                    self._files.popitem(last=False)[1].close()
                self.commits += 1
        except Exception as exc:  # a disk error (or a bug) must fail the waiting events, not hang
            # After a failed write or fsync the file's tail is unknown: continue in new files.
            self._close_files()
            self._writer_id = _writer_id()
            for append in appends:
                append.done.set_exception(exc)
            return
        for append in appends:
            append.done.set_result(None)

    def _file(self, name: str, new_dirs: set[Path]) -> BinaryIO:
        handle = self._files.get(name)
        if handle is not None:
            self._files.move_to_end(name)
            return handle
        directory = self.root / name
        path = directory / f"{self._writer_id}.jsonl"
        if not path.exists():
            depth = len(Path(name).parts)
            new_dirs.update([directory, *directory.parents[: depth + 1]])
        directory.mkdir(parents=True, exist_ok=True)
        handle = path.open("ab")
        self._files[name] = handle
        return handle

    def _close_files(self) -> None:
        while self._files:
            with contextlib.suppress(OSError):
                self._files.popitem()[1].close()


def _writer_id() -> str:
    # Unique per process and restart: a crashed writer's torn last line stays at its file's end.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
