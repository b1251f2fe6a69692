"""The sink's durable store: `SinkStore` writes events (one JSON line each) to hourly partitions
with group commit, and deletes expired partitions; the sink route and the daemon call it.

Any number of processes may write to one store (replicas behind one Service): each writes only
files or objects named after its own writer id, and a reader takes every writer's. On a local or
shared POSIX folder (a ReadWriteMany volume) each writer appends to its own file per partition
and fsyncs; on an object store (s3://, gs://, az://: no append) each commit is one new immutable
object, a segment, and is durable once its PUT returned.

A commit that fails (disk full, the object store down) fails its events, and `on_fault` hears
the error; while it fails and no event comes to try it again (the pod is out of its Service), a
small probe file is written every few seconds, so the store's recovery is noticed either way.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import fsspec
from fsspec.implementations.local import LocalFileSystem

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
_PROBE_EVERY = 5.0  # seconds between probes of a failing store that no event tries
_PROBE = b"mlwatchdog sink probe\n"


class SinkClosed(RuntimeError):
    """The store is closed (the daemon is stopping): nothing more is written."""


@dataclass(eq=False)
class _Append:
    chunks: dict[str, bytes]  # partition -> JSON lines
    done: Future[None]


class SinkStore:
    """Writes events to hourly JSON-lines partitions (`dt=%Y-%m-%d/hour=%H/<writer>...jsonl`),
    durably, and deletes expired partitions.

    A writer thread does group commit: it takes every append queued while the previous commit
    ran and writes them in one go per partition (one fsync per file, or one PUT per object),
    then completes their futures; so many concurrent events cost one commit. Each process
    writes only its own files, so a line torn by a crash is always the last of its file.
    """

    def __init__(
        self, settings: Sink, on_fault: Callable[[str | None], None] = lambda _: None
    ) -> None:
        self.settings = settings
        self.on_fault = on_fault  # the error while commits fail; None once one succeeds again
        self.failing: str | None = None  # the last commit's or probe's error (the writer's)
        fs, root = fsspec.core.url_to_fs(settings.path, **settings.storage_options)
        self.root: str = root.rstrip("/") or root
        self.commits = 0  # commit rounds so far (appends / commits is the group-commit gain)
        local = isinstance(fs, LocalFileSystem)
        self._files: _Partitions = _AppendedFiles(Path(root)) if local else _Segments(fs, root)
        # Object stores: one object per commit, each listed and fetched by every reader; a
        # commit_interval bounds their number (3,600 per writer and hour at 1s).
        self._interval = settings.commit_interval.total_seconds()
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._state = threading.Lock()  # guards starting and closing
        self._disk = threading.Lock()  # a commit and a prune never overlap
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def writer_id(self) -> str:
        """The name this process's files start with (unique per process and restart)."""
        return self._files.writer_id

    def write(self, events: Sequence[Event]) -> Future[None]:
        """Queue events for the next commit; the future completes once they are durable.
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
        """Delete the partitions (every writer's) that ended `retention` ago or earlier; returns
        them. Several processes may prune one store at once: what another removed is skipped."""
        cutoff = (now or utc_now()) - self.settings.retention
        removed: list[str] = []
        with self._disk:
            for name in sorted(self._files.partitions()):
                try:
                    begins = datetime.strptime(name, PARTITIONING).replace(tzinfo=UTC)
                except ValueError:
                    continue  # not a partition of this store
                if begins + PARTITION_SPAN <= cutoff:
                    self._files.remove(name)
                    removed.append(name)
            self._files.tidy()
        return removed

    def _run(self) -> None:
        stopping = False
        committed = -self._interval
        while not stopping:
            try:  # blocks until there is work; while failing, until it is time for a probe
                batch = [self._queue.get(timeout=_PROBE_EVERY if self.failing else None)]
            except queue.Empty:
                self._probe()
                continue
            wait = committed + self._interval - time.monotonic()
            if wait > 0 and batch[0] is not None:
                time.sleep(wait)  # commit_interval: gather what comes meanwhile
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            appends = [a for a in batch if a is not None]
            if appends:
                self._commit(appends)
                committed = time.monotonic()
        with self._disk:
            self._files.close()

    def _commit(self, appends: list[_Append]) -> None:
        chunks: dict[str, list[bytes]] = defaultdict(list)
        for append in appends:
            for name, data in append.chunks.items():
                chunks[name].append(data)
        try:
            with self._disk:
                self._files.commit({name: b"".join(lines) for name, lines in chunks.items()})
                self.commits += 1
        except Exception as exc:  # a disk error (or a bug) must fail the waiting events, not hang
            self._files.abandon()
            self._failed(exc)  # first: once an event hears of it, /readyz says so
            for append in appends:
                append.done.set_exception(exc)
            return
        self._succeeded()
        for append in appends:
            append.done.set_result(None)

    def _probe(self) -> None:
        try:
            with self._disk:
                self._files.probe()
        except Exception as exc:
            self._failed(exc)
        else:
            self._succeeded()

    def _failed(self, exc: Exception) -> None:
        self.failing = f"{type(exc).__name__}: {exc}"
        self.on_fault(self.failing)

    def _succeeded(self) -> None:
        if self.failing is not None:  # one test per commit: nothing more while it works
            self.failing = None
            self.on_fault(None)


class _Partitions(Protocol):
    """Where one writer's commits go: a folder's files, or an object store's objects."""

    writer_id: str

    def commit(self, chunks: dict[str, bytes]) -> None:
        """Write each partition's lines; durable where readers look once this returns."""

    def abandon(self) -> None:
        """After a failed commit: continue in new files (the old ones' tails are unknown)."""

    def probe(self) -> None:
        """Write (durably) and remove a small file beside the partitions; raises if it fails."""

    def partitions(self) -> list[str]:
        """The partition names (`dt=.../hour=..`) present, of every writer."""
        ...

    def remove(self, name: str) -> None:
        """Delete a partition, every writer's files in it."""

    def tidy(self) -> None:
        """After removals: drop what they left empty."""

    def close(self) -> None: ...


class _AppendedFiles:
    """A POSIX folder, local or shared (NFS, EFS, CephFS): one file per writer and partition,
    appended to, fsynced with the directory entries it created."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.writer_id = _writer_id()
        self._files: OrderedDict[str, BinaryIO] = OrderedDict()

    def commit(self, chunks: dict[str, bytes]) -> None:
        new_dirs: set[Path] = set()
        handles = []
        for name, data in chunks.items():
            handle = self._file(name, new_dirs)
            handle.write(data)
            handle.flush()
            handles.append(handle)
        for handle in handles:
            os.fsync(handle.fileno())
        for directory in new_dirs:  # a new file's entry must survive a crash too
            _fsync_dir(directory)
        while len(self._files) > _OPEN_FILES:
            self._files.popitem(last=False)[1].close()

    def abandon(self) -> None:
        self.close()
        self.writer_id = _writer_id()

    def probe(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f".probe-{self.writer_id}"  # no reader lists it: not a partition
        try:
            with path.open("wb") as handle:
                handle.write(_PROBE)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    def partitions(self) -> list[str]:
        return [d.relative_to(self.root).as_posix() for d in self.root.glob("dt=*/hour=*")]

    def remove(self, name: str) -> None:
        handle = self._files.pop(name, None)
        if handle is not None:
            handle.close()
        shutil.rmtree(self.root / name, ignore_errors=True)

    def tidy(self) -> None:
        for day in self.root.glob("dt=*"):
            with contextlib.suppress(OSError):  # not empty, or another process removed it
                if day.is_dir() and not any(day.iterdir()):
                    day.rmdir()

    def close(self) -> None:
        while self._files:
            with contextlib.suppress(OSError):
                self._files.popitem()[1].close()

    def _file(self, name: str, new_dirs: set[Path]) -> BinaryIO:
        handle = self._files.get(name)
        if handle is not None:
            self._files.move_to_end(name)
            return handle
        directory = self.root / name
        path = directory / f"{self.writer_id}.jsonl"
        if not path.exists():
            depth = len(Path(name).parts)
            new_dirs.update([directory, *directory.parents[: depth + 1]])
        directory.mkdir(parents=True, exist_ok=True)
        handle = path.open("ab")
        self._files[name] = handle
        return handle


class _Segments:
    """An object store (no append): each commit is one new object per partition,
    `<writer>-<sequence>.jsonl`, never rewritten; durable once its PUT returned (S3, GCS and
    Azure Blob are read-after-write consistent)."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.writer_id = _writer_id()
        self._sequence = 0

    def commit(self, chunks: dict[str, bytes]) -> None:
        for name, data in chunks.items():
            # Counted before the PUT: a PUT that failed yet landed is never overwritten.
            self._sequence += 1
            self.fs.pipe_file(
                f"{self.root}/{name}/{self.writer_id}-{self._sequence:09d}.jsonl", data
            )

    def abandon(self) -> None:
        """Objects are whole or absent: nothing to abandon."""

    def probe(self) -> None:
        path = f"{self.root}/.probe-{self.writer_id}"  # no reader lists it: not a partition
        self.fs.pipe_file(path, _PROBE)
        with contextlib.suppress(OSError):  # it worked; a leftover probe object is harmless
            self.fs.rm(path)

    def partitions(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            found = self.fs.glob(f"{self.root}/dt=*/hour=*")
            return [p[len(self.root) + 1 :] for p in found if p.startswith(self.root + "/")]
        return []

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(f"{self.root}/{name}", recursive=True)

    def tidy(self) -> None:
        """Object stores have no empty folders to remove."""
        self.fs.invalidate_cache(self.root)

    def close(self) -> None:
        """Nothing is held open."""


def _writer_id() -> str:
    # Unique per process and restart, across pods sharing one store (the hostname is the pod's
    # name in Kubernetes; pid and a random part tell apart processes and restarts of one pod).
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
