"""POST /sink/kserve (and /sink/kserve/<secret>): where KServe's payload logger sends each
inference's request and response; `app.py` mounts it.

Each event is a CloudEvent: binary mode (ce-* headers, the body as the model got or gave it), as
KServe sends it, or structured mode (application/cloudevents+json). Credentials and the body's
size are checked before this route runs (`auth.py`, `body_limit.py`); a path secret is good for
its own InferenceService's events only. An event is stored only if a target can use it (checked
against the current config: `sources/kserve/validate.py`), and the answer is 200 only once it is
on disk (`SinkStore` fsyncs it, batched with concurrent events), so an acknowledged event
survives a crash. 200 rather than 202: KServe logs any other status as an error
(pkg/logger/worker.go). It does not retry, so a refusal says exactly what was wrong; every
answer is counted in mlwatchdog_sink_events_total.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.common import get_event_factory_for_version
from cloudevents.core.bindings.http import CE_PREFIX, HTTPMessage, from_http
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from mlwatchdog.daemon.auth import Principal
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

_REQUIRED = ("specversion", "id", "type", "source")
_FORMAT = JSONFormat()
_REFUSED = {
    400: "the event is malformed",
    403: "the event is not for this credential",
    422: "the event does not fit",
}


def sink_router(
    store: SinkStore,
    config: Callable[[], Config],
    metrics: DaemonMetrics,
    clock: Callable[[], datetime] = utc_now,
) -> APIRouter:
    """The sink's routes, storing into `store` what fits the current `config()`."""
    router = APIRouter()
    responses: dict[int | str, dict[str, Any]] = {
        status: {"description": text} for status, text in _REFUSED.items()
    }
    responses[503] = {"description": "not stored (the disk failed, or the daemon is stopping)"}

    async def receive(request: Request) -> JSONResponse:
        try:
            rows = await _store(request, store, config(), clock())
        except InvalidEvent as exc:
            metrics.sink_events.labels("refused", exc.reason).inc()
            return JSONResponse({"detail": str(exc)}, exc.status)
        except ClientDisconnect:  # gone, or cut off over max_event_bytes (answered 413)
            metrics.sink_events.labels("refused", "disconnected").inc()
            return JSONResponse({"detail": "the sender went away"}, 400)
        except Exception:
            metrics.sink_events.labels("refused", "internal_error").inc()
            raise
        metrics.sink_events.labels("stored", "ok").inc()
        return JSONResponse({"stored_rows": rows})

    @router.post(
        "/sink/kserve",
        summary="KServe payload-logger events (CloudEvents)",
        responses=responses,
    )
    async def kserve_event(request: Request) -> JSONResponse:
        return await receive(request)

    @router.post(
        "/sink/kserve/{secret}",
        summary="KServe payload-logger events, with the InferenceService's secret in the path "
        "(daemon.auth.sink_paths): KServe's logger cannot send headers",
        responses=responses,
    )
    async def kserve_event_with_secret(secret: str, request: Request) -> JSONResponse:
        del secret  # checked by AuthMiddleware; never echoed
        return await receive(request)

    return router


async def _store(request: Request, store: SinkStore, config: Config, now: datetime) -> int:
    """Parse, check and store one event; returns its row count. Raises InvalidEvent."""
    body = await request.body()  # within max_event_bytes: BodyLimitMiddleware saw to it
    event = parse_event(request.headers, body)
    _authorized(event, request.scope.get("state", {}).get("principal"))
    try:
        record = event_record(event, now, config.daemon.sink)
        check_event(record, config)
        done = store.write([record])
    except RecursionError:  # values nested deep enough to exhaust the stack
        raise too_deep() from None
    except SinkClosed as exc:
        raise InvalidEvent(f"the event was not stored: {exc}", 503, "not_stored") from None
    try:
        await asyncio.wrap_future(done)
    except OSError as exc:
        raise InvalidEvent(f"the event was not stored: {exc}", 503, "not_stored") from None
    return len(record.rows)


def _authorized(event: BaseCloudEvent, principal: Principal | None) -> None:
    """A path secret's caller may send its own InferenceService's events only."""
    if principal is None or principal.inference_service is None:
        return
    namespace, name = principal.inference_service
    sent = (attribute(event, "namespace"), attribute(event, "inferenceservicename"))
    if sent != (namespace, name):
        raise InvalidEvent(
            f"this sink path is for InferenceService {namespace}/{name}, but the event comes "
            f"from {sent[0]}/{sent[1]} (ce-namespace / ce-inferenceservicename); give each "
            "InferenceService's logger its own URL (daemon.auth.sink_paths)",
            403,
            "forbidden_service",
        )


def parse_event(headers: Mapping[str, str], body: bytes) -> BaseCloudEvent:
    """The CloudEvent of an HTTP request in binary or structured mode; raises InvalidEvent."""
    binary = any(name.lower().startswith(CE_PREFIX) for name in headers)
    try:
        return from_http(HTTPMessage(dict(headers), body), _FORMAT, _complete_event)
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


def _complete_event(attributes: dict[str, Any], data: Any) -> BaseCloudEvent:
    # The SDK makes up a missing id and time; a made-up id never pairs, so refuse instead.
    missing = [name for name in _REQUIRED if not attributes.get(name)]
    if missing:
        raise InvalidEvent(
            f"not a CloudEvent: no {', '.join(missing)} (ce-{missing[0]} in binary mode)",
            400,
            "invalid_cloudevent",
        )
    return get_event_factory_for_version(str(attributes["specversion"]))(attributes, data)
