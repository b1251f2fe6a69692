"""SIGTERM on a saturated daemon: the evaluations running finish, the ones queued behind them are
dropped instead of run. A leader keeps its Lease (and Kubernetes its pod) until the scheduler has
stopped, so running a queue of one evaluation per target first delayed the heir by as long (about
15 s at 100 targets on 2 cores; minutes at 2,000)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.e2e.daemon_process import (
    TARGET,
    DaemonProcess,
    Feeder,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

COPIES = 120  # alert-only copies of the target, all due at start: a queue for the 4 threads
WORKERS = 4  # the daemon's scheduler threads (Daemon(workers=4))


def saturated_config(tmp_path: Path, port: int) -> Path:
    path = write_config(tmp_path, port)
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    (target,) = rules["targets"]
    # Long enough that a queued evaluation is still within its misfire grace (the interval)
    # when its turn comes: APScheduler drops a later one by itself ("was missed by").
    target["interval"] = "60s"
    rules["targets"] += [
        {**target, "name": f"{TARGET}-{i}", "workload": {}} for i in range(COPIES)
    ]
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
