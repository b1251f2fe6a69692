"""`mlwatchdog run` with few file descriptors (RLIMIT_NOFILE 64) under a flood of connections: its
state saves fail with EMFILE ("Too many open files"); it stays up, says so (the log, /metrics,
/readyz 503, read over a connection opened before the flood), and recovers once the connections
go.

The limit: at rest the daemon holds about 15 descriptors (stdio, the event loop's epoll, eventfd
and pipes, the listening socket, libuv's spare descriptor); an evaluation briefly opens its
window's sample files (a dozen here) and the state file. 64 leaves it ample room for that, and
about 50 idle connections (each holds one descriptor until its header_timeout, set to a minute
here) take the rest. The flood keeps opening connections, so a descriptor the daemon frees is
soon taken again.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import threading
from pathlib import Path

import pytest
import yaml

from tests.e2e.daemon_process import (
    TARGET,
    DaemonProcess,
    Feeder,
    is_ready,
    value,
    wait_for,
    write_config,
)
from tests.faults.probes import not_ready
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(120)
LIMIT = 64
EMFILE = "Too many open files"


class Flood(threading.Thread):
    """Opens idle connections to the daemon, one every 10 ms (at most `most`), until closed."""

    def __init__(self, port: int, most: int = 1500) -> None:
        super().__init__(name="flood", daemon=True)
        self.port = port
        self.most = most
        self.sockets: list[socket.socket] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01) and len(self.sockets) < self.most:
            with contextlib.suppress(OSError):  # refused or reset: the daemon is out of them
                self.sockets.append(socket.create_connection(("127.0.0.1", self.port), 1))

    def close(self) -> None:
        self.done.set()
        self.join(10)
        for sock in self.sockets:
            sock.close()


def open_descriptors(daemon: DaemonProcess) -> int:
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def test_out_of_file_descriptors_it_stays_up_says_so_and_recovers(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    rules = yaml.safe_load(config.read_text())
    rules["daemon"]["http"].update(header_timeout="60s", keep_alive="60s")
    config.write_text(yaml.safe_dump(rules, sort_keys=False))
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    processes.append(daemon)
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE, (LIMIT, LIMIT))
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=30)
    resting = open_descriptors(daemon)
    assert resting < LIMIT // 2, f"{resting} descriptors at rest: the limit explained is off"
    # This connection, opened now and kept alive, is how the test sees the daemon in the flood.
    ok_before = value(daemon.metrics(), "mlwatchdog_evaluations_total", result="ok") or 0

    flood = Flood(port)
    flood.start()
    try:
        wait_for(daemon, "the descriptors used up", lambda: open_descriptors(daemon) >= LIMIT, 20)
        wait_for(daemon, "a state save failing with EMFILE", lambda: any(
            EMFILE in e["error"] for e in daemon.events("state write failing; kept and retried")
        ), timeout=30)  # fmt: skip
        body = wait_for(
            daemon,
            "/readyz 503 naming the state write",
            lambda: not_ready(daemon, f"state at {TARGET}"),
            timeout=30,
            every=0.05,
        )
        assert EMFILE in body["failing_writes"][f"state at {TARGET}"]
        metrics = daemon.metrics()
        assert metrics, "/metrics did not answer on the open connection"
        assert (value(metrics, "mlwatchdog_write_failures_total", what="state") or 0) >= 1
        assert daemon.proc.poll() is None
    finally:
        flood.close()

    # The connections are gone: descriptors free again, the next save goes through.
    wait_for(daemon, "/readyz 200 again", lambda: is_ready(daemon), timeout=30)
    wait_for(daemon, "the state written again", lambda: daemon.events("state written again"), 10)
    metrics = daemon.metrics()
    assert value(metrics, "mlwatchdog_writes_failing", what="state") == 0
    ok = value(metrics, "mlwatchdog_evaluations_total", result="ok") or 0
    wait_for(daemon, "2 more evaluations with data", lambda: (
        (value(daemon.metrics(), "mlwatchdog_evaluations_total", result="ok") or 0) >= ok + 2
    ), timeout=20)  # fmt: skip
    assert ok_before >= 1
    healthz = daemon.get("/healthz")
    assert healthz is not None and healthz.status_code == 200
    code, _ = daemon.stop()
    assert code == 0
