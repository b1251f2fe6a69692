"""The daemon's HTTP app: liveness, readiness, Prometheus metrics, and the targets' state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mlwatchdog.core import to_json
from mlwatchdog.daemon.sink import sink_router

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

    app = FastAPI(title="mlwatchdog", version="0.1.0", lifespan=lifespan)

    if daemon.sink is not None:  # only with a `type: kserve` source to read what it stores
        app.include_router(sink_router(daemon.sink, daemon.config.daemon.sink))

    @app.get("/healthz", summary="Liveness: the scheduler is running")
    def healthz() -> JSONResponse:
        alive = daemon.running
        return JSONResponse({"status": "ok" if alive else "stopped"}, 200 if alive else 503)

    @app.get("/readyz", summary="Readiness: config loaded and every target evaluated once")
    def readyz() -> JSONResponse:
        waiting = [name for name, runner in daemon.runners.items() if runner.last is None]
        ready = daemon.running and not waiting
        body: dict[str, Any] = {"status": "ready" if ready else "not ready"}
        if waiting:
            body["waiting_for_first_evaluation"] = waiting
        return JSONResponse(body, 200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics (mlwatchdog_*)")
    def metrics() -> Response:
        return Response(generate_latest(daemon.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/targets", summary="Each target's state")
    def targets() -> dict[str, Any]:
        return {
            name: to_json(runner.state) if runner.state else None
            for name, runner in daemon.runners.items()
        }

    return app
