"""The audit trail outlives the pod: a daemon decides a rollback, the record is acknowledged (it
is in the API's answer), the process is killed with -9, and a new daemon started in a fresh
working folder (a new pod: no state, no journal) reads the same trail back, from a volume path or
from an fsspec URL (one object per record)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.daemon_process import (
    DaemonProcess,
    Feeder,
    is_ready,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(240)


def pod_config(workdir: Path, live: Path, port: int, audit_log: str) -> Path:
    """The harness's rules with everything but the live samples in `workdir` (the pod's own
    folder), and the audit trail at `audit_log`."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = write_config(workdir, port)
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    rules["sources"]["live"]["url"] = str(live)
    rules["daemon"]["audit_log"] = audit_log
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@pytest.mark.parametrize("where", ["volume", "url"])
def test_the_trail_is_read_back_by_a_new_pod(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder, where: str
) -> None:
    trail = tmp_path / "trail"
    audit_log = str(trail / "audit.jsonl") if where == "volume" else f"file://{trail}/audit"
    live = tmp_path / "live"  # the feeder's folder

    port = free_port()
    first = DaemonProcess(
        pod_config(tmp_path / "pod-1", live, port, audit_log), port, tmp_path / "pod-1.log"
    )
    processes.append(first)
    wait_for(first, "readiness", lambda: is_ready(first), timeout=60)
    feeder.drift.set()

    def acknowledged() -> list[dict[str, Any]]:
        answer = first.get("/api/v1/audit")
        return answer.json() if answer is not None and answer.status_code == 200 else []

    records = wait_for(first, "the rollback's audit record", acknowledged, timeout=90)
    first.proc.send_signal(signal.SIGKILL)  # no clean stop: what was acknowledged must be there
    first.proc.wait(10)
    assert records[0]["result"] == "dry_run" and records[0]["incident"]

    port = free_port()
    second = DaemonProcess(
        pod_config(tmp_path / "pod-2", live, port, audit_log), port, tmp_path / "pod-2.log"
    )
    processes.append(second)
    wait_for(second, "the new pod", lambda: is_ready(second), timeout=60)
    answer = second.get("/api/v1/audit")
    assert answer is not None and answer.status_code == 200
    read_back = answer.json()
    by_incident = {r["incident"]: r for r in read_back}
    for record in records:  # every record the first pod acknowledged, as it was
        assert by_incident[record["incident"]] == record
