"""A real S3 API on loopback for integration tests: moto's server (`moto_server`, from the
`moto[server]` package of the dev extra) as a subprocess, reached through s3fs as a daemon
reaches S3."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.ports import free_port

READY_TIMEOUT = 30.0


@contextmanager
def s3_server(log: Path, bucket: str) -> Iterator[dict[str, Any]]:
    """moto's S3 server on a free loopback port, with an empty `bucket`; yields the fsspec
    storage_options that reach it (any key and secret are accepted)."""
    pytest.importorskip("s3fs", reason="s3fs is in the dev extra: pip install -e '.[dev]'")
    command = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if command is None:
        pytest.skip("moto_server not found: pip install -e '.[dev]' (moto[server])")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [command, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                if httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        httpx.put(f"{url}/{bucket}").raise_for_status()  # CreateBucket in us-east-1
        yield {
            "key": "testing-key",
            "secret": "testing-secret-value",
            "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"},
        }
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
