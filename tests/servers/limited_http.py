"""uvicorn serving a tiny app with the daemon's HTTP limits (`mlwatchdog.daemon.http_server`), in
a thread or as a subprocess (`python -m tests.servers.limited_http PORT STACK SETTINGS_JSON`,
for tests that measure the server's memory and file descriptors), and a raw-socket client.

The app: `/` answers `ok <bytes of the body>`; `/hold` waits until the gate opens; a request whose
body never arrived whole is recorded in `disconnects` (the app saw `http.disconnect`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mlwatchdog.daemon.http_server import uvicorn_options
from mlwatchdog.rules.schema import Http

ROOT = Path(__file__).resolve().parents[2]

# Short limits, so that each test takes about a second.
SETTINGS: dict[str, Any] = {
    "max_header_bytes": 4096,
    "header_timeout": "1s",
    "body_timeout": "1s",
    "max_connections": 8,
    "keep_alive": "1s",
}


def settings(**overrides: Any) -> Http:
    return Http.model_validate({**SETTINGS, **overrides})


@dataclass
class TinyApp:
    """The app and what the tests look at: the gate of /hold and the disconnects seen."""

    gate: threading.Event = field(default_factory=threading.Event)
    disconnects: list[str] = field(default_factory=list)

    def asgi(self) -> Starlette:
        async def root(request: Request) -> PlainTextResponse:
            try:
                body = await request.body()
            except ClientDisconnect:
                self.disconnects.append(request.url.path)
                raise
            return PlainTextResponse(f"ok {len(body)}")

        async def hold(_: Request) -> PlainTextResponse:
            while not self.gate.is_set():  # the gate is a thread's: poll it from the loop
                await asyncio.sleep(0.01)
            return PlainTextResponse("released")

        return Starlette(routes=[Route("/", root, methods=["GET", "POST"]), Route("/hold", hold)])


def server(app: Any, limits: Http, stack: str | None, port: int = 0) -> uvicorn.Server:
    """uvicorn with the daemon's limits, on `stack`: "httptools+uvloop" (uvicorn's choice with
    its extras installed) or "h11+asyncio" (without them); None: uvicorn's defaults, as before
    those limits."""
    options: dict[str, Any] = {}
    if stack is not None:
        protocol, _, loop = stack.partition("+")
        options = {**uvicorn_options(limits, protocol=protocol), "loop": loop or "auto"}
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, **options
    )
    return uvicorn.Server(config)


@dataclass
class Running:
    server: uvicorn.Server
    thread: threading.Thread
    port: int


@contextmanager
def thread_server(app: Any, limits: Http, stack: str | None) -> Iterator[Running]:
    """The server running in a thread; stopped (gracefully) at the end."""
    instance = server(app, limits, stack)
    thread = threading.Thread(target=instance.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Running(instance, thread, int(instance.servers[0].sockets[0].getsockname()[1]))
    finally:
        instance.should_exit = True
        thread.join(10)


@contextmanager
def process_server(port: int, limits: Http, stack: str | None) -> Iterator[subprocess.Popen[bytes]]:
    """The server as a child process on `port`, answering once the context is entered."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.limited_http", str(port), str(stack),
         limits.model_dump_json()],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"the server exited ({proc.returncode})"
            with suppress(OSError), connect(port) as sock:
                if status(request(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")) == 200:
                    break
            assert time.monotonic() < deadline, "the server did not answer within 20s"
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


# ------------------------------------------------------------------------- a raw-socket client


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_response(sock: socket.socket) -> bytes:
    """One response (head and a Content-Length body) as bytes; b"" when the connection closed
    before a response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = content_length(head)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def content_length(head: bytes) -> int:
    fields = dict(line.lower().partition(b":")[::2] for line in head.split(b"\r\n")[1:])
    return int(fields.get(b"content-length", b"0"))


def first_response(responses: bytes) -> bytes:
    """The first of responses sent back to back."""
    head, _, rest = responses.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n" + rest[: content_length(head)]


def request(sock: socket.socket, raw: bytes) -> bytes:
    sock.sendall(raw)
    return read_response(sock)


def status(response: bytes) -> int | None:
    """The status code of a response; None for no response."""
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and response.startswith(b"HTTP/1.1") else None


def body(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def wait_closed(sock: socket.socket, deadline: float) -> tuple[float | None, bytes]:
    """The time.monotonic() at which the server's close was seen (None: still open at
    `deadline`, a time.monotonic()), and what the server sent meanwhile."""
    received = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, received
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None, received
        except ConnectionResetError:
            return time.monotonic(), received
        if not chunk:
            return time.monotonic(), received
        received += chunk


def peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def main() -> None:
    port, stack, limits = int(sys.argv[1]), sys.argv[2], Http.model_validate_json(sys.argv[3])
    instance = server(TinyApp().asgi(), limits, None if stack == "None" else stack, port)
    instance.run()


if __name__ == "__main__":
    main()
