"""POST /sink/kserve (and /sink/kserve/<secret>): where KServe's payload logger sends each
inference's request and response; `app.py` mounts it.

Each event is a CloudEvent: binary mode (ce-* headers, the body as the model got or gave it), as
KServe sends it, or structured mode (application/cloudevents+json). Credentials and the body's
size are checked before this route runs (`auth.py`, `body_limit.py`); a path secret is good for
its own InferenceService's events only. An event is stored only if a target can use it (checked
against the current config: `sources/kserve/validate.py`), and the answer is 200 only once it is
on disk (`SinkStore` fsyncs it, batched with concurrent events), so an acknowledged event
survives a crash; while the store fails, events get 503 `not_stored` and the store's fault
(reported to `daemon/faults.py`: /readyz, /metrics, the log) takes the pod out of its Service.
200 rather than 202: KServe logs any other status as an error (pkg/logger/worker.go). It does
not retry, so a refusal says exactly what was wrong; every answer is counted in
mlwatchdog_sink_events_total.

Speed (issue 16): the route is a plain ASGI app that `SinkMiddleware` calls ahead of FastAPI's
routing and dependency machinery (together 3-4 times the cost of the rest); the FastAPI routes
stay for the OpenAPI document and lead to the same app. A well-formed binary-mode event, as KServe
sends it, is read straight from its headers; anything else goes through the CloudEvents SDK,
which words the refusal.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from cloudevents.core.bindings.common import get_event_factory_for_version
from cloudevents.core.bindings.http import CE_PREFIX, HTTPMessage, from_http
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from fastapi import APIRouter, Request, Response

from mlwatchdog.daemon.auth import SINK_PREFIX, ASGIApp, Principal, Receive, Scope, Send
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.rules import Config
from mlwatchdog.sources.kserve import (
    InvalidEvent,
    SinkClosed,
    SinkStore,
    check_event,
    event_record,
    utc_now,
)
from mlwatchdog.sources.kserve.events import attribute, too_deep

Headers = Iterable[tuple[bytes, bytes]]  # an ASGI scope's: names in lower case
Attributes = dict[str, Any]  # a CloudEvent's, as the SDK names them (time: a datetime)

_REQUIRED = ("specversion", "id", "type", "source")
_FORMAT = JSONFormat()
_REFUSED = {
    400: "the event is malformed",
    403: "the event is not for this credential",
    422: "the event does not fit",
}
_JSON_HEADERS = [(b"content-type", b"application/json")]


class SinkEndpoint:
    """The sink as an ASGI app: stores into `store` what fits the current `config()`."""

    def __init__(
        self,
        store: SinkStore,
        config: Callable[[], Config],
        metrics: DaemonMetrics,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.answers = metrics.sink_events
        self.stored = self.answers.labels("stored", "ok")  # a labels() lookup costs µs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _body(receive)
        if body is None:  # gone, or cut off over max_event_bytes (answered 413)
            self.answers.labels("refused", "disconnected").inc()
            await _reply(send, 400, {"detail": "the sender went away"})
            return
        try:
            rows = await self._store(scope, body)
        except InvalidEvent as exc:
            self.answers.labels("refused", exc.reason).inc()
            await _reply(send, exc.status, {"detail": str(exc)})
            return
        except Exception:
            self.answers.labels("refused", "internal_error").inc()
            raise
        self.stored.inc()
        await _reply(send, 200, {"stored_rows": rows})

    async def _store(self, scope: Scope, body: bytes) -> int:
        """Parse, check and store one event; returns its row count. Raises InvalidEvent."""
        attributes, data = parse_event(scope["headers"], body)
        _authorized(attributes, scope.get("state", {}).get("principal"))
        config = self.config()
        try:
            record = event_record(attributes, data, self.clock(), config.daemon.sink)
            check_event(record, config)
            done = self.store.write([record])
        except RecursionError:  # values nested deep enough to exhaust the stack
            raise too_deep() from None
        except SinkClosed as exc:
            raise InvalidEvent(f"the event was not stored: {exc}", 503, "not_stored") from None
        try:
            await asyncio.wrap_future(done)
        except OSError as exc:
            raise InvalidEvent(f"the event was not stored: {exc}", 503, "not_stored") from None
        return len(record.rows)


class SinkMiddleware:
    """Sends POST /sink/kserve[/<secret>] straight to `endpoint` (inside the credentials and
    body-size middleware), everything else on to `app`."""

    def __init__(self, app: ASGIApp, endpoint: SinkEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and is_sink_path(scope["path"]):
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def is_sink_path(path: str) -> bool:
    """/sink/kserve, or /sink/kserve/<secret> (one path segment, as the routes below)."""
    if path == SINK_PREFIX:
        return True
    secret = path[len(SINK_PREFIX) + 1 :]
    return path.startswith(SINK_PREFIX + "/") and bool(secret) and "/" not in secret


def sink_router(endpoint: SinkEndpoint) -> APIRouter:
    """The sink's routes in the OpenAPI document; SinkMiddleware takes their requests first,
    and they lead to the same `endpoint`."""
    router = APIRouter()
    responses: dict[int | str, dict[str, Any]] = {
        status: {"description": text} for status, text in _REFUSED.items()
    }
    responses[200] = {"description": "stored (on disk): `{stored_rows: <rows of the event>}`"}
    responses[503] = {"description": "not stored (the disk failed, or the daemon is stopping)"}

    @router.post(
        "/sink/kserve",
        summary="KServe payload-logger events (CloudEvents)",
        responses=responses,
    )
    async def kserve_event(request: Request) -> Response:
        return _Answered(endpoint)

    @router.post(
        "/sink/kserve/{secret}",
        summary="KServe payload-logger events, with the InferenceService's secret in the path "
        "(daemon.auth.sink_paths): KServe's logger cannot send headers",
        responses=responses,
    )
    async def kserve_event_with_secret(secret: str, request: Request) -> Response:
        del secret  # checked by AuthMiddleware; never echoed
        return _Answered(endpoint)

    return router


class _Answered(Response):
    """A route's response that lets `endpoint` read the request and answer it."""

    def __init__(self, endpoint: SinkEndpoint) -> None:
        super().__init__()
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)


