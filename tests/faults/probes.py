"""What the fault tests ask a running daemon (tests/e2e/daemon_process.py) beyond the harness."""

from __future__ import annotations

from typing import Any

from tests.e2e.daemon_process import DaemonProcess


def not_ready(daemon: DaemonProcess, failing: str | None = None) -> dict[str, Any] | None:
    """/readyz's answer while it is 503 (and names the failing write `failing`), else None."""
    response = daemon.get("/readyz")
    if response is None or response.status_code != 503:
        return None
    body: dict[str, Any] = response.json()
    if failing is not None and failing not in body.get("failing_writes", {}):
        return None
    return body
