"""The daemon's HTTP limits (`daemon.http`, `mlwatchdog.daemon.http_server`) on a real uvicorn,
talked to with raw sockets: on httptools and uvloop (what uvicorn runs with its extras
installed) and on h11 and asyncio (what it runs without them, as `pip install mlwatchdog`
does). Limits: heads of 4 KiB, 1 s for a head, 1 s for a body, 8 connections, 1 s of
keep-alive idle. `tests/e2e/test_daemon_http_limits.py` checks them in `mlwatchdog run`.
"""

from __future__ import annotations

import importlib.util
import select
import socket
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from mlwatchdog.daemon.http_server import HTTPTOOLS
from tests.servers.limited_http import (
    Running,
    TinyApp,
    body,
    connect,
    first_response,
    peak_rss,
    process_server,
    read_response,
    request,
    settings,
    status,
    thread_server,
    wait_closed,
)
from tests.servers.ports import free_port

UVLOOP = importlib.util.find_spec("uvloop") is not None
STACKS = (["httptools+uvloop"] if HTTPTOOLS and UVLOOP else []) + ["h11+asyncio"]
MAX_HEADER = 4096
TIMEOUT = 1.0  # header_timeout, body_timeout and keep_alive
SLACK = 1.5  # how much later than its limit a connection may close on a busy machine
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app() -> TinyApp:
    return TinyApp()


@pytest.fixture
def served(app: TinyApp, stack: str) -> Iterator[Running]:
    with thread_server(app.asgi(), settings(), stack) as running:
        yield running


def head_of(size: int) -> bytes:
    """A GET whose request line and headers are exactly `size` bytes."""
    start, end = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


