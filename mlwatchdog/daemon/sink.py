"""POST /sink/kserve: where KServe's payload logger sends each inference's request and response.

Each event is a CloudEvent: binary mode (ce-* headers, the body as the model got or gave it), as
KServe sends it, or structured mode (application/cloudevents+json). The answer is 200 only once
the event's rows are on disk (`SinkStore` fsyncs them, batched with concurrent events), so an
acknowledged event survives a crash. 200 rather than 202: KServe logs any other status as an
error (pkg/logger/worker.go). It does not retry, so a rejection says exactly what was wrong.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.common import get_event_factory_for_version
from cloudevents.core.bindings.http import CE_PREFIX, HTTPMessage, from_http
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from mlwatchdog.rules import Sink
from mlwatchdog.sources.kserve import InvalidEvent, SinkClosed, SinkStore, event_records, utc_now

_REQUIRED = ("specversion", "id", "type", "source")
_FORMAT = JSONFormat()


def sink_router(store: SinkStore, settings: Sink) -> APIRouter:
    """The sink's route, storing into `store` under the limits and token of `settings`."""
    router = APIRouter()
    token = settings.bearer_token.encode() if settings.bearer_token else None

    @router.post("/sink/kserve", summary="KServe payload-logger events (CloudEvents)")
    async def kserve_event(request: Request) -> JSONResponse:
        if token is not None:  # before reading a byte of the body
            _authorize(request.headers.get("authorization"), token)
        body = await _read_body(request, settings.max_event_bytes)
        try:
            records = event_records(parse_event(request.headers, body), utc_now())
        except InvalidEvent as exc:
            raise HTTPException(exc.status, str(exc)) from None
        try:
            await asyncio.wrap_future(store.write(records))
        except (OSError, SinkClosed) as exc:
            raise HTTPException(503, f"the event was not stored: {exc}") from None
        return JSONResponse({"stored_rows": len(records)})

    return router


def parse_event(headers: Mapping[str, str], body: bytes) -> BaseCloudEvent:
    """The CloudEvent of an HTTP request in binary or structured mode; raises InvalidEvent."""
    binary = any(name.lower().startswith(CE_PREFIX) for name in headers)
    try:
        return from_http(HTTPMessage(dict(headers), body), _FORMAT, _complete_event)
    except InvalidEvent:
        raise
    except (BaseCloudEventException, ValueError, TypeError, AttributeError) as exc:
        if binary:
            raise InvalidEvent(f"not a valid CloudEvent: {exc}", 400) from None
        raise InvalidEvent(
            "not a CloudEvent: no ce-* headers (binary mode), and the body is not a JSON "
            f"CloudEvent (structured mode, application/cloudevents+json): {exc}",
            400,
        ) from None


def _complete_event(attributes: dict[str, Any], data: Any) -> BaseCloudEvent:
    # The SDK makes up a missing id and time; a made-up id never pairs, so refuse instead.
    missing = [name for name in _REQUIRED if not attributes.get(name)]
    if missing:
        raise InvalidEvent(
            f"not a CloudEvent: no {', '.join(missing)} (ce-{missing[0]} in binary mode)", 400
        )
    return get_event_factory_for_version(str(attributes["specversion"]))(attributes, data)


def _authorize(header: str | None, token: bytes) -> None:
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            401,
            "this sink needs `Authorization: Bearer <daemon.sink.bearer_token>`",
            headers={"WWW-Authenticate": 'Bearer realm="mlwatchdog"'},
        )
    if not hmac.compare_digest(given.strip().encode(), token):  # constant time
        raise HTTPException(
            401,
            "the bearer token is wrong",
            headers={"WWW-Authenticate": 'Bearer realm="mlwatchdog", error="invalid_token"'},
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, int(declared))
    body = bytearray()
    async for chunk in request.stream():  # a chunked body has no Content-Length to trust
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int, size: int | None = None) -> HTTPException:
    what = f"{size} bytes, over" if size is not None else "over"
    return HTTPException(
        413, f"the event is {what} the limit of {limit} bytes (daemon.sink.max_event_bytes)"
    )
