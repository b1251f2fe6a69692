"""uvicorn within the limits of `daemon.http`: a cap on request heads, deadlines for heads and
bodies, a bound on open connections. `serve()` passes `uvicorn_options(...)` to its
uvicorn.Config.

uvicorn's own protocol classes (httptools when it is installed, as uvicorn picks it, else h11)
are extended, not replaced: parsing, keep-alive, flow control and graceful shutdown stay theirs.
- The request line and headers are counted as they arrive, and never more than
  `max_header_bytes` of them are handed to the parser: one byte more gets 431 and the connection
  closes (httptools alone would buffer a 200 MiB header).
- A connection's first request head must be in within `header_timeout` of the connection opening,
  every later one within `header_timeout` of its first byte (total time, not idle time: one byte
  per second does not keep it open). Late: 408 if part of a request came, and close.
- A body must be in within `body_timeout` of its headers; late: 408 unless a response started,
  close, and the app's `receive()` answers `http.disconnect`.
  Time the server itself is not reading (the app has not taken the body buffered so far, or a
  pipelined request waits for the one before it) does not count against the client.
- At most `max_connections` connections are open: one more is answered 503 as it is accepted,
  and closed at once (no descriptor is held for it). Those open hold their place until they
  close: an idle one for at most `header_timeout` (before its first request) or `keep_alive`
  (between requests). uvicorn's `limit_concurrency` (503 when, as a request's headers are in,
  the open connections or the requests still running reach it) is `max_connections + 1`: the
  connections never reach it, so what it adds is a bound on running requests, whose clients
  may be gone.
- An idle kept-alive connection closes after `keep_alive` (uvicorn's `timeout_keep_alive`).
"""

from __future__ import annotations

import asyncio
import errno
import http
import importlib.util
import socket
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from mlwatchdog.errors import StartupError
from mlwatchdog.rules.schema import Http

# After an error answer the server stops writing and reads (and drops) what the client still
# sends for this long before closing: closing with unread input makes the kernel send a reset,
# which can destroy the answer before the client reads it.
LINGER = 1.0

HTTPTOOLS = importlib.util.find_spec("httptools") is not None  # uvicorn's first choice

_OVER_MAX_CONNECTIONS = "too many open connections (daemon.http.max_connections)"


@dataclass(frozen=True)
class HttpLimits:
    """`daemon.http`'s connection limits in seconds and bytes, and where to log their hits."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int
    keep_alive: float
    log: Any = None  # a structlog logger; None: not logged

    @classmethod
    def of(cls, settings: Http, log: Any = None) -> HttpLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout.total_seconds(),
            body_timeout=settings.body_timeout.total_seconds(),
            max_connections=settings.max_connections,
            keep_alive=settings.keep_alive.total_seconds(),
            log=log,
        )


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to `host`:`port` (every address it resolves to, as asyncio's create_server
    binds them), for uvicorn to listen on. Bound before anything starts, so a port in use is one
    clear StartupError, not a server that started and a raw traceback."""
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: one socket per family
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        why = (
            "the port is already in use"
            if exc.errno == errno.EADDRINUSE
            else (exc.strerror or str(exc)).lower()
        )
        raise StartupError(
            f"cannot listen on {_address(host, port)}: {why}; free it, or choose another port "
            "with MLWATCHDOG_PORT (read by daemon.http.port) or --port"
        ) from None
    return sockets


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def uvicorn_options(settings: Http, log: Any = None, protocol: str = "auto") -> dict[str, Any]:
    """Keyword arguments of uvicorn.Config that serve within `settings`' limits. `protocol`:
    "httptools", "h11", or "auto" (httptools when installed, as uvicorn picks)."""
    limits = HttpLimits.of(settings, log)
    return {
        "http": protocol_class(limits, protocol),
        "ws": "none",  # no WebSocket routes; an upgrade would leave these limits behind
        "timeout_keep_alive": limits.keep_alive,
        "limit_concurrency": limits.max_connections + 1,
        # h11 (no httptools) cuts heads at 16 KiB by default, before our count could say 431
        "h11_max_incomplete_event_size": limits.max_header_bytes,
    }


def protocol_class(limits: HttpLimits, protocol: str = "auto") -> type[asyncio.Protocol]:
    """The protocol class of a server within `limits`."""
    if protocol == "auto":
        protocol = "httptools" if HTTPTOOLS else "h11"
    bases: dict[str, type[_Limited]] = {"h11": LimitedH11Protocol}
    if HTTPTOOLS:
        bases["httptools"] = LimitedHttpToolsProtocol
    if protocol not in bases:
        raise ValueError(f"HTTP protocol {protocol!r} is not available: one of {sorted(bases)}")
    base = bases[protocol]
    return cast("type[asyncio.Protocol]", type(base.__name__, (base,), {"limits": limits}))


