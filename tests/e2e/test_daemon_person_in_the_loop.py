"""A person in the loop, end to end: `mlwatchdog run` as a real process (dry-run, offline), and the
`mlwatchdog pause/resume/approve` commands against it.

- pause -> drift -> the rollback is held (decision kind=hold, audited, shown), the pause survives
  a restart -> resume -> the rollback is carried out, once;
- rollback.confirm -> the rollback waits for approval -> `mlwatchdog approve` -> it is carried
  out; a second approval is refused with why (409);
- rollback.confirm with a short timeout and on_timeout: escalate -> no answer -> escalated, no
  rollback.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.daemon_process import (
    COMMAND,
    TARGET,
    DaemonProcess,
    Feeder,
    environment,
    is_ready,
    rollbacks,
    value,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(240)


def cli(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args, "--url", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=90,
        env=environment(),
    )


def with_confirm(config: Path, confirm: dict[str, Any]) -> Path:
    rules = yaml.safe_load(config.read_text())
    rules["targets"][0]["rollback"]["confirm"] = confirm
    config.write_text(yaml.safe_dump(rules, sort_keys=False))
    return config


def start(config: Path, port: int, log: Path, processes: list[DaemonProcess]) -> DaemonProcess:
    daemon = DaemonProcess(config, port, log)
    processes.append(daemon)
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=30, every=0.1)
    return daemon


def decisions(daemon: DaemonProcess, kind: str) -> float:
    metrics = daemon.metrics()
    return value(metrics, "mlwatchdog_decisions_total", target=TARGET, kind=kind) or 0.0


def gauge(daemon: DaemonProcess, name: str) -> float | None:
    return value(daemon.metrics(), name, target=TARGET)


def target_view(daemon: DaemonProcess) -> dict[str, Any]:
    response = daemon.get("/api/v1/targets")
    assert response is not None and response.status_code == 200
    (view,) = [t for t in response.json() if t["name"] == TARGET]
    return view  # type: ignore[no-any-return]


def audit(daemon: DaemonProcess) -> list[dict[str, Any]]:
    response = daemon.get(f"/api/v1/audit?target={TARGET}")
    assert response is not None and response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_a_paused_target_holds_its_rollback_and_acts_once_resumed(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    daemon = start(config, port, tmp_path / "daemon-1.log", processes)

    paused = cli(port, "pause", TARGET, "--for", "2h", "--reason", "release freeze")
    assert paused.returncode == 0, paused.stderr
    assert f"{TARGET} paused for 2h" in paused.stdout
    assert gauge(daemon, "mlwatchdog_target_paused") == 1

    # The pause is persisted: a restarted daemon is still paused.
    code, _ = daemon.stop()
    assert code == 0
    daemon = start(config, port, tmp_path / "daemon-2.log", processes)
    view = target_view(daemon)
    assert view["paused"]["by"] == "anonymous"
    assert view["paused"]["reason"] == "release freeze"
    assert gauge(daemon, "mlwatchdog_target_paused") == 1

    # Drift: the checks fire (states stay truthful), the rollback is held, not carried out.
    feeder.drift.set()
    wait_for(daemon, "a held rollback", lambda: decisions(daemon, "hold") >= 1, timeout=60)
    assert not rollbacks(daemon)
    assert value(daemon.metrics(), "mlwatchdog_target_state", target=TARGET, state="degraded") == 1
    assert {c["state"] for c in target_view(daemon)["checks"]} == {"firing"}
    trail = audit(daemon)
    [held] = [r for r in trail if r["result"] == "hold"]
    assert held["held"] == "rollback" and held["incident"] == target_view(daemon)["incident"]
    assert any("paused by anonymous until" in r for r in held["reasons"])
    [pause_record] = [r for r in trail if r["result"] == "paused"]
    assert pause_record["who"] == "anonymous" and pause_record["reason"] == "release freeze"
    assert not [r for r in trail if r["result"] == "dry_run"]

    status = cli(port, "status")
    assert status.returncode == 0, status.stderr
    assert f"{TARGET} is paused by anonymous until" in status.stdout

    # Resumed: evaluated at once, the held rollback is decided and carried out (dry-run), once.
    resumed = cli(port, "resume", TARGET, "--reason", "freeze over")
    assert resumed.returncode == 0, resumed.stderr
    wait_for(daemon, "the rollback", lambda: rollbacks(daemon) == 1, timeout=30)
    assert gauge(daemon, "mlwatchdog_target_paused") == 0
    trail = audit(daemon)
    assert [r["who"] for r in trail if r["result"] == "resumed"] == ["anonymous"]
    [acted] = [r for r in trail if r["result"] == "dry_run"]
    assert acted["incident"] == held["incident"]
    assert decisions(daemon, "hold") == 1  # held once per incident, not every evaluation


def test_a_confirmed_rollback_waits_for_approval_from_the_cli(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = with_confirm(write_config(tmp_path, port), {"timeout": "10m"})
    daemon = start(config, port, tmp_path / "daemon.log", processes)

    feeder.drift.set()
    wait_for(
        daemon,
        "a rollback awaiting approval",
        lambda: gauge(daemon, "mlwatchdog_incident_awaiting_approval") == 1,
        timeout=60,
    )
    view = target_view(daemon)
    assert view["phase"] == "awaiting_approval"
    approval = view["approval"]
    assert approval["waiting"] and approval["incident"] == view["incident"]
    deadline = gauge(daemon, "mlwatchdog_incident_approval_deadline_seconds")
    assert deadline is not None and deadline > 0
    assert not rollbacks(daemon)
    [asked] = [r for r in audit(daemon) if r["result"] == "ask_approval"]
    assert asked["incident"] == view["incident"] and asked["deadline"]

    approved = cli(port, "approve", view["incident"], "--reason", "checked the canary")
    assert approved.returncode == 0, approved.stderr
    assert f"decision: rollback ({view['incident']})" in approved.stdout
    assert rollbacks(daemon) == 1
    assert gauge(daemon, "mlwatchdog_incident_awaiting_approval") == 0
    [record] = [r for r in audit(daemon) if r["result"] == "approved"]
    assert record["who"] == "anonymous" and record["reason"] == "checked the canary"

    # Not twice: the incident no longer waits, and saying so is a refusal (409 with why).
    again = cli(port, "approve", view["incident"])
    assert again.returncode == 1
    assert "409" in again.stderr and "does not wait for approval" in again.stderr
    unknown = cli(port, "reject", f"{TARGET}-20200101T000000Z")
    assert unknown.returncode == 1 and "is not current" in unknown.stderr
    assert rollbacks(daemon) == 1


def test_without_an_answer_the_confirm_timeout_escalates(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = with_confirm(write_config(tmp_path, port), {"timeout": "4s", "on_timeout": "escalate"})
    daemon = start(config, port, tmp_path / "daemon.log", processes)

    feeder.drift.set()
    wait_for(daemon, "the approval asked", lambda: decisions(daemon, "ask_approval") == 1, 60)
    wait_for(daemon, "the escalation", lambda: decisions(daemon, "escalate") == 1, timeout=30)
    assert not rollbacks(daemon)
    view = target_view(daemon)
    assert view["phase"] == "escalated" and not view["approval"]["waiting"]
    [line] = daemon.events("decision: escalate")
    assert any("no answer by" in r for r in line["reasons"])
    late = cli(port, "approve", view["incident"])
    assert late.returncode == 1 and "409" in late.stderr
