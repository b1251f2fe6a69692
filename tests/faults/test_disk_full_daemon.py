"""`mlwatchdog run` on a disk that fills up while drift builds up: the rollback waits until its
state can be saved, and then nothing is lost.

Two small tmpfs mounts: one holds the state folder (with the journal), the other the audit trail
and the incident bundles; the live samples are elsewhere. Once both trigger checks are pending,
both disks are filled. The rollback decision then cannot be saved, so it is dropped every
evaluation and nothing is carried out, and the daemon says so: /metrics counts the failed writes,
the log has the error, /readyz is 503 naming the state write, and /metrics shows the state the
daemon holds. With the state disk free again (the other still full) the rollback is decided and
carried out once; its audit record and its bundle are kept and retried. With both free, /readyz is
200, the audit trail has the one record, the journal every phase and decision the log has, and
every bundle replays bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwatchdog.replay import list_bundles, load_bundle
from tests.e2e.daemon_process import (
    TARGET,
    TRIGGER_CHECKS,
    DaemonProcess,
    Feeder,
    is_ready,
    rollbacks,
    value,
    wait_for,
    write_config,
)
from tests.faults.disk import Filler, tmpfs
from tests.faults.probes import not_ready
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(180)
DROPPED = (
    "state not saved: this evaluation is dropped and its decisions not carried out; "
    "the next evaluation decides again"
)


def dropped_rollbacks(daemon: DaemonProcess) -> int:
    return sum("rollback" in e["decisions"] for e in daemon.events(DROPPED))


def wait_for_log(daemon: DaemonProcess, event: str) -> None:
    """Wait (briefly) for `event` in the log: it is written just after /readyz and /metrics
    can show what it says."""
    wait_for(daemon, f"{event!r} in the log", lambda: daemon.events(event), timeout=5)


def journal_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_full_disk_holds_the_rollback_until_its_state_is_saved_and_loses_nothing(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    with (
        tmpfs(tmp_path / "state-disk", "16m") as state_disk,
        tmpfs(tmp_path / "records-disk", "16m") as records_disk,
    ):
        port = free_port()
        config = write_config(tmp_path, port)
        rules = yaml.safe_load(config.read_text())
        audit = records_disk / "audit.jsonl"
        rules["daemon"].update(
            state_dir=str(state_disk / "state"),
            audit_log=str(audit),
            bundles={"path": str(records_disk / "bundles")},
        )
        config.write_text(yaml.safe_dump(rules, sort_keys=False))
        daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
        processes.append(daemon)
        wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=30)

        # Drift: once both trigger checks are pending (saved), the disks fill up.
        feeder.drift.set()

        def both_pending() -> bool:
            metrics = daemon.metrics()
            if value(metrics, "mlwatchdog_decisions_total", target=TARGET, kind="rollback"):
                pytest.fail("rolled back before the disks could be filled: the machine is too slow")
            states = [value(metrics, "mlwatchdog_check_state", target=TARGET, check=c)
                      for c in TRIGGER_CHECKS]  # fmt: skip
            return all(s is not None and s >= 1 for s in states)

        wait_for(daemon, "both trigger checks pending", both_pending, timeout=40, every=0.05)
        state_filler, records_filler = Filler(state_disk), Filler(records_disk)
        state_filler.fill()
        records_filler.fill()

        # The rollback is decided, cannot be saved, and is dropped: twice, so it was retried.
        wait_for(daemon, "2 dropped rollbacks", lambda: dropped_rollbacks(daemon) >= 2, 40)
        metrics = daemon.metrics()
        assert (value(metrics, "mlwatchdog_write_failures_total", what="state") or 0) >= 2
        assert value(metrics, "mlwatchdog_writes_failing", what="state") == 1
        assert not rollbacks(daemon)  # nothing carried out
        assert not value(metrics, "mlwatchdog_actions_total", target=TARGET)
        assert not audit.exists()  # no dry-run record either
        [error] = daemon.events("state write failing; kept and retried")
        assert error["level"] == "error" and error["where"] == TARGET
        assert "No space left on device" in error["error"]
        body = not_ready(daemon)
        assert body is not None, "/readyz is not 503 while the state cannot be saved"
        assert list(body["failing_writes"]) == [f"state at {TARGET}"]
        assert "No space left on device" in body["failing_writes"][f"state at {TARGET}"]
        # /metrics shows the state the daemon holds (the last one saved), not the dropped one.
        held = daemon.targets()[TARGET]
        assert held["phase"] == "degraded"
        metrics = daemon.metrics()
        assert value(metrics, "mlwatchdog_target_state", target=TARGET, state="degraded") == 1
        for check, record in held["checks"].items():
            shown = value(metrics, "mlwatchdog_check_state", target=TARGET, check=check)
            assert shown == record["state"], check

        # The state disk has room again (the other is still full): decided and carried out once.
        state_filler.free()
        wait_for(daemon, "the dry-run rollback", lambda: rollbacks(daemon) == 1, timeout=20)
        wait_for(daemon, "/readyz naming the audit and the bundle writes", lambda: (
            (body := not_ready(daemon)) is not None
            and sorted(k.split(" at ")[0] for k in body["failing_writes"]) == ["audit", "bundle"]
        ), timeout=20)  # fmt: skip
        metrics = daemon.metrics()
        assert value(metrics, "mlwatchdog_writes_failing", what="state") == 0
        assert value(metrics, "mlwatchdog_actions_total", target=TARGET, result="dry_run") == 1
        for what in ("audit", "bundle"):  # logged just after /readyz can show it
            wait_for_log(daemon, f"{what} write failing; kept and retried")

        # Both disks free: what was kept is written; ready again.
        records_filler.free()
        wait_for(daemon, "/readyz 200 again", lambda: is_ready(daemon), timeout=20)
        metrics = daemon.metrics()
        for what in ("state", "audit", "journal", "bundle"):
            assert value(metrics, "mlwatchdog_writes_failing", what=what) == 0, what
        for what in ("state", "audit", "bundle"):
            assert (value(metrics, "mlwatchdog_write_failures_total", what=what) or 0) >= 1, what
            wait_for_log(daemon, f"{what} written again")

        code, _ = daemon.stop()
        assert code == 0
        assert not daemon.events("audit records lost at exit: they could not be written")
        assert not daemon.events("journal records lost at exit: they could not be written")

        # Exactly once, and nothing lost: the audit trail, the journal and the log agree.
        [decision] = daemon.events("decision: rollback")
        [record] = journal_of(audit)
        assert record["result"] == "dry_run" and record["incident"] == decision["incident"]
        journal = journal_of(state_disk / "state" / "journal.jsonl")
        logged: list[str] = []
        for line in daemon.events("evaluated"):
            if not logged or logged[-1] != line["state"]:
                logged.append(line["state"])
        assert [e["phase"] for e in journal if e["kind"] == "phase"] == logged
        # Healthy until the drift (a chance breach of the calm window may already show degraded
        # when a loaded machine starves the feeder), then degraded; verifying only after the act.
        verifying = logged.index("verifying")
        assert logged[0] in ("healthy", "degraded") and logged[verifying - 1] == "degraded"
        assert set(logged[:verifying]) <= {"healthy", "degraded"}, logged
        decided = [e["event"].removeprefix("decision: ") for e in daemon.logs()
                   if e["event"].startswith("decision: ")]  # fmt: skip
        assert [e["decision"] for e in journal if e["kind"] == "decision"] == decided
        actions = [e for e in journal if e["kind"] == "action"]
        assert len(actions) == len(daemon.events("action outcome")) == 1

        # Every bundle replays bit for bit; the rollback's, written late, has its audit record.
        bundles = list_bundles(str(records_disk / "bundles"))
        for path in bundles:
            assert load_bundle(path).replay().differences() == [], path
        [rollback] = [b for b in bundles if b.endswith("decision-rollback")]
        [action] = load_bundle(rollback).manifest["actions"]
        assert action == record
