"""`mlwatchdog sink` whose store's disk fills up: it refuses the events it cannot store (503
not_stored), says so (/readyz 503 naming the sink's store, so the Service sends it no more events;
/metrics; the log), and takes events again once the disk has room: the next event is stored, or,
when none comes (the pod out of its Service), the store's own probe notices.

The sink folder is on a small tmpfs; the state folder is elsewhere.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from mlwatchdog.sources.kserve.lines import decode
from tests.e2e.daemon_process import DaemonProcess, is_ready, value, wait_for
from tests.faults.disk import Filler, tmpfs
from tests.faults.probes import not_ready
from tests.integration.test_kserve_sink import headers
from tests.integration.test_kserve_sink import write_config as sink_config
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(120)
ENOSPC = "No space left on device"
FAILING = "sink write failing; events refused (503 not_stored) until the store takes a write again"


class Sender:
    """Posts KServe logger request events, each its own ce-id; keeps the acknowledged ids."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.sent = 0
        self.acknowledged: list[str] = []
        self.at = datetime.now(UTC) - timedelta(seconds=30)

    def post(self) -> httpx.Response:
        ce_id = f"r{self.sent}"
        body = {"instances": [[self.sent, 1.0, "web"]]}
        self.sent += 1
        answer = self.daemon.http.post(
            "/sink/kserve",
            content=json.dumps(body).encode(),
            headers=headers("request", ce_id, self.at),
        )
        if answer.status_code == 200:
            self.acknowledged.append(ce_id)
        return answer

    def until_refused(self) -> httpx.Response:
        """Posts until an event is refused: the last partition file's last block may still
        take a few lines after the disk filled up."""
        for _ in range(200):
            answer = self.post()
            if answer.status_code != 200:
                return answer
        pytest.fail("200 events stored on a full disk")


def stored_ids(folder: Path) -> set[str]:
    """The ce-ids of the events stored under `folder` (a torn line is no event)."""
    found = set()
    for file in folder.rglob("*.jsonl"):
        for line in file.read_bytes().splitlines():
            try:
                found.add(decode(line).id)
            except ValueError:
                continue
    return found


def failing_sink(daemon: DaemonProcess) -> float | None:
    return value(daemon.metrics(), "mlwatchdog_writes_failing", what="sink")


def test_a_sink_on_a_full_disk_refuses_events_leaves_the_service_and_comes_back(
    tmp_path: Path, processes: list[DaemonProcess]
) -> None:
    with tmpfs(tmp_path / "sink-disk", "16m") as disk:
        port = free_port()
        config = sink_config(tmp_path, port)
        rules = yaml.safe_load(config.read_text())
        store = str(disk / "sink")
        rules["daemon"]["sink"]["path"] = store
        config.write_text(yaml.safe_dump(rules, sort_keys=False))
        daemon = DaemonProcess(config, port, tmp_path / "sink.log", command="sink")
        processes.append(daemon)
        wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=30)
        sender = Sender(daemon)
        assert sender.post().status_code == 200
        assert failing_sink(daemon) == 0  # exported from the start, for the alert

        # The disk fills up: events are refused, and the pod says it cannot take them.
        filler = Filler(disk)
        filler.fill()
        refused = sender.until_refused()
        assert refused.status_code == 503, refused.text
        assert ENOSPC in refused.json()["detail"]
        body = not_ready(daemon)
        assert body is not None, "/readyz is not 503 while the sink cannot store"
        assert list(body["failing_writes"]) == [f"sink at {store}"]
        assert ENOSPC in body["failing_writes"][f"sink at {store}"]
        metrics = daemon.metrics()
        assert value(metrics, "mlwatchdog_writes_failing", what="sink") == 1
        assert (value(metrics, "mlwatchdog_write_failures_total", what="sink") or 0) >= 1
        assert (
            value(metrics, "mlwatchdog_sink_events_total", result="refused", reason="not_stored")
            == 1
        )
        [error] = wait_for(daemon, "the error in the log", lambda: daemon.events(FAILING), 5)
        assert error["level"] == "error" and error["where"] == store
        assert ENOSPC in error["error"]
        assert sender.post().status_code == 503  # still full: refused again, still not ready
        assert not_ready(daemon, f"sink at {store}") is not None

        # Room again: the next event is stored, and the pod is ready again at once.
        filler.free()
        assert sender.post().status_code == 200
        assert is_ready(daemon)
        assert failing_sink(daemon) == 0
        wait_for(daemon, "'sink written again' in the log",
                 lambda: daemon.events("sink written again"), 5)  # fmt: skip

        # Full again, until the pod is out of its Service: no event comes to try the store.
        filler.fill()
        assert sender.until_refused().status_code == 503
        assert not_ready(daemon, f"sink at {store}") is not None
        filler.free()
        wait_for(daemon, "/readyz 200 without an event (the store's probe)",
                 lambda: is_ready(daemon), timeout=20)  # fmt: skip
        assert failing_sink(daemon) == 0
        wait_for(daemon, "'sink written again' twice in the log",
                 lambda: len(daemon.events("sink written again")) == 2, 5)  # fmt: skip
        again = daemon.events("sink written again")[-1]
        assert again["level"] == "warning" and again["where"] == store
        assert sender.post().status_code == 200

        # Every acknowledged event is stored.
        code, _ = daemon.stop()
        assert code == 0
        assert set(sender.acknowledged) <= stored_ids(disk / "sink")
        assert len(sender.acknowledged) >= 4
