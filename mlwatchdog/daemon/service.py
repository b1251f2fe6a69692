"""Wiring: the one place that builds the daemon (sources, actuators, clock, scheduler, HTTP)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from mlwatchdog.actions.actuator import KubeActuator
from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.dryrun import DryRunActuator
from mlwatchdog.actions.kube_api import KubeApi, load_api_client
from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.leader import LeaderElector, default_identity
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.daemon.runner import TargetRunner
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.errors import ConfigError
from mlwatchdog.rules import Config, KServeSource
from mlwatchdog.sources.kserve import SinkStore
from mlwatchdog.sources.observe import Observer


def utc_now() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """The scheduled evaluation of every target of one config."""

    def __init__(
        self, config: Config, log: Any, clock: Callable[[], datetime] = utc_now, workers: int = 4
    ) -> None:
        self.config = config
        self.log = log
        self.clock = clock
        self.metrics = DaemonMetrics()
        self.store = StateStore(config.daemon.state_dir, log)
        self.observer = Observer(config)
        # What KServe's logger sends to POST /sink/kserve, when a `type: kserve` source reads it.
        kserve = any(isinstance(s, KServeSource) for s in config.sources.values())
        self.sink = SinkStore(config.daemon.sink) if kserve else None
        self.elector: LeaderElector | None = None
        actuator = self._actuator()
        self.runners = {
            t.name: TargetRunner(t, self.observer, actuator, self.store, self.metrics, log, clock)
            for t in config.targets
        }
        self.scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=workers)}
        )

    def _actuator(self) -> KubeActuator | DryRunActuator:
        """The Kubernetes actuator (with leader election when acting for real), or the offline
        dry-run one when there is no cluster to talk to."""
        settings = self.config.daemon
        audit = AuditLog(settings.audit_log)
        live = [t.name for t in self.config.targets if not t.rollback.dry_run]
        acting = [t for t in self.config.targets if t.workload.kind != "none"]
        api_client = load_api_client(settings.kubernetes) if acting else None
        if api_client is None:
            if live:
                raise ConfigError(
                    f"target(s) {live} set rollback.dry_run: false, but there is no Kubernetes "
                    f"API to act on (daemon.kubernetes.mode: {settings.kubernetes.mode}, no "
                    "in-cluster ServiceAccount, no kubeconfig): run in the cluster, give "
                    "daemon.kubernetes.kubeconfig, or keep dry_run: true"
                )
            self.metrics.leader.set(1)
            return DryRunActuator(self.log, audit)
        election = settings.leader_election
        identity = election.identity or default_identity()
        api = KubeApi(
            api_client, settings.kubernetes.timeout.total_seconds(), settings.kubernetes.attempts
        )
        enabled = election.enabled if election.enabled is not None else bool(live)
        if not enabled:
            if live:
                self.log.warning(
                    "leader election is off: run one replica only, or two could act at once"
                )
            self.metrics.leader.set(1)
            return KubeActuator(api, audit, self.log, identity, clock=self.clock)
        self.elector = LeaderElector(
            api_client, election, identity, self.log, on_change=self.metrics.leader.set
        )
        return KubeActuator(api, audit, self.log, identity, self.elector.is_leader, self.clock)

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def start(self) -> None:
        """Schedule each target at its interval, the first run at once."""
        jitter = self.config.daemon.jitter.total_seconds()
        for target in self.config.targets:
            interval = target.interval.total_seconds()
            self.scheduler.add_job(
                self.runners[target.name].run_once,
                "interval",
                seconds=interval,
                jitter=jitter or None,
                id=target.name,
                next_run_time=self.clock(),
                max_instances=1,  # never two evaluations of one target at a time
                coalesce=True,  # runs missed while busy or suspended collapse into one
                misfire_grace_time=max(1, int(interval)),
            )
        if self.sink is not None:  # ':' keeps the job id apart from target names
            self.scheduler.add_job(
                self.sink.prune,
                "interval",
                minutes=10,
                id=":sink-retention",
                next_run_time=self.clock(),
            )
        if self.elector is not None:
            self.elector.start()
        self.scheduler.start()
        self.log.info(
            "daemon started",
            targets=[t.name for t in self.config.targets],
            state_dir=str(self.store.directory),
        )

    def stop(self) -> None:
        """Stop scheduling; wait for running evaluations to finish."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.elector is not None:
            self.elector.stop()  # after the last evaluation: release the Lease for the next
        if self.sink is not None:
            self.sink.close()  # after the HTTP server answered its last event
        self.log.info("daemon stopped")


def serve(config: Config, log: Any, host: str | None = None, port: int | None = None) -> None:
    """Run the daemon and its HTTP server until SIGTERM or SIGINT."""
    daemon = Daemon(config, log)
    settings = config.daemon.http
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(daemon),
            host=host or settings.host,
            port=settings.port if port is None else port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    log.info("http listening", host=host or settings.host, port=server.config.port)
    # uvicorn re-raises the SIGTERM it shut down on once it has stopped, so under the default
    # handler the process would die of the signal (exit -15, 143 in a shell) after a clean stop.
    # Under this handler the re-raise is harmless and SIGTERM exits 0; a SIGTERM that arrives
    # before uvicorn installs its own handler still stops the server.
    if threading.current_thread() is not threading.main_thread():
        server.run()  # no signals off the main thread (uvicorn then installs none either)
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