async def _body(receive: Receive) -> bytes | None:
    """The request's body; None when the client went away (or the body was cut at its limit:
    BodyLimitMiddleware answered 413 and says http.disconnect)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _reply(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _authorized(attributes: Attributes, principal: Principal | None) -> None:
    """A path secret's caller may send its own InferenceService's events only."""
    if principal is None or principal.inference_service is None:
        return
    namespace, name = principal.inference_service
    sent = (attribute(attributes, "namespace"), attribute(attributes, "inferenceservicename"))
    if sent != (namespace, name):
        raise InvalidEvent(
            f"this sink path is for InferenceService {namespace}/{name}, but the event comes "
            f"from {sent[0]}/{sent[1]} (ce-namespace / ce-inferenceservicename); give each "
            "InferenceService's logger its own URL (daemon.auth.sink_paths)",
            403,
            "forbidden_service",
        )


# ------------------------------------------------------------------------------ parsing


def parse_event(headers: Headers, body: bytes) -> tuple[Attributes, Any]:
    """The attributes and data of the CloudEvent of an HTTP request, in binary or structured
    mode; raises InvalidEvent."""
    headers = list(headers)
    found = _binary_event(headers, body)
    if found is not None:
        return found
    event = _sdk_event(headers, body)
    return event.get_attributes(), event.get_data()


# What the SDK's v1 CloudEvent accepts, and reads the same way: a binary-mode event within these
# is read without it (a quarter of the route's cost); any other goes through it.
_SPEC_ATTRIBUTES = frozenset({"specversion", "id", "source", "type", "time"})
_NOT_EMPTY = ("datacontenttype", "dataschema", "subject")
_EXTENSION = re.compile(r"[a-z0-9]+")
_EXTENSIONS_SEEN: set[str] = set()  # extension names found valid
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def _binary_event(headers: Headers, body: bytes) -> tuple[Attributes, Any] | None:
    """A plain binary-mode v1 event (ce-* headers without percent-encoding, a JSON object
    body) read directly, as the SDK would read it; None for anything else."""
    if body[:1] != b"{":
        return None
    attributes: Attributes = {}
    for name, value in headers:
        if name.startswith(b"ce-"):
            key = name[3:].decode("latin-1")
        elif name == b"content-type":
            key = "datacontenttype"
        else:
            continue
        text = value.decode("latin-1")
        if "%" in text:  # percent-encoded: the SDK decodes it
            return None
        attributes.setdefault(key, text)  # the first of repeated headers, as the SDK sees them
    if attributes.get("specversion") != "1.0" or not all(map(attributes.get, _REQUIRED)):
        return None
    for key, text in attributes.items():
        if key in _NOT_EMPTY:
            if not text:
                return None
        elif key not in _SPEC_ATTRIBUTES and key not in _EXTENSIONS_SEEN:
            if key == "data" or not _EXTENSION.fullmatch(key):
                return None
            if len(_EXTENSIONS_SEEN) < 256:  # KServe's few, not whatever a sender makes up
                _EXTENSIONS_SEEN.add(key)
    if "time" in attributes:
        if not _RFC3339.fullmatch(attributes["time"]):
            return None
        try:
            attributes["time"] = datetime.fromisoformat(attributes["time"])
        except ValueError:
            return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # the SDK's path words the refusal
        return None
    return attributes, data


def _sdk_event(headers: list[tuple[bytes, bytes]], body: bytes) -> Any:
    """The CloudEvent as the CloudEvents SDK reads it; raises InvalidEvent."""
    text: dict[str, str] = {}
    for name, value in headers:  # the first of repeated headers
        text.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    binary = any(name.startswith(CE_PREFIX) for name in text)
    try:
        return from_http(HTTPMessage(text, body), _FORMAT, _complete_event)
    except InvalidEvent:
        raise
    except RecursionError:  # the SDK parses JSON bodies: 100,000 nested brackets
        raise too_deep() from None
    except (BaseCloudEventException, ValueError, TypeError, AttributeError) as exc:
        if binary:
            raise InvalidEvent(
                f"not a valid CloudEvent: {exc}", 400, "invalid_cloudevent"
            ) from None
        raise InvalidEvent(
            "not a CloudEvent: no ce-* headers (binary mode), and the body is not a JSON "
            f"CloudEvent (structured mode, application/cloudevents+json): {exc}",
            400,
            "invalid_cloudevent",
        ) from None


def _complete_event(attributes: Mapping[str, Any], data: Any) -> Any:
    # The SDK makes up a missing id and time; a made-up id never pairs, so refuse instead.
    missing = [name for name in _REQUIRED if not attributes.get(name)]
    if missing:
        raise InvalidEvent(
            f"not a CloudEvent: no {', '.join(missing)} (ce-{missing[0]} in binary mode)",
            400,
            "invalid_cloudevent",
        )
    return get_event_factory_for_version(str(attributes["specversion"]))(dict(attributes), data)