class _Limited:
    """What both protocol classes add to uvicorn's (a mixin before them in the MRO); each says
    where a request head is (`_head_room`) and starts and stops the clocks of heads and bodies
    as its parser gets there (timers are made only for what one read leaves incomplete)."""

    limits: ClassVar[HttpLimits]

    # uvicorn's, set by its __init__ / connection_made
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    flow: Any
    cycle: Any
    connections: set[Any]
    server_state: Any
    client: tuple[str, int] | None

    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _linger: asyncio.TimerHandle | None = None
    _answered = False  # an error answer went out: input is dropped from then on
    _stopping = False  # the server is shutting down: no lingering after an error answer

    # ------------------------------------------------------------------ for the subclasses

    def _head_room(self) -> int | None:
        """Bytes the request head being received may still take; None when not receiving one."""
        raise NotImplementedError

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received."""
        raise NotImplementedError

    def _start_head_clock(self) -> None:
        """A head is being received; its clock runs from the first time this is said."""
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def _start_body_clock(self) -> None:
        """The headers are in, the body is not."""
        self._stop_head_clock()
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_late)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _stop_body_clock(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.limits.max_connections:
            self.connections.discard(self)  # not counted: it is gone as soon as it came
            self._answered = True
            self._log("http connection refused", status=503, reason=_OVER_MAX_CONNECTIONS)
            self._write_answer(503, _OVER_MAX_CONNECTIONS)
            self.transport.close()
            return
        self._start_head_clock()  # the first request's runs from the connection's opening

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._linger = None
        super().connection_lost(exc)  # type: ignore[misc]

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown, which waits for a request being received or answered;
        a connection already refused closes now."""
        self._stopping = True
        if self._answered:
            self.transport.close()
        else:
            super().shutdown()  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        while True:
            room = self._head_room()
            if room is not None and room <= 0:  # the limit reached, the head still not complete
                self._refuse(
                    431,
                    f"request line and headers over {self.limits.max_header_bytes} bytes "
                    "(daemon.http.max_header_bytes)",
                    answer=not self._responding(),
                )
                return
            if not data:
                return
            if room is None or len(data) <= room:
                piece, data = data, b""
            else:  # a head's bytes beyond the limit never reach the parser
                piece, data = data[:room], data[room:]
            self._feed(piece)
            if self.transport.is_closing() or self._answered:
                return

    # ------------------------------------------------------------------ the limits

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._answered:
            return
        if self.flow.read_paused:  # the server is not reading: not the client's delay
            self._start_head_clock()
            return
        room = self._head_room()
        if room is None or room >= self.limits.max_header_bytes:
            self.transport.close()  # not a byte of a request came: nothing to answer
            return
        self._refuse(
            408,
            f"request headers not complete within {self.limits.header_timeout:g}s "
            "(daemon.http.header_timeout)",
            answer=not self._responding(),
        )

    def _body_late(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self._answered:
            return
        if self.flow.read_paused:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_late)
            return
        cycle = self.cycle
        if not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() now says http.disconnect, send() no-op
        cycle.message_event.set()
        self._refuse(
            408,
            f"request body not complete within {self.limits.body_timeout:g}s "
            "(daemon.http.body_timeout)",
            answer=not cycle.response_started,
        )

    def _responding(self) -> bool:
        """A response is under way (with pipelining: to an earlier request than the one read)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _refuse(self, status: int, message: str, *, answer: bool) -> None:
        """Close the connection, answering `status` first unless `answer` is False (a response
        is under way: the client would take ours for its end); it reads no more requests."""
        self._answered = True
        self._stop_head_clock()
        self._stop_body_clock()
        self._log("http request refused", status=status if answer else None, reason=message)
        if answer:
            self._write_answer(status, message)
        if not answer or self._stopping or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()  # keep reading (and dropping) until the client closes
        self._linger = self.loop.call_later(LINGER, self.transport.close)

    def _write_answer(self, status: int, message: str) -> None:
        body = message.encode()
        phrase = http.HTTPStatus(status).phrase.encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, phrase)]
        head += [b"%s: %s\r\n" % pair for pair in self.server_state.default_headers]
        head += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)

    def _log(self, event: str, **fields: Any) -> None:
        if self.limits.log is not None:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else None
            self.limits.log.info(event, client=client, **fields)


class LimitedH11Protocol(_Limited, H11Protocol):
    """uvicorn's h11 protocol within the limits; h11 keeps the unparsed bytes in its buffer,
    so the head received so far is that buffer while h11 waits for a request."""

    def _head_room(self) -> int | None:
        if self.conn.their_state is not h11.IDLE:
            return None
        return self.limits.max_header_bytes - len(self.conn.trailing_data[0])

    def _feed(self, data: bytes) -> None:
        H11Protocol.data_received(self, data)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if state is h11.IDLE:
            if self.conn.trailing_data[0]:
                self._start_head_clock()
        elif state is h11.SEND_BODY:
            self._start_body_clock()
        else:  # the request is in (or the connection is done)
            self._stop_head_clock()
            self._stop_body_clock()


if HTTPTOOLS:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class LimitedHttpToolsProtocol(_Limited, HttpToolsProtocol):
        """uvicorn's httptools protocol within the limits; httptools keeps a partial header in
        memory whatever its size, so the head's bytes are counted before they are fed to it.
        A request pipelined behind another in one read is counted from the parser's next read
        on: its head may exceed the limit by less than one read (256 KiB)."""

        _reading_head = True  # from the end of a request (or the start) to the next's headers
        _head_bytes = 0  # of the head being read
        _in_head = False  # a request began and its headers are not in yet
        _in_body = False  # the headers are in, the body is not

        def _head_room(self) -> int | None:
            return self.limits.max_header_bytes - self._head_bytes if self._reading_head else None

        def _feed(self, data: bytes) -> None:
            if self._reading_head:
                self._head_bytes += len(data)
            HttpToolsProtocol.data_received(self, data)
            if self._in_head:
                self._start_head_clock()
            elif self._in_body:
                self._start_body_clock()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True

        def on_headers_complete(self) -> None:
            self._reading_head, self._in_head, self._in_body = False, False, True
            self._stop_head_clock()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._reading_head, self._head_bytes, self._in_body = True, 0, False
            self._stop_body_clock()
