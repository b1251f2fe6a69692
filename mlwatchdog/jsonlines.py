"""Append-only JSON records, the one writer and reader of the audit trail and the incident
journal: a local JSON-lines file, or, for an fsspec URL (s3://, gs://, file://), one object per
append under a prefix (object stores cannot append).

Writes never raise: a record that cannot be written (disk full, too many open files, the store
down) is kept in memory, in order, and written before the next one once the fault is gone; the
owner learns of the fault and of the recovery through `on_fault`. A write that fails half-way is
undone, so no record is ever both stored and kept (it would be stored twice). Reads see the kept
records too, after the stored ones (a bundle made while the disk is full still has its action's
audit record), tolerate a torn line (a crash in the middle of an append) anywhere, and `tail`
reads a local file from its end, so a report that needs the last twenty records does not parse a
year of them. Every record passes through the Redactor before it is written.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import posixpath
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

from mlwatchdog.rules.secret import Redactor

Record = dict[str, Any]
Match = Callable[[Record], bool]
MAX_PENDING = 100_000  # records kept while writes fail; beyond, the oldest go (and are counted)
_BLOCK = 1 << 16


class JsonLines:
    """Records at `location`: a local path (JSON lines) or an fsspec URL (an object per append)."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        durable: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        redactor: Redactor | None = None,
        on_fault: Callable[[str | None], None] = lambda _: None,
    ) -> None:
        self.location = str(location)
        self.durable = durable  # fsync before append returns (the audit trail)
        self.redactor = redactor if redactor is not None else Redactor()
        self.on_fault = on_fault  # the error text while failing; None once written again
        self.remote = "://" in self.location
        if self.remote:
            self.fs, self.root = fsspec.core.url_to_fs(self.location, **dict(storage_options or {}))
        self._pending: deque[bytes] = deque()
        self.dropped = 0  # records lost because MAX_PENDING were already waiting
        self.torn = 0  # unreadable lines skipped by reads so far
        self._lock = threading.Lock()
        self._writer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._sequence = 0
        self.failing: str | None = None

    # ------------------------------------------------------------------------------- writing

    def append(self, record: Mapping[str, Any]) -> bool:
        """Write `record` (after any still pending); False when it was kept for later."""
        line = json.dumps(self.redactor.data(dict(record)), sort_keys=True, default=str) + "\n"
        with self._lock:
            self._pending.append(line.encode())
            while len(self._pending) > MAX_PENDING:
                self._pending.popleft()
                self.dropped += 1
            return self._flush()

    def flush(self) -> bool:
        """Write what is pending; True when nothing is left."""
        with self._lock:
            return self._flush()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _flush(self) -> bool:
        if not self._pending:
            return True
        batch = b"".join(self._pending)
        try:
            if self.remote:
                self._put(batch)
            else:
                self._append_local(batch)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self.failing:
                self.failing = error
                self.on_fault(error)
            return False
        self._pending.clear()
        if self.failing is not None:
            self.failing = None
            self.on_fault(None)
        return True

    def _append_local(self, batch: bytes) -> None:
        path = Path(self.location)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab", buffering=0) as f:
            start = f.seek(0, os.SEEK_END)
            # A crash may have left half a line: end it, so the next record is not glued to it
            # and lost with it.
            if start > 0 and _last_byte(path) != b"\n":
                batch = b"\n" + batch
            try:
                view = memoryview(batch)
                while view:  # a raw write may take a part
                    view = view[f.write(view) :]
                if self.durable:
                    os.fsync(f.fileno())
            except OSError:
                # Undo what went in: the batch stays pending and is written whole later; its
                # first records left here too would be stored twice.
                with contextlib.suppress(OSError):
                    os.ftruncate(f.fileno(), start)
                raise

    def _put(self, batch: bytes) -> None:
        now = datetime.now(UTC)
        self._sequence += 1
        name = f"{now:%Y%m%dT%H%M%S%fZ}-{self._writer}-{self._sequence:08d}.jsonl"
        folder = posixpath.join(self.root, f"{now:%Y-%m-%d}")
        self.fs.makedirs(folder, exist_ok=True)
        # An object store's put is atomic; on a plain file system a reader may see a part of
        # the last line, which it skips as torn until it is whole.
        with self.fs.open(posixpath.join(folder, name), "wb") as f:
            f.write(batch)

    # ------------------------------------------------------------------------------- reading

    def entries(self, match: Match | None = None) -> Iterator[Record]:
        """Every record, oldest first (torn lines skipped), those not written yet last."""
        stored, pending = self._snapshot()
        for chunk in itertools.chain(self._chunks(stored, newest_first=False), [b"".join(pending)]):
            for line in chunk.splitlines():
                record = self._parse(line)
                if record is not None and (match is None or match(record)):
                    yield record

    def tail(
        self, match: Match | None = None, limit: int | None = None, stop: Match | None = None
    ) -> list[Record]:
        """The newest records that `match`, at most `limit`, oldest first; reading backwards
        stops at the first record for which `stop` is true (e.g. older than what is asked)."""
        found: list[Record] = []
        stored, pending = self._snapshot()
        for chunk in itertools.chain([b"".join(pending)], self._chunks(stored, newest_first=True)):
            for line in reversed(chunk.splitlines()):
                record = self._parse(line)
                if record is None:
                    continue
                if stop is not None and stop(record):
                    return found[::-1]
                if match is None or match(record):
                    found.append(record)
                    if limit is not None and len(found) >= limit:
                        return found[::-1]
        return found[::-1]

    def _parse(self, line: bytes) -> Record | None:
        if not line.strip():
            return None
        try:
            record = json.loads(line)
        except ValueError:  # torn by a crash, or still being written by another process
            self.torn += 1
            return None
        return record if isinstance(record, dict) else None

    def _snapshot(self) -> tuple[Any, list[bytes]]:
        """What is stored (a local file's size, or the objects' names) and what is pending, at
        one moment: a record is in one or the other, never both, never neither."""
        with self._lock:
            pending = list(self._pending)
            if self.remote:
                try:
                    found = self.fs.find(self.root)
                except FileNotFoundError:
                    found = []
                # Objects are <root>/<day>/<name>: hidden ones (a writer's temporary file) are
                # skipped by those two parts only, since the root itself may be under a dot folder.
                return sorted(p for p in found if p.endswith(".jsonl") and not _hidden(p)), pending
            try:
                return os.stat(self.location).st_size, pending
            except FileNotFoundError:
                return 0, pending

    def _chunks(self, stored: Any, newest_first: bool) -> Iterator[bytes]:
        """The stored bytes in whole lines: the first `stored` bytes of a local file by blocks
        (from their end when `newest_first`), or the objects named in `stored` one by one."""
        if self.remote:
            yield from self._objects(stored, newest_first)
            return
        try:
            handle = open(self.location, "rb")  # noqa: SIM115  (closed below, also when cut short)
        except FileNotFoundError:
            return
        with handle:
            if newest_first:
                yield from _blocks_backwards(handle, stored)
            else:
                yield from _blocks(handle, stored)

    def _objects(self, names: list[str], newest_first: bool) -> Iterator[bytes]:
        for name in reversed(names) if newest_first else names:
            try:
                with self.fs.open(name, "rb") as f:
                    yield f.read()
            except FileNotFoundError:  # removed meanwhile (retention elsewhere)
                continue


def _hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.rsplit("/", 2)[-2:])


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _blocks(handle: Any, size: int) -> Iterator[bytes]:
    """A file's first `size` bytes in whole lines, from the start."""
    rest = b""
    while size > 0 and (block := handle.read(min(_BLOCK, size))):
        size -= len(block)
        whole, _, rest = (rest + block).rpartition(b"\n")
        if whole:
            yield whole
    if rest:
        yield rest


def _blocks_backwards(handle: Any, size: int) -> Iterator[bytes]:
    """A file's first `size` bytes in whole lines, from their end: blocks of _BLOCK read
    backwards."""
    end = min(size, handle.seek(0, os.SEEK_END))
    carry = b""  # the start of a line cut by the block before: it ends the next block
    while end > 0:
        start = max(0, end - _BLOCK)
        handle.seek(start)
        block = handle.read(end - start) + carry
        carry = b""
        end = start
        if start > 0:
            carry, _, block = block.partition(b"\n")
        if block:
            yield block
