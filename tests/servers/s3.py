"""A real S3 API on loopback for integration tests: moto's server (`moto_server`, from the
`moto[server]` package of the dev extra) as a subprocess, reached through s3fs as a daemon
reaches S3."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.ports import free_port
from tests.servers.process import serving


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
    command_line = [command, "-H", "127.0.0.1", "-p", str(port)]
    with serving(command_line, f"{url}/moto-api/", log):
        httpx.put(f"{url}/{bucket}").raise_for_status()  # CreateBucket in us-east-1
        yield {
            "key": "testing-key",
            "secret": "testing-secret-value",
            "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"},
        }
