"""`mlwatchdog run` within its `daemon.http` limits, as a real process talked to with raw sockets:
a connection beyond `max_connections` gets 503, an unfinished head or body is answered 408 and
closed, idle connections do not keep their descriptors, a streamed oversized header gets 431,
and SIGTERM still stops it with exit 0. The limits case by case: tests/integration/test_http_limits.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import yaml

from tests.e2e.daemon_process import DaemonProcess, wait_for, write_config
from tests.servers.limited_http import body, connect, request, status, wait_closed
from tests.servers.ports import free_port

LIMITS = {
    "max_header_bytes": 4096,
    "header_timeout": "1s",
    "body_timeout": "1s",
    "max_connections": 8,
    "keep_alive": "1s",
}
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def test_the_daemon_serves_within_its_http_limits(
    tmp_path: Path, processes: list[DaemonProcess]
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    rules = yaml.safe_load(config.read_text())
    rules["daemon"]["http"].update(LIMITS)
    rules["targets"][0]["interval"] = "1h"  # one evaluation at start, then a quiet process
    config.write_text(yaml.safe_dump(rules, sort_keys=False))
    daemon = DaemonProcess(config, port, tmp_path / "daemon.out")
    processes.append(daemon)
    wait_for(daemon, "the first evaluation", lambda: daemon.events("evaluated"), 60)
    daemon.http.close()  # the harness' kept-alive connection is not part of this test
    process = psutil.Process(daemon.proc.pid)

    def clients() -> list[object]:
        return [c for c in process.net_connections("tcp") if c.status != psutil.CONN_LISTEN]

    wait_for(daemon, "no client connected", lambda: not clients() or None, 10)
    baseline = process.num_fds()

    opened = time.monotonic()
    head, body_ = connect(port), connect(port)
    head.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    body_.sendall(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    idle = [connect(port) for _ in range(18)]  # with the two above: 8 open, 12 refused
    try:
        with connect(port) as sock:
            refused = request(sock, HEALTHZ)
        assert status(refused) == 503 and b"daemon.http.max_connections" in body(refused)
        for sock, setting in ((head, b"header_timeout"), (body_, b"body_timeout")):
            closed, received = wait_closed(sock, opened + 4)
            assert closed is not None and status(received) == 408, received
            assert b"daemon.http." + setting in body(received)
            sock.close()
        # the idle connections are closed by the daemon, though the clients keep them open
        wait_for(daemon, "the daemon's connections closed", lambda: not clients() or None, 4)
        wait_for(daemon, "its descriptors back", lambda: process.num_fds() <= baseline, 4)
        assert all(wait_closed(sock, time.monotonic() + 1)[0] is not None for sock in idle)
    finally:
        for sock in idle:
            sock.close()

    with connect(port) as sock:  # served again
        assert status(request(sock, HEALTHZ)) == 200
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(64):  # 64 MiB, streamed, unless the daemon answers first
            try:
                sock.sendall(b"a" * (1 << 20))
            except OSError:
                break
        _, refused = wait_closed(sock, time.monotonic() + 5)
    assert status(refused) == 431, refused[:300]

    code, _ = daemon.stop()
    assert code == 0
