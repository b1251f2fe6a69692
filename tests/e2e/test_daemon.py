"""`mlwatchdog run` end to end: the installed command as a real process, on files the test writes.

One incident from start to finish, with short times (interval 2s, window 12s, for 6s, verify 16s):
undrifted samples -> ready and healthy; drifted samples -> the checks go pending, then firing, and
exactly one dry-run rollback is decided and logged as the planned Kubernetes requests; more
evaluations do not act again; the rollback does not cure the (still drifting) samples, so the
target escalates. SIGTERM stops the daemon cleanly with exit 0. A restart on the same state_dir
restores the incident and does not roll back a second time. A config with `dry_run: false` is
refused at start.
"""

from __future__ import annotations

import json
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from mlwatchdog.replay import list_bundles, load_bundle
from tests.e2e.daemon_process import (
    COMMAND,
    FOR,
    TARGET,
    TRIGGER_CHECKS,
    DaemonProcess,
    Feeder,
    environment,
    evaluated_states,
    evaluations,
    is_ready,
    rollbacks,
    value,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(240)


# -------------------------------------------------------------------------------------- tests


def test_drift_rolls_back_once_in_dry_run_and_a_restart_does_not_repeat_it(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    daemon = DaemonProcess(config, port, tmp_path / "daemon-1.log")
    processes.append(daemon)

    # Alive, then ready once the target has been evaluated; healthy on undrifted samples.
    readiness: list[httpx.Response] = []
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon, readiness), timeout=30, every=0.05)
    for response in readiness[:-1]:  # if it was asked before the first evaluation ended
        assert response.status_code == 503
        assert response.json()["waiting_for_first_evaluation"] == [TARGET]
    assert readiness[-1].json() == {"status": "ready"}
    assert daemon.events("evaluated"), "ready before any evaluation was logged"
    assert evaluations(daemon) >= 1
    healthz = daemon.get("/healthz")
    assert healthz is not None and healthz.status_code == 200
    assert healthz.json() == {"status": "ok"}
    started = daemon.events("daemon started")
    assert started and started[0]["targets"] == [TARGET]

    # A couple of evaluations on undrifted samples: counted, with data, every check inactive.
    counted = wait_for(daemon, "3 evaluations", lambda: evaluations(daemon) >= 3 or None, 20)
    assert counted
    metrics = daemon.metrics()
    total = value(metrics, "mlwatchdog_evaluations_total", target=TARGET)
    assert value(metrics, "mlwatchdog_evaluations_total", target=TARGET, result="ok") == total
    assert value(metrics, "mlwatchdog_target_state", target=TARGET, state="healthy") == 1
    for check in TRIGGER_CHECKS:
        assert value(metrics, "mlwatchdog_check_state", target=TARGET, check=check) == 0
    assert not rollbacks(daemon)

    # Drift: each trigger check goes pending, then firing, then one dry-run rollback.
    feeder.drift.set()
    seen: dict[str, list[float]] = {check: [] for check in TRIGGER_CHECKS}

    def rolled_back() -> float | None:
        metrics = daemon.metrics()
        for check in TRIGGER_CHECKS:
            state = value(metrics, "mlwatchdog_check_state", target=TARGET, check=check)
            if state is not None and (not seen[check] or seen[check][-1] != state):
                seen[check].append(state)
        return value(
            metrics, "mlwatchdog_decisions_total", target=TARGET, kind="rollback", dry_run="true"
        )

    assert wait_for(daemon, "a dry-run rollback", rolled_back, timeout=60, every=0.1) == 1
    # The decision is counted before its evaluation's log line is written: wait for that line.
    wait_for(
        daemon,
        "the rollback's evaluation in the log",
        lambda: all(
            any(state == "firing" for _, state in evaluated_states(daemon, check))
            for check in TRIGGER_CHECKS
        ),
        timeout=15,
    )
    # /metrics counts the decision before the evaluation's check states are published (the
    # action runs in between): keep reading until they are.
    wait_for(
        daemon,
        "the trigger checks firing on /metrics",
        lambda: rolled_back() is not None and all(2 in seen[c] for c in TRIGGER_CHECKS),
        timeout=15,
        every=0.1,
    )
    for check in TRIGGER_CHECKS:
        states = seen[check]
        assert 1 in states and 2 in states, f"{check}: states seen {states}"
        assert states.index(1) < states.index(2), f"{check}: states seen {states}"
        # The log has every evaluation: firing only once the breach has lasted `for`.
        logged = evaluated_states(daemon, check)
        pending = next(at for at, state in logged if state == "pending")
        firing = next(at for at, state in logged if state == "firing")
        assert firing - pending >= timedelta(seconds=FOR), logged

    # The decision and the exact requests it would send, logged as JSON on stdout.
    (decision,) = daemon.events("decision: rollback")
    assert decision["target"] == TARGET
    assert decision["dry_run"] is True and decision["to"] == "prior"
    incident = decision["incident"]
    assert incident.startswith(f"{TARGET}-")
    assert any(r.startswith("prediction_drift:") for r in decision["reasons"])
    planned = daemon.events("dry-run rollback: would send")
    assert [(p["method"], p["path"], p["content_type"]) for p in planned] == [
        (
            "PATCH",
            "/apis/argoproj.io/v1alpha1/namespaces/models/rollouts/credit-model/status",
            "application/merge-patch+json",
        ),
        (
            "PATCH",
            "/apis/argoproj.io/v1alpha1/namespaces/models/rollouts/credit-model",
            "application/json-patch+json",
        ),
    ]
    assert planned[0]["body"] == {"status": {"abort": True}}
    assert all(p["incident"] == incident for p in planned)
    assert all(p["workload"] == "argo-rollout/models/credit-model" for p in planned)
    (outcome,) = daemon.events("action outcome")
    assert outcome["ok"] is True and outcome["state"] == "verifying"
    assert "none sent" in outcome["detail"]

    # The samples keep drifting: more evaluations, no second rollback for the same incident, and
    # once verify.window is over, the incident escalates to a human instead.
    after = evaluations(daemon)
    wait_for(daemon, "4 more evaluations", lambda: evaluations(daemon) >= after + 4 or None, 20)
    assert rollbacks(daemon) == 1
    wait_for(
        daemon,
        "the escalation after verify.window",
        lambda: daemon.targets()[TARGET]["phase"] == "escalated",
        timeout=20,
    )
    after = evaluations(daemon)
    wait_for(daemon, "2 more evaluations", lambda: evaluations(daemon) >= after + 2 or None, 10)
    metrics = daemon.metrics()
    assert value(metrics, "mlwatchdog_decisions_total", target=TARGET, kind="rollback") == 1
    assert value(metrics, "mlwatchdog_decisions_total", target=TARGET, kind="escalate") == 1
    assert value(metrics, "mlwatchdog_target_state", target=TARGET, state="escalated") == 1
    assert len(daemon.events("decision: rollback")) == 1
    assert len(daemon.events("dry-run rollback: would send")) == 2
    persisted = daemon.targets()[TARGET]
    assert persisted["incident"]["id"] == incident
    assert persisted["incident"]["acted_at"] is not None

    # SIGTERM: the running evaluation finishes, the daemon says so and exits 0 within seconds.
    code, seconds = daemon.stop()
    assert code == 0, f"exit code {code} after SIGTERM"
    assert seconds < 5
    assert daemon.logs()[-1]["event"] == "daemon stopped"
    assert "Traceback" not in daemon.text()
    saved = json.loads((tmp_path / "state" / f"{TARGET}.json").read_text())
    assert saved["phase"] == "escalated" and saved["incident"]["id"] == incident

    # Restart on the same state_dir (another port, given on the command line): the incident is
    # restored, the samples still drift, and nothing is rolled back again.
    port2 = free_port()
    again = DaemonProcess(config, port2, tmp_path / "daemon-2.log", "--port", str(port2))
    processes.append(again)
    wait_for(again, "/readyz 200 after the restart", lambda: is_ready(again), timeout=30)
    (restored,) = again.events("state restored")
    assert restored["state"] == "escalated" and restored["incident"] == incident
    targets = again.targets()[TARGET]
    assert targets["phase"] == "escalated"
    assert targets["incident"]["id"] == incident
    assert targets["incident"]["acted_at"] == persisted["incident"]["acted_at"]
    wait_for(again, "3 evaluations after the restart", lambda: evaluations(again) >= 3 or None, 20)
    metrics = again.metrics()
    assert not value(metrics, "mlwatchdog_decisions_total", target=TARGET, kind="rollback")
    assert value(metrics, "mlwatchdog_target_state", target=TARGET, state="escalated") == 1
    assert again.events("decision: rollback") == []
    assert again.events("dry-run rollback: would send") == []
    assert again.targets()[TARGET]["phase"] == "escalated"

    code, seconds = again.stop()
    assert code == 0 and seconds < 5
    assert again.logs()[-1]["event"] == "daemon stopped"
    assert feeder.error is None

    # The incident was recorded as bundles (beside state_dir): the rollback replays exactly.
    written = list_bundles(str(tmp_path / "bundles"))
    [rollback] = [b for b in written if b.endswith("-decision-rollback")]
    assert load_bundle(rollback).replay().same_as_recorded
    assert any(b.endswith("-decision-escalate") for b in written)


def test_dry_run_false_without_kubernetes_is_refused_at_start(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, dry_run=False)
    done = subprocess.run(
        [COMMAND, "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=environment(),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert f"target(s) ['{TARGET}'] set rollback.dry_run: false" in done.stderr
    assert "there is no Kubernetes API to act on" in done.stderr
    assert "or keep dry_run: true" in done.stderr
    assert "daemon started" not in done.stdout and "http listening" not in done.stdout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # nothing was served
        assert sock.connect_ex(("127.0.0.1", port)) != 0
