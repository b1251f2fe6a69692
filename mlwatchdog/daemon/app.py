"""The daemon's HTTP app: liveness, readiness, Prometheus metrics, the targets' state, the API
(`daemon.api`), the KServe sink and Flagger's webhooks (`daemon.flagger`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mlwatchdog.core import to_json
from mlwatchdog.daemon.analysis import analysis_router
from mlwatchdog.daemon.api import api_router, principal_name
from mlwatchdog.daemon.auth import AuthMiddleware
from mlwatchdog.daemon.body_limit import BodyLimitMiddleware, limits
from mlwatchdog.daemon.flagger import flagger_router
from mlwatchdog.daemon.people import people_router
from mlwatchdog.daemon.sink import SinkEndpoint, SinkMiddleware, sink_router

if TYPE_CHECKING:
    from mlwatchdog.daemon.service import Daemon


def create_app(daemon: Daemon) -> FastAPI:
    """The app for `daemon`; starting the app starts the scheduler, stopping it stops it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        daemon.start()
        try:
            yield
        finally:
            daemon.stop()  # waits for a running evaluation to finish

    # /docs and /redoc load Swagger UI and ReDoc from the package (served under /docs/static),
    # not from a CDN: they work in a cluster without internet access.
    app = FastAPIOffline(
        static_url="/docs/static",
        title="mlwatchdog",
        version="0.1.0",
        description="Drift-aware rollback daemon: targets, incidents, investigations.",
        lifespan=lifespan,
    )
    if not daemon.sink_only:  # `mlwatchdog sink` evaluates nothing: no API about targets
        app.include_router(api_router(daemon))
        app.include_router(analysis_router(daemon))  # Argo Rollouts' web metric asks a verdict
        app.include_router(flagger_router(lambda: daemon.runners, daemon.log))
        app.include_router(people_router(daemon))  # pause, silence, approve: a person in the loop
    if daemon.sink is not None:  # only with a `type: kserve` source to read what it stores
        sink = SinkEndpoint(daemon.sink, lambda: daemon.config, daemon.metrics)
        app.include_router(sink_router(sink))
        # Innermost: the sink's events skip FastAPI's routing (issue 16), inside the two below.
        app.add_middleware(SinkMiddleware, endpoint=sink)
    # Added last, so outermost: credentials first (before anything reads the body), then the
    # body's size.
    # Read per request: a reload applies at once.
    app.add_middleware(
        BodyLimitMiddleware,
        limit=limits(
            lambda: daemon.config.daemon.http.max_body_bytes,
            lambda: daemon.config.daemon.sink.max_event_bytes,
        ),
    )
    app.add_middleware(AuthMiddleware, authenticator=daemon.authenticator)

    @app.get("/healthz", summary="Liveness: the scheduler is running")
    def healthz() -> JSONResponse:
        alive = daemon.running
        return JSONResponse({"status": "ok" if alive else "stopped"}, 200 if alive else 503)

    ready_once = False

    @app.get(
        "/readyz",
        summary="Readiness: config loaded, every target evaluated once, and no write failing",
    )
    def readyz() -> JSONResponse:
        # Once ready, a target added by a config reload does not take the pod out of its
        # Service (and the KServe sink with it) until its first evaluation.
        nonlocal ready_once
        waiting = [
            name
            for name, runner in daemon.runners.items()
            if runner.last is None and daemon.evaluated_here(name)  # shards led elsewhere: not
        ]
        started = daemon.running and (ready_once or not waiting)
        ready_once = ready_once or started
        # A state file, the audit trail, the journal, a bundle or the sink's store that cannot
        # be written: the pod is not fit to act (or to take events) until it can again.
        failing = daemon.faults.current()
        ready = started and not failing
        body: dict[str, Any] = {"status": "ready" if ready else "not ready"}
        if waiting:
            body["waiting_for_first_evaluation"] = waiting
        if failing:
            body["failing_writes"] = failing
        return JSONResponse(body, 200 if ready else 503)

    @app.post(
        "/-/reload",
        summary="Reload rules.yaml now (as SIGHUP); the last good config stays on failure",
        responses={409: {"description": "invalid file, or started without a rules file"}},
    )
    def reload(request: Request) -> JSONResponse:
        daemon.log.info("config reload asked for over HTTP", by=principal_name(request))
        if daemon.config_path is None:
            return JSONResponse(
                {"status": "error", "errors": ["started without a rules file"]}, 409
            )
        if daemon.reload(daemon.config_path):
            return JSONResponse({"status": "reloaded", "file": str(daemon.config_path)})
        errors = [str(e) for e in daemon.reload_errors]
        return JSONResponse({"status": "error", "errors": errors}, 409)

    @app.get(
        "/metrics", summary="Prometheus metrics (mlwatchdog_*)", response_class=PlainTextResponse
    )
    def metrics() -> Response:
        # Leadership as it is at the scrape: a Lease renewed late lapses and comes back without
        # a won or lost event, which alone would leave the gauges as they were at the lapse.
        daemon.publish_placement()
        return Response(generate_latest(daemon.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/targets", summary="Each target's state")
    def targets() -> dict[str, Any]:
        return {
            name: to_json(runner.state) if runner.state else None
            for name, runner in daemon.runners.items()
        }

    return app
