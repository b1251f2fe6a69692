"""A saturated daemon says so, and stops at once.

Evaluations it cannot run in time are counted (mlwatchdog_evaluations_skipped_total) and told in
one warning a minute, not in a line per skipped run. SIGTERM: the evaluations running finish, the
ones queued behind them are dropped instead of run. A leader keeps its Lease (and Kubernetes its
pod) until the scheduler has stopped, so running a queue of one evaluation per target first
delayed the heir by as long (about 15 s at 100 targets on 2 cores; minutes at 2,000)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.e2e.daemon_process import (
    TARGET,
    DaemonProcess,
    Feeder,
    value,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

COPIES = 120  # alert-only copies of the target, all due at start: a queue for the 4 threads
WORKERS = 4  # the daemon's scheduler threads (Daemon(workers=4))


def saturated_config(tmp_path: Path, port: int, interval: str = "60s") -> Path:
    path = write_config(tmp_path, port)
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    (target,) = rules["targets"]
    # Long enough that a queued evaluation is still within its misfire grace (the interval)
    # when its turn comes: APScheduler drops a later one by itself ("was missed by").
    target["interval"] = interval
    rules["targets"] += [{**target, "name": f"{TARGET}-{i}", "workload": {}} for i in range(COPIES)]
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def test_sigterm_drops_the_queued_evaluations(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    daemon = DaemonProcess(saturated_config(tmp_path, port), port, tmp_path / "daemon.log")
    processes.append(daemon)
    wait_for(daemon, "8 evaluations", lambda: len(daemon.events("evaluated")) >= 8, timeout=120)

    code, seconds = daemon.stop(timeout=120)
    assert code == 0, f"exit code {code} after SIGTERM"
    logs = daemon.logs()
    events = [line.get("event") for line in logs]
    stopping = events.index("daemon stopping")
    after = events[stopping:].count("evaluated")
    assert after <= WORKERS, f"{after} evaluations ran after the daemon began to stop"
    stopped = logs[-1]
    assert stopped["event"] == "daemon stopped"
    assert stopped["evaluations_dropped"] >= 1, stopped
    assert "Traceback" not in daemon.text()
    print(f"exited {seconds:.1f} s after SIGTERM; {stopped['evaluations_dropped']} dropped")


def test_skipped_evaluations_are_counted_and_told_once(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = saturated_config(tmp_path, port, interval="1s")  # asks ~120 evaluations a second
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    processes.append(daemon)

    def skipped() -> float | None:
        metrics = daemon.metrics()
        busy = value(metrics, "mlwatchdog_evaluations_skipped_total", reason="busy")
        return busy if busy and busy >= COPIES else None

    busy = wait_for(daemon, f"{COPIES} evaluations skipped as busy", skipped, timeout=180)
    assert daemon.stop(timeout=120)[0] == 0
    [told] = daemon.events(
        "evaluations skipped: the daemon cannot keep up with its targets' intervals; lengthen "
        "them, or split the targets across replicas (leader_election.shards)"
    )  # the first at once, the next a minute later at most
    assert told["level"] == "warning" and told["busy"] + told["late"] >= 1
    assert set(told["targets"]) <= {TARGET, *(f"{TARGET}-{i}" for i in range(COPIES))}
    text = daemon.text()
    assert "maximum number of running instances" not in text and "was missed by" not in text
    assert all(line.startswith("{") for line in text.splitlines() if line.strip()), (
        "a line not in the daemon's JSON format"
    )
    print(f"{busy:.0f} skipped as busy")
