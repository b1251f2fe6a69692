"""Request bodies within their limit: `BodyLimitMiddleware` answers 413 as soon as a body is known
to be too large (from Content-Length before reading, else while streaming), so a 250 MiB webhook
is never read, let alone parsed. The sink's events have their own limit
(`daemon.sink.max_event_bytes`), everything else `daemon.http.max_body_bytes`."""

from __future__ import annotations

from collections.abc import Callable

from mlwatchdog.daemon.auth import SINK_PREFIX, ASGIApp, Message, Receive, Scope, Send, answer


class BodyLimitMiddleware:
    """413 for bodies over `limit(path)` bytes; the app never sees more than that."""

    def __init__(self, app: ASGIApp, limit: Callable[[str], tuple[int, str]]) -> None:
        self.app = app
        self.limit = limit  # path -> (bytes, the setting that sets it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit(scope["path"])
        detail = f"the body is over the limit of {limit} bytes ({setting})"
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await answer(send, 413, detail)
            return
        received = 0
        cut = False
        started = False

        async def limited() -> Message:
            nonlocal received, cut, started
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not cut:
                    cut = True
                    if not started:
                        started = True
                        await answer(send, 413, detail)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if cut:
                return  # the app's own answer to the disconnect: ours was sent
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not cut:  # the app failed on the disconnect it was given: already answered
                raise


def limits(
    max_body_bytes: Callable[[], int], max_event_bytes: Callable[[], int]
) -> Callable[[str], tuple[int, str]]:
    """The limit of a path: the sink's for /sink/kserve, else the API's (read per request)."""

    def limit(path: str) -> tuple[int, str]:
        if path == SINK_PREFIX or path.startswith(SINK_PREFIX + "/"):
            return max_event_bytes(), "daemon.sink.max_event_bytes"
        return max_body_bytes(), "daemon.http.max_body_bytes"

    return limit


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == b"content-length":
            text = bytes(value).decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None
