"""A server program as a test's subprocess: started with its output in a log file, waited for
until a URL answers, stopped (terminate, then kill) when the test is done."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

READY_TIMEOUT = 30.0


@contextmanager
def serving(
    command: Sequence[str], ready_url: str, log: Path, timeout: float = READY_TIMEOUT
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends; first wait until `ready_url` answers at all (the test
    fails with the log if the program exits or `timeout` passes first)."""
    with log.open("wb") as out:
        server = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{Path(command[0]).name} did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
