"""Torn lines (a crash in the middle of an append) in the audit trail and the journal of a running
daemon: the alert webhook still investigates and writes its report, the report shows the records
around the torn ones, and the audit and incident APIs answer; nothing answers 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.daemon_process import TARGET, DaemonProcess, is_ready, wait_for, write_config
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(120)
INCIDENT = f"{TARGET}-20261125T090000Z"


def audit_record(detail: str) -> dict[str, Any]:
    return {
        "at": "2026-11-25T09:01:00+00:00", "who": "offline", "target": TARGET,
        "incident": INCIDENT, "to": "prior", "dry_run": True, "result": "dry_run",
        "detail": detail,
    }  # fmt: skip


def journal_entry(phase: str) -> dict[str, Any]:
    return {"at": "2026-11-25T09:00:00+00:00", "target": TARGET, "kind": "phase",
            "phase": phase, "incident": INCIDENT}  # fmt: skip


def torn(record: dict[str, Any]) -> str:
    text = json.dumps(record)
    return text[: len(text) // 2]


def alert() -> dict[str, Any]:
    """An Alertmanager webhook body (version 4) for the target."""
    labels = {"alertname": "ModelDrift", "target": TARGET}
    return {
        "version": "4", "status": "firing", "receiver": "mlwatchdog",
        "groupKey": '{}:{alertname="ModelDrift"}', "truncatedAlerts": 0,
        "groupLabels": {"alertname": "ModelDrift"}, "commonLabels": labels,
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing", "labels": labels, "annotations": {},
            "startsAt": "2026-11-25T09:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": "0123456789abcdef",
        }],
    }  # fmt: skip


def test_torn_audit_and_journal_lines_break_no_report_webhook_or_api(
    tmp_path: Path, processes: list[DaemonProcess]
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    rules = yaml.safe_load(config.read_text())
    rules["daemon"]["audit_log"] = str(tmp_path / "audit.jsonl")
    rules["daemon"]["reports"] = {"path": str(tmp_path / "reports"), "keep": 5}
    config.write_text(yaml.safe_dump(rules, sort_keys=False))
    # A torn line in the middle (a crash, then more appends) and one at the end (no newline).
    lines = [
        json.dumps(audit_record("before the crash")),
        torn(audit_record("torn")),
        json.dumps(audit_record("after the crash")),
        torn(audit_record("torn at the end")),
    ]
    (tmp_path / "audit.jsonl").write_text("\n".join(lines))
    (tmp_path / "state").mkdir()
    journal = [
        json.dumps(journal_entry("degraded")),
        torn(journal_entry("verifying")),
        json.dumps(journal_entry("escalated")),
        torn(journal_entry("healthy")),
    ]
    (tmp_path / "state" / "journal.jsonl").write_text("\n".join(journal))

    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    processes.append(daemon)
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=30)

    answer = daemon.http.post("/api/v1/alerts", json=alert(), timeout=60)
    assert answer.status_code == 200, answer.text
    [investigated] = answer.json()["investigated"]
    report = investigated["report"]
    assert investigated["target"] == TARGET and report is not None
    page = daemon.get(f"/reports/{report['id']}/")
    assert page is not None and page.status_code == 200
    assert "before the crash" in page.text and "after the crash" in page.text  # Actions
    assert "escalated" in page.text  # the state history, read past the torn journal line

    again = daemon.http.post(f"/api/v1/targets/{TARGET}/evaluate", params={"report": "true"})
    assert again.status_code == 200, again.text
    assert again.json()["report"] is not None

    audit = daemon.get("/api/v1/audit")
    assert audit is not None and audit.status_code == 200, audit and audit.text
    assert sorted(r["detail"] for r in audit.json()) == ["after the crash", "before the crash"]
    incidents = daemon.get("/api/v1/incidents")
    assert incidents is not None and incidents.status_code == 200, incidents and incidents.text
    [incident] = [i for i in incidents.json() if i["id"] == INCIDENT]
    assert [e["phase"] for e in incident["events"]] == ["degraded", "escalated"]
    assert "Traceback" not in daemon.text()