def wait_until(what: str, probe: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"no {what} within {timeout:g}s"
        time.sleep(0.02)


def assert_closed_in_time(sock: socket.socket, opened: float, limit: float) -> bytes:
    """The server closes `sock` about `limit` seconds after `opened`; what it sent."""
    closed, received = wait_closed(sock, opened + limit + SLACK)
    assert closed is not None, f"still open {limit + SLACK:g}s on (limit {limit:g}s)"
    assert closed - opened >= limit - 0.2, f"closed after {closed - opened:.2f}s, before {limit}s"
    return received


# --------------------------------------------------------------------------------- within limits


def test_requests_within_the_limits_are_served(served: Running) -> None:
    with connect(served.port) as sock:  # one kept-alive connection for all of these
        for raw in (GET, GET, head_of(MAX_HEADER)):
            response = request(sock, raw)
            assert status(response) == 200 and body(response) == b"ok 0", response
        big = 5 * 1024 * 1024
        response = request(
            sock, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % big + b"b" * big
        )
        assert body(response) == b"ok %d" % big, response[:300]
        # a body in pieces, each well within the deadline of the whole
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n")
        for _ in range(3):
            time.sleep(0.1)  # the client's pace, not a wait for the server
            sock.sendall(b"c" * 10)
        assert body(read_response(sock)) == b"ok 30"


# --------------------------------------------------------------------------------- header size


def test_a_head_over_max_header_bytes_gets_431_and_is_closed(served: Running) -> None:
    with connect(served.port) as sock:
        opened = time.monotonic()
        sock.sendall(head_of(MAX_HEADER + 1))
        closed, received = wait_closed(sock, opened + 5)
        assert status(received) == 431, received
        assert b"daemon.http.max_header_bytes" in body(received)
        assert closed is not None, "the connection stayed open after the 431"
    with connect(served.port) as sock:  # the server serves on
        assert status(request(sock, GET)) == 200


def test_an_oversized_pipelined_head_is_not_answered_in_place_of_the_one_before(
    served: Running, app: TinyApp
) -> None:
    with connect(served.port) as sock:
        sock.sendall(
            b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
            + b"a" * 4 * MAX_HEADER
        )
        wait_until("the held request running", lambda: served.server.server_state.tasks, 5)
        app.gate.set()
        closed, received = wait_closed(sock, time.monotonic() + 5)
    # closed with nothing said (httptools reads on), or the first answer in its place (h11
    # reads no further until it is sent): never a 4xx the client would take for the first's
    assert closed is not None
    assert received == b"" or body(first_response(received)) == b"released", received


def test_a_200_mib_header_is_cut_off_without_being_buffered(stack: str) -> None:
    port = free_port()
    with process_server(port, settings(), stack) as proc:
        for _ in range(20):  # warm up: what serving itself needs is allocated before the baseline
            with connect(port) as sock:
                assert status(request(sock, head_of(MAX_HEADER))) == 200
        before = peak_rss(proc.pid)
        chunk, sent, response = b"a" * (1 << 20), 0, b""
        with connect(port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
            deadline = time.monotonic() + 20
            while sent < 200 * (1 << 20) and time.monotonic() < deadline:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered
                try:
                    sock.sendall(chunk)
                except OSError:  # it closed (after answering: read below)
                    break
                sent += len(chunk)
            _, response = wait_closed(sock, time.monotonic() + 5)
        grown = peak_rss(proc.pid) - before
    assert grown < 8 * (1 << 20), f"the server's peak memory grew by {grown / (1 << 20):.1f} MiB"
    assert status(response) == 431, response[:300]
    # what the client could send before it saw the answer: the limit, plus what the kernel's
    # socket buffers took (a few MiB on loopback)
    assert sent < 32 * (1 << 20), f"{sent / (1 << 20):.0f} MiB were sent before the 431"


# --------------------------------------------------------------------------------- timeouts


def test_a_head_must_be_complete_within_header_timeout(served: Running) -> None:
    with connect(served.port) as silent, connect(served.port) as partial:
        opened = time.monotonic()
        partial.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
        received = assert_closed_in_time(partial, opened, TIMEOUT)
        assert status(received) == 408, received
        assert b"daemon.http.header_timeout" in body(received)
        # a connection that never sent a byte is closed too, without an answer to nothing
        assert assert_closed_in_time(silent, opened, TIMEOUT) == b""


def test_a_slowloris_head_is_cut_at_header_timeout_in_total(served: Running) -> None:
    with connect(served.port) as sock:
        opened = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        received, closed = b"", None
        while closed is None and time.monotonic() < opened + TIMEOUT + SLACK:
            if select.select([sock], [], [], 0.2)[0]:  # one byte every 200 ms
                chunk = sock.recv(65536)
                received += chunk
                closed = None if chunk else time.monotonic()
            else:
                sock.sendall(b"s")
    assert closed is not None, f"a head trickled for {TIMEOUT + SLACK:g}s is still being read"
    assert closed - opened >= TIMEOUT - 0.2
    assert status(received) == 408, received


def test_a_body_must_be_complete_within_body_timeout(served: Running, app: TinyApp) -> None:
    with connect(served.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"b" * 10)
        received = assert_closed_in_time(sock, time.monotonic(), TIMEOUT)
    assert status(received) == 408, received
    assert b"daemon.http.body_timeout" in body(received)
    # the app was told the client is gone, and no task is left waiting for the body
    wait_until("disconnect seen by the app", lambda: app.disconnects == ["/"], 5)
    wait_until("end of the request's task", lambda: not served.server.server_state.tasks, 5)


def test_an_idle_kept_alive_connection_closes_after_keep_alive(served: Running) -> None:
    with connect(served.port) as sock:
        assert status(request(sock, GET)) == 200
        assert assert_closed_in_time(sock, time.monotonic(), TIMEOUT) == b""


def test_shutdown_does_not_wait_for_slow_clients(app: TinyApp, stack: str) -> None:
    with thread_server(app.asgi(), settings(), stack) as running:
        port = running.port
        with (
            connect(port) as idle,
            connect(port) as head,
            connect(port) as body_,
            connect(port) as kept,
        ):
            head.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            body_.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nb")
            assert status(request(kept, GET)) == 200
            stopping = time.monotonic()
            running.server.should_exit = True
            running.thread.join(TIMEOUT + SLACK + 1)
            assert not running.thread.is_alive(), "the server still waits for slow clients"
            assert time.monotonic() - stopping < TIMEOUT + SLACK + 1
            for sock in (idle, head, body_, kept):  # every connection was closed
                assert wait_closed(sock, time.monotonic() + 1)[0] is not None


# --------------------------------------------------------------------------------- connections


def test_a_connection_beyond_max_connections_gets_503_at_once(app: TinyApp, stack: str) -> None:
    limits = settings(keep_alive="30s", header_timeout="30s")  # only max_connections closes here
    with thread_server(app.asgi(), limits, stack) as running:
        first = [connect(running.port) for _ in range(8)]
        try:
            for sock in first[:4]:  # 4 served and kept alive, 4 not asked anything yet
                assert status(request(sock, GET)) == 200
            for ask in (False, True):
                with connect(running.port) as ninth:
                    if ask:
                        ninth.sendall(GET)
                    closed, received = wait_closed(ninth, time.monotonic() + 5)
                    assert status(received) == 503, received
                    assert b"daemon.http.max_connections" in body(received)
                    assert closed is not None
            for sock in first:  # the connections open are served on
                assert status(request(sock, GET)) == 200
            first.pop().close()  # a place frees up once one of them closes

            def served_anew() -> bool:
                with connect(running.port) as sock:
                    return status(request(sock, GET)) == 200

            wait_until("a new connection served", served_anew, 5)
        finally:
            for sock in first:
                sock.close()


def test_requests_still_running_count_toward_max_connections(app: TinyApp, stack: str) -> None:
    with thread_server(app.asgi(), settings(), stack) as running:
        tasks, connections = (
            running.server.server_state.tasks,
            running.server.server_state.connections,
        )
        for n in range(1, 10):  # clients that ask for something slow and leave, one at a time
            with connect(running.port) as sock:
                sock.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(f"{n} requests running", lambda n=n: len(tasks) == n and not connections, 5)
        with connect(running.port) as sock:  # more than max_connections run: no more now
            assert status(request(sock, GET)) == 503
        app.gate.set()
        wait_until("the held requests done", lambda: not tasks, 5)
        with connect(running.port) as sock:
            assert status(request(sock, GET)) == 200


def test_idle_connections_neither_lock_clients_out_for_long_nor_keep_descriptors(
    stack: str,
) -> None:
    port = free_port()
    with process_server(port, settings(), stack) as proc:
        server = psutil.Process(proc.pid)
        with connect(port) as sock:
            assert status(request(sock, GET)) == 200

        def accepted() -> list[object]:
            return [c for c in server.net_connections() if c.status != psutil.CONN_LISTEN]

        wait_until("the warm-up connection closed", lambda: not accepted(), 5)
        baseline = server.num_fds()
        idle = [connect(port) for _ in range(20)]  # 8 take the places, 12 are refused
        try:
            opened = time.monotonic()

            def served() -> bool:  # the 21st client
                with connect(port) as sock:
                    return status(request(sock, GET)) == 200

            wait_until("the 21st client served", served, TIMEOUT + SLACK)
            assert time.monotonic() - opened >= TIMEOUT - 0.2  # once the idle ones timed out
            # the server closed the idle ones on its own (the clients keep their ends open)
            wait_until(
                "the server's descriptors back to normal", lambda: server.num_fds() <= baseline, 2
            )
            for sock in idle:
                assert wait_closed(sock, time.monotonic() + 1)[0] is not None
        finally:
            for sock in idle:
                sock.close()
